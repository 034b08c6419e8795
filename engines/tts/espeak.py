"""espeak-ng formant synthesis through the ``espeakng-loader`` wheel (ctypes).

The wheel ships ``libespeak-ng.so`` and its data for 141 voices. The language
list is read from the voice files so the web process can validate requests
without loading the native library. The library keeps global state and is not
thread-safe: one instance per process, every call behind one lock.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import PermanentEngineError, TransientEngineError
from engines.tts.base import SpeechRequest, TTSEngine

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_DEFAULT_WPM = 175
_LANGUAGE_LINE = re.compile(rb"^language\s+(\S+)(?:\s+(\d+))?", re.MULTILINE)


def _data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


@functools.cache
def voice_table() -> dict[str, str]:
    """Map every language code espeak-ng declares to its best voice identifier.

    A voice file lists ``language CODE [PRIORITY]`` lines; a lower priority
    number is a better match (espeak's default is 5).
    """
    best: dict[str, tuple[int, str]] = {}
    lang_dir = _data_path() / "lang"
    for voice_file in sorted(p for p in lang_dir.rglob("*") if p.is_file()):
        identifier = voice_file.relative_to(lang_dir).as_posix()
        for match in _LANGUAGE_LINE.finditer(voice_file.read_bytes()):
            code = match.group(1).decode("ascii", "replace").lower()
            priority = int(match.group(2) or 5)
            if code not in best or priority < best[code][0]:
                best[code] = (priority, identifier)
    return {code: identifier for code, (_, identifier) in best.items()}


class _Native:
    """The process-wide espeak-ng library: one initialization, one synth
    callback and one sample buffer, shared by every EspeakEngine instance and
    only touched under ``lock``."""

    lock = threading.Lock()
    lib: Any = None
    sample_rate = 0
    samples: list[np.ndarray] = []
    callback: Any = None  # keep a reference: ctypes must not free it

    @classmethod
    def collect(cls, wav: Any, count: int, _events: Any) -> int:
        if count > 0:
            cls.samples.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = continue synthesis

    @classmethod
    def ensure_loaded(cls) -> Any:
        with cls.lock:
            if cls.lib is None:
                cls.lib, cls.sample_rate = _initialize(cls.collect)
        return cls.lib


def _initialize(collect: Any) -> tuple[Any, int]:
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(_data_path()).encode(), 0)
    if rate <= 0:
        raise TransientEngineError(f"espeak-ng failed to initialize ({rate})")
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    _Native.callback = callback_type(collect)
    lib.espeak_SetSynthCallback(_Native.callback)
    return lib, int(rate)


class EspeakEngine(TTSEngine):
    name = "espeak"
    sample_rate = 22050
    max_chunk_chars = 500

    @classmethod
    def languages(cls) -> frozenset[str]:
        return frozenset(voice_table())

    def _load(self) -> None:
        self._lib = _Native.ensure_loaded()
        type(self).sample_rate = _Native.sample_rate

    def list_native_voices(self) -> set[str]:
        """Languages as the native library reports them (used to check voice_table)."""
        self.load()

        class Voice(ctypes.Structure):
            _fields_ = [
                ("name", ctypes.c_char_p),
                ("languages", ctypes.c_void_p),
                ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte),
                ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int),
                ("spare", ctypes.c_void_p),
            ]

        self._lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(Voice))
        with _Native.lock:
            voices = self._lib.espeak_ListVoices(None)
            found = set()
            index = 0
            while voices[index]:
                # languages: [priority byte][NUL-terminated code]... ; primary first
                found.add(ctypes.string_at(voices[index].contents.languages + 1).decode().lower())
                index += 1
        return found

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        language, speed = request.language, request.speed
        identifier = voice_table().get(language.lower())
        if identifier is None:
            raise PermanentEngineError(f"espeak has no voice for language '{language}'.", code="unsupported_language")
        data = text.encode("utf-8")
        with _Native.lock:
            _Native.samples = []
            if self._lib.espeak_SetVoiceByName(identifier.encode()) != 0:
                raise PermanentEngineError(f"espeak could not select voice '{identifier}'.", code="unsupported_language")
            self._lib.espeak_SetParameter(_ESPEAK_RATE, round(_DEFAULT_WPM * speed), 0)
            status = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            samples, _Native.samples = _Native.samples, []
        if status != 0:
            raise TransientEngineError(f"espeak synthesis failed ({status}).")
        if not samples:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(samples).astype(np.float32) / 32768.0
