from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):  # noqa: DJ008 (not in the admin)
    """The first response to a POST made with an ``Idempotency-Key``, replayed
    for a repeat of the same request within the retention period."""

    tenant_id = models.UUIDField()  # no foreign key: core depends on no app
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # method, path and body
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    # What the claim's request created (a job's, a voice's id), linked in the
    # transaction that created it: replayed if the request died before its
    # response was recorded (core.idempotency).
    resource_id = models.UUIDField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id", "key"], name="idempotency_key_unique_per_tenant")]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires")]
