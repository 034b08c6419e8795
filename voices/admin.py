from __future__ import annotations

from django.contrib import admin
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from audit.admin_mixins import AuditedAdminMixin
from core.storage import stored_file_response
from voices.models import VoicePrompt
from voices.services import voice_delete


@admin.register(VoicePrompt)
class VoicePromptAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "tenant", "language", "status", "speech_s", "quality_score", "created_at")
    list_filter = ("status", "language", "tenant")
    search_fields = ("id", "name")
    date_hierarchy = "created_at"
    exclude = ("embedding",)
    readonly_fields = [f.name for f in VoicePrompt._meta.fields if f.name not in ("name", "embedding")] + ["player"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # voices are uploaded through the API (analysis runs in workers)

    @admin.display(description="Prompt audio")
    def player(self, voice: VoicePrompt) -> str:
        if not voice.prompt_key:
            return "-"
        url = reverse("admin:voices_voiceprompt_audio", args=[voice.pk])
        return format_html('<audio controls preload="none" src="{}"></audio>', url)

    def get_urls(self):
        audio = self.admin_site.admin_view(self.audio_view)
        return [path("<uuid:voice_id>/audio/", audio, name="voices_voiceprompt_audio"), *super().get_urls()]

    def audio_view(self, request: HttpRequest, voice_id) -> FileResponse:
        voice = get_object_or_404(VoicePrompt, pk=voice_id)
        if not self.has_view_permission(request, voice) or not voice.prompt_key:
            raise Http404
        return stored_file_response(voice.prompt_key, content_type="audio/wav")

    def delete_model(self, request: HttpRequest, obj: VoicePrompt) -> None:
        voice_delete(voice=obj, actor=f"staff:{request.user.get_username()}", ip=None)  # files too

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for voice in queryset:
            self.delete_model(request, voice)
