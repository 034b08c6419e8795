"""The playground: a page to try the API in a browser (paste a key, upload a
voice, make speech or a talking head, watch it live, play and download it).

The page holds no secrets and needs no login: everything it does, it does
with the key the user pastes, from the browser, through the public ``/v1``
API. The view only renders the template with what the page needs to offer
sensible choices: the engines this deployment can run (with the languages
and options each honours, read from engine metadata; no model is loaded),
the output formats and the talking-head defaults.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import get_script_prefix
from django.views.decorators.http import require_safe

from core.storage import storage_is_local
from engines import registry
from engines.audio.io import FORMATS
from jobs import services

# The page's own scripts and styles only; media from the API itself or from
# blob: URLs the page made (results fetched with the key); with object
# storage, results play straight from presigned URLs.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:{media}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def playground_catalog() -> dict[str, Any]:
    """Engines usable here (configured), their languages and options; formats;
    talking-head defaults and limits. Metadata only: cheap, no model loads."""
    tts = []
    for name in registry.engine_names(registry.TTS):
        cls = registry.engine_class(name, registry.TTS)
        if cls.configuration_problem():
            continue
        tts.append(
            {
                "name": name,
                "languages": sorted(cls.languages()),
                "options": sorted(cls.options),
                "requires_voice": bool(cls.requires_voice),
                "clones_voice": bool(cls.clones_voice),
            }
        )
    video = []
    for name in registry.engine_names(registry.TALKING_HEAD):
        video_cls = registry.engine_class(name, registry.TALKING_HEAD)
        if video_cls.configuration_problem():
            continue
        video.append(
            {
                "name": name,
                "options": sorted(video_cls.options),
                "resolutions": list(video_cls.resolutions),
                "frame_rates": list(video_cls.frame_rates) if video_cls.frame_rates else None,
            }
        )
    return {
        "tts_engines": tts,
        "video_engines": video,
        "default_video_engine": settings.TALKING_HEAD_DEFAULT_ENGINE,
        # registry.default_engine_for, for the page to say what "automatic" picks
        "default_tts_engine": {
            "neural": "piper",
            "neural_languages": sorted(registry.engine_class("piper", registry.TTS).languages()),
            "other": "espeak",
        },
        "formats": sorted(FORMATS),
        "talking_head_defaults": services.TALKING_HEAD_DEFAULTS,
        "max_text_chars": settings.TTS_MAX_TEXT_CHARS,
        "max_voice_bytes": settings.VOICE_MAX_UPLOAD_BYTES,
        "max_image_bytes": settings.TALKING_HEAD_MAX_IMAGE_BYTES,
        "max_audio_bytes": settings.TALKING_HEAD_MAX_AUDIO_BYTES,
    }


@require_safe
def playground(request: HttpRequest) -> HttpResponse:
    context = {"catalog": playground_catalog(), "api_root": f"{get_script_prefix()}v1/"}
    response = TemplateResponse(request, "playground.html", context)
    response["Content-Security-Policy"] = _CSP.format(media="" if storage_is_local() else " https: http:")
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response
