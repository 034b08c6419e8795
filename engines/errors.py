"""Errors engines raise, classified so the job runner knows whether to retry."""

from __future__ import annotations


class EngineError(Exception):
    """Base engine failure. ``permanent`` tells the runner not to retry."""

    code = "engine_error"
    permanent = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class PermanentEngineError(EngineError):
    """Bad input for this engine: retrying cannot help (e.g. nothing to say)."""

    code = "engine_rejected_input"
    permanent = True


class TransientEngineError(EngineError):
    """The engine or its server is temporarily unavailable: retry with backoff."""

    code = "engine_unavailable"
    permanent = False


class EngineOutOfMemory(TransientEngineError):
    """The engine ran out of (GPU) memory; a lower resolution may succeed."""

    code = "out_of_memory"


class UnknownEngine(LookupError):
    """No engine is registered under the requested name."""


class Canceled(Exception):
    """Raised by a progress callback to stop an engine cooperatively."""
