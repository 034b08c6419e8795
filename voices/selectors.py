"""Voice reads, always scoped to one tenant: another tenant's voice is a 404."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFound
from tenants.models import Tenant
from voices.models import VoicePrompt


def voice_get(*, tenant: Tenant, voice_id: str) -> VoicePrompt:
    try:
        key = uuid.UUID(str(voice_id))
    except ValueError:
        raise NotFound("Voice not found.") from None
    voice = VoicePrompt.objects.filter(tenant=tenant, id=key).first()
    if voice is None:
        raise NotFound("Voice not found.")
    return voice


def voice_list(*, tenant: Tenant, status: str | None = None) -> QuerySet[VoicePrompt]:
    voices = VoicePrompt.objects.filter(tenant=tenant)
    if status:
        voices = voices.filter(status=status)
    return voices.order_by("-created_at", "-id")
