"""Documentation serializers for job responses (the bodies are built by
``jobs.representation``; tests check they match)."""

from __future__ import annotations

from rest_framework import serializers

from jobs.models import Job


class ResultSerializer(serializers.Serializer):
    url = serializers.URLField()
    content_type = serializers.CharField()
    duration_s = serializers.FloatField(allow_null=True)
    size_bytes = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    speaker_similarity = serializers.FloatField(
        required=False, min_value=-1, max_value=1, help_text="Jobs with a voice: cosine similarity of speaker embeddings, output vs prompt"
    )
    voice = serializers.DictField(
        required=False, help_text="Jobs with a voice: mode (cloned|matching), matching_applied, speaker_similarity_unmatched"
    )


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class JobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=Job.Kind.choices)
    status = serializers.ChoiceField(choices=Job.Status.choices)
    priority = serializers.ChoiceField(choices=Job.Priority.choices)
    engine = serializers.CharField()
    progress = serializers.IntegerField(min_value=0, max_value=100)
    stage = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    attempts = serializers.IntegerField()
    input = serializers.DictField()
    result = ResultSerializer(allow_null=True)
    error = JobErrorSerializer(allow_null=True)
    cache_hit = serializers.BooleanField()
    metadata = serializers.DictField()


class UsageSerializer(serializers.Serializer):
    period = serializers.CharField()
    jobs = serializers.DictField(child=serializers.IntegerField())
    active_jobs = serializers.IntegerField()
    generated_seconds = serializers.DictField(child=serializers.FloatField())
    cache_hits = serializers.IntegerField()
    limits = serializers.DictField()
    quota_remaining_seconds = serializers.FloatField(allow_null=True)
