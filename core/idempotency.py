"""``Idempotency-Key`` for POST endpoints.

The first request with a key runs inside one transaction with the insert of
its record, so concurrent duplicates serialize on the record's unique
constraint: exactly one runs, the others replay its response (200, with
``Idempotent-Replayed: true``). The same key with a different request is
422 ``idempotency_key_reused``. Errors are not recorded (the transaction
rolls back), so a failed request may be retried with the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ApplicationError
from core.models import IdempotencyRecord

_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _fingerprint(request: Request) -> str:
    data = request.data
    if hasattr(data, "lists"):  # QueryDict (form posts)
        data = {key: values for key, values in data.lists()}
    material = json.dumps({"method": request.method, "path": request.path, "body": data}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    return Response(record.response_body, status=200, headers={"Idempotent-Replayed": "true"})


def idempotent(method: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return method(view, request, *args, **kwargs)
        if not _VALID_KEY.match(key):
            raise ApplicationError(
                "validation_error", "Idempotency-Key must be 1-255 printable ASCII characters.",
                details={"fields": {"Idempotency-Key": [{"message": "Invalid key.", "code": "invalid"}]}},
            )
        tenant_id = request.user.tenant.pk
        fingerprint = _fingerprint(request)
        now = timezone.now()
        with transaction.atomic():
            IdempotencyRecord.objects.filter(tenant_id=tenant_id, key=key, expires_at__lte=now).delete()
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        tenant_id=tenant_id, key=key, fingerprint=fingerprint,
                        expires_at=now + timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_S),
                    )
            except IntegrityError:
                record = IdempotencyRecord.objects.get(tenant_id=tenant_id, key=key)
                if record.fingerprint != fingerprint:
                    raise ApplicationError(
                        "idempotency_key_reused", "This Idempotency-Key was used with a different request.", status=422
                    ) from None
                return _replay(record)
            response = method(view, request, *args, **kwargs)
            record.response_status, record.response_body = response.status_code, response.data
            record.save(update_fields=["response_status", "response_body"])
        return response

    return wrapper
