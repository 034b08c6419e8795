from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.utils import timezone


class Job(models.Model):
    """One generation request. Status moves only by conditional UPDATEs in
    ``jobs.services`` so that two workers can never run the same job."""

    class Kind(models.TextChoices):
        TTS = "tts", "Speech"
        TALKING_HEAD = "talking_head", "Talking head"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"
        EXPIRED = "expired"

    class Priority(models.TextChoices):
        NORMAL = "normal"
        HIGH = "high"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.EXPIRED)
    # Queued or running: counts against the tenant's limits, can be canceled.
    ACTIVE = (Status.QUEUED, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="jobs")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    engine = models.CharField(max_length=64)
    input = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict, blank=True)
    # Per-job webhook (signed with the tenant's signing secret).
    webhook_url = models.URLField(max_length=2000, blank=True)
    webhook_events = models.JSONField(null=True, blank=True)  # null: the default event types
    # Dedup: a hash of the tenant-visible generation inputs. A job with the
    # key of a finished job reuses its output (cache_hit, no engine run); one
    # with the key of a job still running waits for it (dedup_of).
    dedup_key = models.CharField(max_length=64, blank=True)
    dedup_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="followers")
    cache_hit = models.BooleanField(default=False)
    # Speech in a tenant's voice. Deleting the voice leaves the job (and its
    # output); a job still waiting then fails with ``voice_deleted``.
    voice = models.ForeignKey("voices.VoicePrompt", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")

    # Uploaded inputs (talking head: the portrait and the audio), by role, as
    # server-generated storage keys. Never shown to clients.
    input_files = models.JSONField(default=dict, blank=True)

    # Fair share by size: the estimated work, in seconds of speech (a
    # talking-head second weighs TALKING_HEAD_COST_PER_SECOND), set at submit.
    cost = models.FloatField(default=0)

    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=80, default="queued")
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    result_key = models.CharField(max_length=500, blank=True)
    result_content_type = models.CharField(max_length=100, blank=True)
    result_duration_s = models.FloatField(null=True, blank=True)
    result_size_bytes = models.BigIntegerField(null=True, blank=True)
    result_expires_at = models.DateTimeField(null=True, blank=True)
    # Measurements of the output shown with the result (e.g. speaker_similarity).
    result_info = models.JSONField(default=dict, blank=True)
    # Further output files by role (talking head from text: "audio", the
    # speech it was made with): {role: {key, content_type, duration_s, size_bytes}}.
    result_files = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)  # settable: a cache hit is created finished
    enqueued_at = models.DateTimeField(null=True, blank=True)  # null: message not yet in Redis
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="job_tenant_newest"),
            models.Index(fields=["status", "enqueued_at"], name="job_status_enqueued"),
            # Fair-share dispatch: in-flight count, and the waiting jobs in release order.
            models.Index(fields=["tenant", "status", "enqueued_at", "priority", "created_at"], name="job_tenant_dispatch"),
            # Newest first within a key: the dedup lookup (ORDER BY created_at DESC
            # LIMIT) then reads only its key's rows; with (..., status) SQLite
            # walked job_tenant_newest, every job of the tenant, per submission.
            models.Index(fields=["tenant", "dedup_key", "-created_at"], name="job_tenant_dedup"),
            models.Index(fields=["status", "result_expires_at"], name="job_status_expires"),  # purge_expired
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="job_progress_lte_100"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    def stored_results(self) -> dict[str, dict[str, Any]]:
        """Every result file by role: "output" (the main file) and the
        further ones (e.g. "audio"), each with its storage key and facts."""
        files: dict[str, dict[str, Any]] = {}
        if self.result_key:
            files["output"] = {
                "key": self.result_key,
                "content_type": self.result_content_type,
                "duration_s": self.result_duration_s,
                "size_bytes": self.result_size_bytes,
            }
        return {**files, **(self.result_files or {})}
