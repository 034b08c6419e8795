from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class Tenant(models.Model):
    """A customer account: owns API keys, jobs and voices."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=64, unique=True, validators=[RegexValidator(r"^[a-z0-9][a-z0-9-]*$")])
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Bumped whenever the tenant's webhook endpoints change, so workers can
    # cache the endpoint list and still see a change by the next job they claim.
    webhooks_version = models.PositiveIntegerField(default=0, editable=False)

    # Limits; empty means the deployment's default (settings TENANT_*).
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="API requests per minute, whole tenant."
    )
    key_rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="API requests per minute, per key."
    )
    max_active_jobs = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Queued + running jobs."
    )
    monthly_seconds_quota = models.PositiveIntegerField(
        null=True, blank=True, help_text="Generated audio/video seconds per calendar month (UTC); 0 = unlimited."
    )
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Jobs handed to the workers at once (fair share); the rest wait their turn.",
    )
    max_in_flight_cost = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=(
            "Fair share by size: estimated work handed to the workers at once, per kind of job, in seconds of speech "
            "(a talking-head second counts TALKING_HEAD_COST_PER_SECOND). A larger job runs alone."
        ),
    )
    max_job_duration_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Seconds of audio or video one job may make: refused at submit from the estimate, stopped in the worker.",
    )
    max_webhook_endpoints = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Webhook endpoints (enabled or not)."
    )
    max_webhooks_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Webhook deliveries handed to the webhook workers at once (fair share); the rest wait their turn.",
    )
    allow_high_priority = models.BooleanField(default=False)
    result_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Days results and uploaded inputs are kept before purge_expired deletes them.",
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class ApiKey(AbstractAPIKey):
    """An API key of a tenant. Only a SHA-512 hash of the secret is stored;
    ``prefix`` is the visible part (``<prefix>.<secret>``)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    last_used_at = models.DateTimeField(null=True, blank=True)

    @property
    def audit_id(self) -> str:
        return self.prefix  # the pk is "<prefix>.<hash>": the hash stays in this table

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"


class UsagePeriod(models.Model):
    """Generated seconds and cache hits of one tenant in one calendar month (UTC)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_periods")
    period = models.CharField(max_length=7)  # "2026-11"
    audio_seconds = models.FloatField(default=0)
    video_seconds = models.FloatField(default=0)
    jobs_succeeded = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "period"], name="usage_one_row_per_period")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.period}"
