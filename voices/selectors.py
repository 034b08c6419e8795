"""Voice reads, always scoped to one tenant: another tenant's voice is a 404."""

from __future__ import annotations

from django.db.models import QuerySet

from core.lookups import owned_or_404
from tenants.models import Tenant
from voices.models import VoicePrompt


def voice_get(*, tenant: Tenant, voice_id: str) -> VoicePrompt:
    return owned_or_404(VoicePrompt.objects.all(), tenant=tenant, object_id=voice_id, what="Voice")


def voice_list(*, tenant: Tenant, status: str | None = None) -> QuerySet[VoicePrompt]:
    voices = VoicePrompt.objects.filter(tenant=tenant)
    if status:
        voices = voices.filter(status=status)
    return voices.order_by("-created_at", "-id")
