"""A tiny process supervisor for local runs: starts children, restarts any
that die (the Dramatiq master exits when one of its workers dies), and stops
them all in reverse order on shutdown. Production uses systemd/Kubernetes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Children get SIGTERM if the supervisor itself is killed (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    restart: bool = True


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen
    started_at: float
    fast_failures: int = 0
    restarts: int = 0


class CrashLoop(RuntimeError):
    """A child keeps dying right after start (e.g. its port is taken)."""


@dataclass
class Supervisor:
    specs: list[ProcessSpec]
    log: Callable[[str], None] = print
    min_uptime_s: float = 3.0
    max_fast_failures: int = 5
    children: dict[str, _Child] = field(default_factory=dict)

    def start(self) -> None:
        for spec in self.specs:
            self.spawn(spec)

    def spawn(self, spec: ProcessSpec, previous: _Child | None = None) -> _Child:
        env = {**os.environ, **(spec.env or {})}
        # A new session: the terminal's Ctrl-C reaches only the supervisor,
        # which then stops children in order.
        process = subprocess.Popen(spec.argv, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        child = _Child(spec=spec, process=process, started_at=time.monotonic())
        if previous is not None:
            child.restarts = previous.restarts + 1
            child.fast_failures = previous.fast_failures
        self.children[spec.name] = child
        self.log(f"[supervisor] {spec.name} started (pid {process.pid})")
        return child

    def poll(self) -> list[str]:
        """Restart dead children; returns the names restarted."""
        restarted = []
        for name, child in list(self.children.items()):
            code = child.process.poll()
            if code is None or not child.spec.restart:
                continue
            uptime = time.monotonic() - child.started_at
            child.fast_failures = child.fast_failures + 1 if uptime < self.min_uptime_s else 0
            if child.fast_failures >= self.max_fast_failures:
                raise CrashLoop(f"{name} exited {child.fast_failures} times right after starting (last code {code})")
            self.log(f"[supervisor] {name} exited with code {code}; restarting")
            time.sleep(min(0.2 * 2**child.fast_failures, 5.0))
            self.spawn(child.spec, previous=child)
            restarted.append(name)
        return restarted

    def stop(self, timeout: float = 15.0) -> None:
        for child in reversed(list(self.children.values())):
            self._terminate(child, timeout)
        self.children.clear()

    @staticmethod
    def _terminate(child: _Child, timeout: float) -> None:
        if child.process.poll() is not None:
            return
        try:
            os.killpg(child.process.pid, signal.SIGTERM)
            child.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        except ProcessLookupError:
            pass
