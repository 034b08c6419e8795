"""``Idempotency-Key`` for POST endpoints.

The first request with a key claims it by inserting a record (its own short
transaction: no lock is held while the view runs, which may resolve DNS or
wait on Redis). Concurrent duplicates find the claim and wait for its
response, then replay it (200, ``Idempotent-Replayed: true``): exactly one
of them runs. The same key with a different request is 422
``idempotency_key_reused``. A failed request releases its claim, so it may
be retried with the same key; a claim whose request died mid-way is taken
over after ``IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S``.

The response is recorded after the view returns, so a view that creates
something (a job, a voice) also links it to the claim *in the transaction
that creates it* (:func:`idempotency_claim_link`, called by the service):
the resource and the claim's ``resource_id`` commit together. A retry that
finds a linked claim without a response (its request died after the commit,
or is still finishing) is answered at once by the view's ``replay``
renderer: the resource as it is now, 200 with ``Idempotent-Replayed``; it
never takes such a claim over. A linked claim is kept when its request
fails after the commit (the resource exists: a retry gets it), and released
when the resource is gone by the time a retry looks (deleted since, or
removed by the request itself, such as a rejected voice): the key then runs
again. A request whose claim was taken over before it linked anything
fails with 409 and rolls its resource back: one resource per key.
"""

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, Protocol, cast, overload
from uuid import UUID

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ApplicationError
from core.models import IdempotencyRecord

_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class _Client(Protocol):
    """What this module reads of ``request.user`` on the views it wraps:
    tenants.authentication.ApiClient (core imports no app)."""

    @property
    def tenant(self) -> Model: ...


def _fingerprint(request: Request) -> str:
    data = request.data
    if hasattr(data, "lists"):  # QueryDict (form posts)
        data = dict(data.lists())
    material = json.dumps({"method": request.method, "path": request.path, "body": data}, sort_keys=True, default=_as_text)
    return hashlib.sha256(material.encode()).hexdigest()


def _as_text(value: Any) -> str:
    """Uploaded files count by their content, not their name."""
    if isinstance(value, UploadedFile):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        return f"file:{digest.hexdigest()}"
    return str(value)


# A view's representation of the resource that a claim's request created, as
# the view would have answered it: what a retry gets while that request has
# recorded no response. None: the resource is gone.
Replay = Callable[[Any, UUID], Response | None]
ViewMethod = Callable[..., Response]


@dataclass(frozen=True)
class _ActiveClaim:
    pk: int
    created_at: datetime  # with the pk, this request's claim: a takeover sets a new one


# The claim of the request being served, while its view runs (views with a ``replay``).
_active_claim: ContextVar[_ActiveClaim | None] = ContextVar("idempotency_claim", default=None)


def idempotency_claim_link(resource_id: UUID) -> None:
    """Link what this request creates to its Idempotency-Key claim. Called by
    a service *inside* the transaction that creates the resource, so both
    commit (or roll back) together. No query when the request has no key (or
    its view no ``replay``). A claim that a retry took over meanwhile: 409,
    which rolls the resource back (the retry creates its own)."""
    claim = _active_claim.get()
    if claim is None:
        return
    if not connection.in_atomic_block:
        raise RuntimeError("idempotency_claim_link() belongs in the transaction that creates the resource.")
    if not IdempotencyRecord.objects.filter(pk=claim.pk, created_at=claim.created_at).update(resource_id=resource_id):
        raise ApplicationError(
            "idempotency_request_in_progress",
            "A retry with this Idempotency-Key took it over; this request created nothing.",
            status=409,
            retry_after_s=1,
        )


def _replayed(response: Response) -> Response:
    response.status_code = 200
    response["Idempotent-Replayed"] = "true"
    return response


def _replay(record: IdempotencyRecord) -> Response:
    return _replayed(Response(record.response_body))


def _claim(*, request: Request, tenant_id: Any, key: str, fingerprint: str, replay: Replay | None) -> IdempotencyRecord | Response:
    """The new claim, or the response to give instead of running the view."""
    deadline = time.monotonic() + settings.IDEMPOTENCY_WAIT_S
    while True:
        now = timezone.now()
        IdempotencyRecord.objects.filter(tenant_id=tenant_id, key=key, expires_at__lte=now).delete()
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    tenant_id=tenant_id,
                    key=key,
                    fingerprint=fingerprint,
                    expires_at=now + timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_S),
                )
        except IntegrityError:
            record = IdempotencyRecord.objects.filter(tenant_id=tenant_id, key=key).first()
        if record is None:
            continue  # released or expired meanwhile: claim again
        if record.fingerprint != fingerprint:
            raise ApplicationError("idempotency_key_reused", "This Idempotency-Key was used with a different request.", status=422)
        if record.response_status is not None:
            return _replay(record)
        if record.resource_id is not None and replay is not None:
            # Its request committed what it created, and died or is still
            # finishing: that is the answer, whatever became of the request.
            rendered = replay(request, record.resource_id)
            if rendered is not None:
                return _replayed(rendered)
            # Deleted since: nothing to replay, so the key is free again.
            IdempotencyRecord.objects.filter(pk=record.pk, resource_id=record.resource_id, response_status__isnull=True).delete()
            continue
        stale_before = now - timedelta(seconds=settings.IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S)
        if record.created_at < stale_before:  # its request died: take the claim over
            # Only as seen: a request that links its resource meanwhile keeps the claim.
            taken = IdempotencyRecord.objects.filter(
                pk=record.pk, response_status__isnull=True, created_at=record.created_at, resource_id=record.resource_id
            ).update(created_at=now)
            if taken:
                record.created_at = now
                return record
            continue
        if time.monotonic() > deadline:
            # Its request may be running elsewhere, or its instance may have
            # died (then the claim is taken over once it is stale): say when.
            takeover_s = (record.created_at - stale_before).total_seconds()
            raise ApplicationError(
                "idempotency_request_in_progress",
                "A request with this Idempotency-Key is still being processed.",
                status=409,
                retry_after_s=math.ceil(takeover_s),
            )
        time.sleep(0.05)


@overload
def idempotent(method: ViewMethod, *, replay: None = None) -> ViewMethod: ...


@overload
def idempotent(method: None = None, *, replay: Replay | None = None) -> Callable[[ViewMethod], ViewMethod]: ...


def idempotent(method: ViewMethod | None = None, *, replay: Replay | None = None) -> ViewMethod | Callable[[ViewMethod], ViewMethod]:
    """``@idempotent`` on a POST view method, or ``@idempotent(replay=...)``
    on one whose service creates a resource and links it to the claim
    (:func:`idempotency_claim_link`): ``replay(request, resource_id)`` is the
    resource as the view answers it (any status: a replay is 200), or None
    if it is gone."""
    if method is None:

        def decorate(method: ViewMethod) -> ViewMethod:
            return _idempotent(method, replay=replay)

        return decorate
    return _idempotent(method, replay=replay)


def _idempotent(view_method: ViewMethod, *, replay: Replay | None) -> ViewMethod:
    @wraps(view_method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return view_method(view, request, *args, **kwargs)
        if not _VALID_KEY.match(key):
            raise ApplicationError(
                "validation_error",
                "Idempotency-Key must be 1-255 printable ASCII characters.",
                details={"fields": {"Idempotency-Key": [{"message": "Invalid key.", "code": "invalid"}]}},
            )
        client = cast(_Client, request.user)  # the views are authenticated (ApiRequest)
        claim = _claim(request=request, tenant_id=client.tenant.pk, key=key, fingerprint=_fingerprint(request), replay=replay)
        if isinstance(claim, Response):
            return claim
        # This request's claim, as long as no retry took it over.
        mine = IdempotencyRecord.objects.filter(pk=claim.pk, created_at=claim.created_at)
        token = _active_claim.set(_ActiveClaim(claim.pk, claim.created_at)) if replay is not None else None
        try:
            response = view_method(view, request, *args, **kwargs)
        except BaseException:
            # Nothing committed: the same key may try again. Once a resource
            # is linked (committed), the claim stays: a retry gets the resource.
            mine.filter(resource_id__isnull=True).delete()
            raise
        finally:
            if token is not None:
                _active_claim.reset(token)
        if response.status_code >= 400:
            mine.filter(resource_id__isnull=True).delete()
            return response
        mine.update(response_status=response.status_code, response_body=response.data)
        return response

    return wrapper


def idempotency_records_purge(*, now: datetime, dry_run: bool = False) -> int:
    """Delete expired records (a claim also removes its own key's expired
    record); the number deleted, or that would be."""
    expired = IdempotencyRecord.objects.filter(expires_at__lte=now)
    return expired.count() if dry_run else expired.delete()[0]
