from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class VoicePrompt(models.Model):
    """A tenant's reference clip: the upload as received, and (once analysed
    in a worker) a trimmed, level-normalized 16 kHz copy, its speaker
    embedding and a quality score. Files live under server-generated keys."""

    class Status(models.TextChoices):
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="voices")
    name = models.CharField(max_length=100)
    language = models.CharField(max_length=35, default="en")
    transcript = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PROCESSING)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    upload_key = models.CharField(max_length=500)
    upload_size_bytes = models.BigIntegerField()
    prompt_key = models.CharField(max_length=500, blank=True)  # 16 kHz mono WAV
    content_sha256 = models.CharField(max_length=64, blank=True)  # of the prompt audio

    container = models.CharField(max_length=40, blank=True)  # as FFmpeg detected it
    duration_s = models.FloatField(null=True, blank=True)
    speech_s = models.FloatField(null=True, blank=True)
    sample_rate = models.PositiveIntegerField(null=True, blank=True)
    channels = models.PositiveSmallIntegerField(null=True, blank=True)
    quality_score = models.FloatField(null=True, blank=True)
    quality_warnings = models.JSONField(default=list, blank=True)
    quality_metrics = models.JSONField(default=dict, blank=True)
    embedding = models.JSONField(default=list, blank=True, editable=False)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    analyzed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at", "-id"], name="voice_tenant_newest")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"
