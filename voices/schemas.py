"""Documentation serializers for voice responses (bodies come from
``voices.representation``; tests check they match)."""

from __future__ import annotations

from rest_framework import serializers

from voices.models import VoicePrompt


class QualitySerializer(serializers.Serializer):
    score = serializers.FloatField(min_value=0, max_value=1)
    warnings = serializers.ListField(
        child=serializers.ChoiceField(choices=["clipping", "low_level", "noisy", "multiple_speakers", "short_prompt"])
    )


class VoiceErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class VoiceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    language = serializers.CharField()
    transcript = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=VoicePrompt.Status.choices)
    duration_s = serializers.FloatField(allow_null=True)
    speech_s = serializers.FloatField(allow_null=True)
    sample_rate = serializers.IntegerField(allow_null=True)
    quality = QualitySerializer(allow_null=True)
    error = VoiceErrorSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
