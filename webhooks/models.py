"""Webhook endpoints, signing secrets and deliveries (one per event, with
every attempt)."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models


class SigningSecrets(models.Model):
    """A Standard Webhooks secret (``whsec_<base64>``) plus the previous one
    during a rotation's grace period, when payloads are signed with both."""

    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def active_secrets(self, now: datetime) -> list[str]:
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets.append(self.previous_secret)
        return secrets


class Endpoint(SigningSecrets):
    """A tenant's subscription: events of the chosen types POSTed to ``url``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, blank=True, help_text="Empty: every event type.")
    is_enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "is_enabled"], name="webhook_endpoint_tenant")]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.is_enabled and (not self.event_types or event_type in self.event_types)


class TenantSigningSecret(SigningSecrets):  # noqa: DJ008 (not in the admin)
    """Signs deliveries to per-job ``webhook_url``s (no Endpoint row exists
    for those), like an account's default webhook secret."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_secret")
    created_at = models.DateTimeField(auto_now_add=True)


class Delivery(models.Model):
    """One event to one URL. ``id`` is the ``webhook-id`` header: the same on
    every attempt and replay, so receivers can drop duplicates."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its (next) attempt
        SENDING = "sending"  # an attempt is in flight (leased until locked_until)
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # permanent error, or retries exhausted

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(Endpoint, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_deliveries")
    url = models.URLField(max_length=2000)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # Fair share: set when the delivery is handed to the broker (it then counts
    # against the tenant's max_webhooks_in_flight until its attempt ends); empty
    # while it waits its turn in the database, or for its next attempt.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["tenant", "-created_at", "-id"], name="webhook_delivery_tenant"),
            # Fair-share dispatch: the tenant's in-flight count, and its waiting deliveries in release order.
            models.Index(fields=["tenant", "status", "enqueued_at", "next_attempt_at"], name="webhook_delivery_dispatch"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.url} ({self.status})"


class DeliveryAttempt(models.Model):  # noqa: DJ008 (shown inline with its delivery)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_unique_number")]
