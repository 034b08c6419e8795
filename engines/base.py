"""What every engine shares, whatever it makes: a one-time, thread-safe model
load, and a way to say it cannot run in this deployment."""

from __future__ import annotations

import threading


class Engine:
    """``load()`` once per process (safe from several threads), ``run()`` per job."""

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False

    @classmethod
    def configuration_problem(cls) -> str | None:
        """Why this engine cannot run in this deployment (e.g. no server URL), else None."""
        return None

    def load(self) -> None:
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:  # pragma: no cover - engines without models
        """Heavy, one-time initialization (model files, native libraries, warm-up)."""
