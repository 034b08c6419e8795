"""The public JSON body of a voice."""

from __future__ import annotations

from typing import Any

from core.responses import iso
from voices.models import VoicePrompt


def voice_representation(voice: VoicePrompt) -> dict[str, Any]:
    ready = voice.status == VoicePrompt.Status.READY
    return {
        "id": str(voice.id),
        "name": voice.name,
        "language": voice.language,
        "transcript": voice.transcript,
        "status": voice.status,
        "duration_s": voice.duration_s,
        "speech_s": voice.speech_s,
        "sample_rate": voice.sample_rate,
        "quality": {"score": voice.quality_score, "warnings": voice.quality_warnings} if ready else None,
        "error": {"code": voice.error_code, "message": voice.error_message} if voice.status == VoicePrompt.Status.FAILED else None,
        "created_at": iso(voice.created_at),
    }
