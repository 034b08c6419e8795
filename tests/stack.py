"""A real Mynah stack in child processes for integration tests and benches:
redis-server, gunicorn and a Dramatiq worker on free loopback ports, with a
throwaway SQLite database and media directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from core.redis_server import free_port, redis_server_argv, wait_for_redis
from core.supervisor import ProcessSpec, Supervisor
from tests.doubles import DOUBLES

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    def __init__(self, workdir: Path, *, worker_threads: int = 2, web_workers: int = 1, extra_env: dict[str, str] | None = None):
        self.workdir = workdir
        self.redis_port = free_port()
        self.web_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "MEDIA_ROOT": str(workdir / "media"),
            "MYNAH_VAR_DIR": str(workdir / "var"),
            "SECRET_KEY": "integration-tests",
            "ENGINES_EXTRA": ",".join(f"{name}={path}" for name, path in DOUBLES.items()),
            "ENGINES_PRELOAD": "espeak",
            "JOB_RETRY_MIN_BACKOFF_MS": "50",
            "JOB_RETRY_MAX_BACKOFF_MS": "200",
            "PORT": str(self.web_port),
            "WEB_CONCURRENCY": str(web_workers),
            "dramatiq_worker_timeout": "20",
            "PYTHONPATH": str(ROOT),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
            **(extra_env or {}),
        }
        self.worker_threads = worker_threads
        self.supervisor = Supervisor(specs=[], log=lambda line: None)
        self.redis: subprocess.Popen | None = None
        self.api_key = ""

    # ------------------------------------------------------------ lifecycle
    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env={**os.environ, **self.env},
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def start_redis(self) -> None:
        argv = redis_server_argv(port=self.redis_port, data_dir=self.workdir / "redis")
        self.redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for_redis("127.0.0.1", self.redis_port, process=self.redis)

    def stop_redis(self) -> None:
        if self.redis and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(timeout=10)

    def start(self) -> Stack:
        (self.workdir / "metrics").mkdir(exist_ok=True)
        self.start_redis()
        self.manage("migrate", "--noinput")
        self.manage("create_tenant", "acme")
        self.api_key = self.manage("create_api_key", "acme", "--name", "integration").strip().splitlines()[-1]
        self.manage("create_tenant", "globex")
        self.other_api_key = self.manage("create_api_key", "globex", "--name", "integration").strip().splitlines()[-1]
        python = sys.executable
        self.supervisor.specs = [
            ProcessSpec("worker", [python, "manage.py", "rundramatiq", "--processes", "1", "--threads", str(self.worker_threads)], self.env),
            ProcessSpec("web", [python, "-m", "gunicorn", "config.asgi:application", "-c", "config/gunicorn.conf.py"], self.env),
        ]
        cwd = os.getcwd()
        os.chdir(ROOT)  # children run from the repository root
        try:
            self.supervisor.start()
        finally:
            os.chdir(cwd)
        self.wait_until(lambda: self._healthy(), timeout=60, what="API to start")
        return self

    def stop(self) -> None:
        self.supervisor.stop()
        self.stop_redis()

    # --------------------------------------------------------------- helpers
    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    @staticmethod
    def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}")

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def submit(self, **payload) -> requests.Response:
        return requests.post(f"{self.base_url}/v1/tts", json=payload, headers=self.headers(), timeout=10)

    def job(self, job_id: str) -> dict:
        return requests.get(f"{self.base_url}/v1/jobs/{job_id}", headers=self.headers(), timeout=10).json()

    def wait_terminal(self, job_id: str, timeout: float = 60) -> dict:
        def done():
            body = self.job(job_id)
            return body if body["status"] in {"succeeded", "failed", "canceled"} else None

        return self.wait_until(done, timeout=timeout, what=f"job {job_id}", interval=0.1)
