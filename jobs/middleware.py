"""Dramatiq middleware for job workers."""

from __future__ import annotations

import logging

import dramatiq

logger = logging.getLogger(__name__)


class EngineWarmup(dramatiq.Middleware):
    """Load the configured engines once per worker process at boot, so the
    first job does not pay the model load time."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        from django.conf import settings

        from engines.registry import get_engine

        for name in settings.ENGINES_PRELOAD:
            try:
                get_engine(name)
                logger.info("engine loaded", extra={"engine": name})
            except Exception:  # a broken engine must not stop the worker
                logger.exception("engine failed to load", extra={"engine": name})
        if settings.VOICE_MODELS_PRELOAD:
            _voice_models_load()


def _voice_models_load() -> None:
    """Speech detection, the speaker encoder (voice analysis, similarity) and
    the recognizer that gates voice matching on intelligibility."""
    from engines.voice import intelligibility, speaker, vad

    try:
        vad.load()
        speaker.load()
        intelligibility.load()
        logger.info("voice models loaded")
    except Exception:
        logger.exception("voice models failed to load")
