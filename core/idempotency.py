"""``Idempotency-Key`` for POST endpoints.

The first request with a key claims it by inserting a record (its own short
transaction: no lock is held while the view runs, which may resolve DNS or
wait on Redis). Concurrent duplicates find the claim and wait for its
response, then replay it (200, ``Idempotent-Replayed: true``): exactly one
of them runs. The same key with a different request is 422
``idempotency_key_reused``. A failed request releases its claim, so it may
be retried with the same key; a claim whose request died mid-way is taken
over after ``IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S``.
"""

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, Protocol, cast

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
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


def _replay(record: IdempotencyRecord) -> Response:
    return Response(record.response_body, status=200, headers={"Idempotent-Replayed": "true"})


def _claim(*, tenant_id: Any, key: str, fingerprint: str) -> IdempotencyRecord | Response:
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
        stale_before = now - timedelta(seconds=settings.IDEMPOTENCY_IN_PROGRESS_TIMEOUT_S)
        if record.created_at < stale_before:  # its request died: take the claim over
            if IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True, created_at=record.created_at).update(
                created_at=now
            ):
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


def idempotent(method: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return method(view, request, *args, **kwargs)
        if not _VALID_KEY.match(key):
            raise ApplicationError(
                "validation_error",
                "Idempotency-Key must be 1-255 printable ASCII characters.",
                details={"fields": {"Idempotency-Key": [{"message": "Invalid key.", "code": "invalid"}]}},
            )
        client = cast(_Client, request.user)  # the views are authenticated (ApiRequest)
        claim = _claim(tenant_id=client.tenant.pk, key=key, fingerprint=_fingerprint(request))
        if isinstance(claim, Response):
            return claim
        try:
            response = method(view, request, *args, **kwargs)
        except BaseException:
            claim.delete()  # not done: the same key may try again
            raise
        if response.status_code >= 400:
            claim.delete()
            return response
        IdempotencyRecord.objects.filter(pk=claim.pk).update(response_status=response.status_code, response_body=response.data)
        return response

    return wrapper


def idempotency_records_purge(*, now: datetime, dry_run: bool = False) -> int:
    """Delete expired records (a claim also removes its own key's expired
    record); the number deleted, or that would be."""
    expired = IdempotencyRecord.objects.filter(expires_at__lte=now)
    return expired.count() if dry_run else expired.delete()[0]
