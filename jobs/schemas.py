"""Documentation serializers for job responses (the bodies are built by
``jobs.representation``; tests check they match)."""

from __future__ import annotations

from rest_framework import serializers

from jobs.models import Job


class QualitySerializer(serializers.Serializer):
    """What was measured of a speech result (absent keys: not measured)."""

    speaker_similarity = serializers.FloatField(required=False, help_text="Delivered output vs the voice prompt (cosine, -1..1)")
    speaker_similarity_unmatched = serializers.FloatField(required=False, help_text="The engine's own output vs the prompt")
    speaker_similarity_matched = serializers.FloatField(required=False, help_text="The matched candidate vs the prompt (kept or not)")
    wer = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Word error rate of the delivered output against the text, by an offline recognizer (null: no model for the language)",
    )
    wer_unmatched = serializers.FloatField(required=False, allow_null=True, help_text="The same for the engine's own output")
    wer_matched = serializers.FloatField(required=False, allow_null=True, help_text="The same for the matched candidate")
    wer_measured_s = serializers.FloatField(required=False, help_text="Seconds of audio the word error rate was measured on")
    matching_strength = serializers.FloatField(required=False, help_text="Strength of the matching kept (1.0 = all the way)")


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
        required=False,
        help_text=(
            "Jobs with a voice: mode (cloned|matching); for matching: matching_applied, speaker_similarity_unmatched, "
            "matching_strength (applied), reason (not applied: off, similarity, intelligibility, no_voiced_speech)"
        ),
    )
    quality = QualitySerializer(required=False, help_text="Speech jobs with a voice: the measures computed for the output")


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
    audio_stream_url = serializers.URLField(
        allow_null=True, help_text="Speech: its audio as it is made (GET, chunked), or at once when finished. Null otherwise."
    )
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
