"""Engine registry: names map to dotted paths; one loaded instance per process.

Importing an engine class is cheap (heavy imports happen in ``load()``), so the
web process may look classes up to validate requests; only workers call
``get_engine`` and load models.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping

from engines.errors import UnknownEngine
from engines.tts.base import TTSEngine

BUILTIN_TTS_ENGINES: Mapping[str, str] = {
    "piper": "engines.tts.piper:PiperEngine",
    "espeak": "engines.tts.espeak:EspeakEngine",
    # GPU model server adapter: usable once COSYVOICE_URLS is set.
    "cosyvoice": "engines.tts.cosyvoice:CosyVoiceEngine",
}

_extra_engines: dict[str, str] = {}
_instances: dict[str, TTSEngine] = {}
_lock = threading.Lock()


def register(name: str, dotted_path: str) -> None:
    """Add an engine (e.g. a deployment's own adapter) under ``name``."""
    _extra_engines[name] = dotted_path


def engine_names() -> list[str]:
    return sorted({**BUILTIN_TTS_ENGINES, **_extra_engines})


def engine_class(name: str) -> type[TTSEngine]:
    path = {**BUILTIN_TTS_ENGINES, **_extra_engines}.get(name)
    if path is None:
        raise UnknownEngine(name)
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def get_engine(name: str) -> TTSEngine:
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
    return any(engine_class(name).supports_language(language) for name in engine_names())


def default_engine_for(language: str) -> str:
    """English goes to the neural voice; every other language to espeak-ng."""
    return "piper" if language.lower() in engine_class("piper").languages() else "espeak"
