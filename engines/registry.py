"""Engine registry: names map to dotted paths; one loaded instance per process.

Importing an engine class is cheap (heavy imports happen in ``load()``), so the
web process may look classes up to validate requests; only workers call
``get_engine`` and load models.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any, Final, Literal, overload

from engines.errors import UnknownEngine
from engines.tts.base import TTSEngine
from engines.video.base import TalkingHeadEngine

TTS: Final = "tts"
TALKING_HEAD: Final = "talking_head"
_KIND_BASES: dict[str, type[TTSEngine] | type[TalkingHeadEngine]] = {TTS: TTSEngine, TALKING_HEAD: TalkingHeadEngine}

BUILTIN_TTS_ENGINES: Mapping[str, str] = {
    "piper": "engines.tts.piper:PiperEngine",
    "espeak": "engines.tts.espeak:EspeakEngine",
    # GPU model server adapter: usable once COSYVOICE_URLS is set.
    "cosyvoice": "engines.tts.cosyvoice:CosyVoiceEngine",
}
BUILTIN_VIDEO_ENGINES: Mapping[str, str] = {
    "builtin": "engines.video.builtin:BuiltinEngine",
    # ComfyUI + Sonic adapter: usable once COMFYUI_URLS is set.
    "sonic": "engines.video.sonic:SonicEngine",
}

_extra_engines: dict[str, str] = {}
_instances: dict[str, TTSEngine | TalkingHeadEngine] = {}
_lock = threading.Lock()


def register(name: str, dotted_path: str) -> None:
    """Add an engine (e.g. a deployment's own adapter) under ``name``."""
    _extra_engines[name] = dotted_path


def _paths() -> dict[str, str]:
    return {**BUILTIN_TTS_ENGINES, **BUILTIN_VIDEO_ENGINES, **_extra_engines}


def engine_names(kind: str | None = None) -> list[str]:
    """Registered engines, optionally only those of one kind (``tts`` or ``talking_head``)."""
    return sorted(name for name in _paths() if kind is None or issubclass(engine_class(name), _KIND_BASES[kind]))


@overload
def engine_class(name: str, kind: Literal["tts"]) -> type[TTSEngine]: ...
@overload
def engine_class(name: str, kind: Literal["talking_head"]) -> type[TalkingHeadEngine]: ...
@overload
def engine_class(name: str, kind: str | None = None) -> type[TTSEngine] | type[TalkingHeadEngine]: ...
def engine_class(name: str, kind: str | None = None) -> type[TTSEngine] | type[TalkingHeadEngine]:
    """The engine's class; ``UnknownEngine`` if there is none of that kind."""
    path = _paths().get(name)
    if path is None:
        raise UnknownEngine(name)
    module_name, _, attribute = path.partition(":")
    cls: type[TTSEngine] | type[TalkingHeadEngine] = getattr(importlib.import_module(module_name), attribute)
    if kind is not None and not issubclass(cls, _KIND_BASES[kind]):
        raise UnknownEngine(name)
    return cls


def get_engine(name: str) -> Any:
    """The process-wide loaded instance of engine ``name``."""
    with _lock:
        engine = _instances.get(name)
        if engine is None:
            engine = engine_class(name)()
            _instances[name] = engine
    engine.load()
    return engine


def language_supported(language: str) -> bool:
    """Whether any registered engine speaks ``language`` (no model loads)."""
    return any(engine_class(name, TTS).supports_language(language) for name in engine_names(TTS))


def default_engine_for(language: str) -> str:
    """English goes to the neural voice; every other language to espeak-ng."""
    return "piper" if language.lower() in engine_class("piper", TTS).languages() else "espeak"
