"""A real Mynah stack in child processes for integration tests and benches:
redis-server, gunicorn and a Dramatiq worker on free loopback ports, with a
throwaway SQLite database and media directory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from core.redis_server import free_port, redis_server_argv, wait_for_redis
from core.supervisor import ProcessSpec, Supervisor
from harness.doubles import DOUBLES

ROOT = Path(__file__).resolve().parent.parent


def _stack_database_url(workdir: Path) -> str:
    """SQLite in the stack's directory; on the suite's Postgres pass
    (tests/settings_postgres.py), a fresh database in its cluster."""
    server = os.environ.get("MYNAH_TEST_POSTGRES_URL")
    if not server:
        return f"sqlite:///{workdir / 'db.sqlite3'}"
    import uuid

    import psycopg

    name = f"stack_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + f"/{name}"


def list_all_jobs(session: requests.Session, base_url: str, headers: dict[str, str]) -> dict[str, dict]:
    """Every job of the key's tenant, by id, through the paginated list."""
    url: str | None = f"{base_url}/v1/jobs?limit=100"
    jobs: dict[str, dict] = {}
    while url:
        response = session.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        jobs.update((job["id"], job) for job in body["results"])
        url = body.get("next")
    return jobs


class Stack:
    def __init__(
        self,
        workdir: Path,
        *,
        worker_threads: int = 2,
        web_workers: int = 1,
        extra_env: dict[str, str] | None = None,
        log_children: bool = False,
    ):
        """``log_children``: append each child's stdout and stderr to
        ``workdir/logs/<name>.log`` (restarts included) and the supervisor's
        own lines to ``workdir/logs/supervisor.log``, for debugging."""
        self.workdir = workdir
        self.redis_port = free_port()
        self.web_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _stack_database_url(workdir),
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
            # Postgres pass: the suite's cluster allows 300 connections
            # (harness/postgres.py); each process's pool holds 1 to 12.
            "DB_POOL_MIN_SIZE": "1",
            "DB_POOL_MAX_SIZE": "12",
            **(extra_env or {}),
        }
        self.worker_threads = worker_threads
        self.log_dir = workdir / "logs" if log_children else None
        self.supervisor = Supervisor(specs=[], log=self._supervisor_log if log_children else (lambda line: None))
        self.redis: subprocess.Popen | None = None
        self.api_key = ""
        # supervise(): a thread that restarts dead children, as `make run` does.
        self.restarts: list[tuple[str, float]] = []  # (name, time.monotonic())
        self._supervising: threading.Thread | None = None
        self._stop_supervising = threading.Event()

    @property
    def media_root(self) -> Path:
        return Path(self.env["MEDIA_ROOT"])

    def _supervisor_log(self, line: str) -> None:
        assert self.log_dir is not None
        with (self.log_dir / "supervisor.log").open("a") as log:
            log.write(f"{time.time():.3f} {line}\n")

    def _argv(self, name: str, argv: list[str]) -> list[str]:
        """With ``log_children``, the child's output goes to a file; ``exec``
        keeps its pid (and process group) the supervisor's child."""
        if self.log_dir is None:
            return argv
        return ["/bin/sh", "-c", 'exec "$@" >>"$0" 2>&1', str(self.log_dir / f"{name}.log"), *argv]

    # ------------------------------------------------------------ lifecycle
    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
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

    def kill_redis(self) -> None:
        """SIGKILL: no shutdown save, up to the last second of the append-only file is lost."""
        if self.redis and self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait(timeout=10)

    def start(self) -> Stack:
        (self.workdir / "metrics").mkdir(exist_ok=True)
        self.start_redis()
        if self.log_dir is not None:
            self.log_dir.mkdir(exist_ok=True)
        self.manage("migrate", "--noinput")
        self.manage("create_tenant", "acme")
        self.api_key = self.manage("create_api_key", "acme", "--name", "integration").strip().splitlines()[-1]
        self.manage("create_tenant", "globex")
        self.other_api_key = self.manage("create_api_key", "globex", "--name", "integration").strip().splitlines()[-1]
        python = sys.executable
        self.supervisor.specs = [
            ProcessSpec(
                "worker",
                self._argv("worker", [python, "manage.py", "rundramatiq", "--processes", "1", "--threads", str(self.worker_threads)]),
                self.env,
            ),
            ProcessSpec(
                "web", self._argv("web", [python, "-m", "gunicorn", "config.asgi:application", "-c", "config/gunicorn.conf.py"]), self.env
            ),
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
        self._stop_supervising.set()
        if self._supervising is not None:
            self._supervising.join(timeout=30)
        self.supervisor.stop()
        self.stop_redis()

    def supervise(self, interval: float = 0.1) -> None:
        """Restart dead children in the background (as the run script's
        supervisor loop does); each restart is recorded in ``restarts``."""
        if self._supervising is not None:
            return

        def loop() -> None:
            while not self._stop_supervising.wait(interval):
                try:
                    for name in self.supervisor.poll():
                        self.restarts.append((name, time.monotonic()))
                except Exception as exc:  # CrashLoop: recorded, the test sees it
                    self.restarts.append((f"error: {exc}", time.monotonic()))
                    return

        self._supervising = threading.Thread(target=loop, name="stack-supervisor", daemon=True)
        self._supervising.start()

    def child_pids(self, name: str) -> list[int]:
        """Direct children of a supervised process (the Dramatiq master's
        worker processes, gunicorn's workers)."""
        pid = self.supervisor.children[name].process.pid
        children: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                children += [int(value) for value in task.read_text().split()]
        return sorted(set(children))

    def kill_child(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal the one child process of a supervised process (what an
        OOM killer hits: the Dramatiq worker process, not its master)."""
        children = self.wait_until(lambda: self.child_pids(name), timeout=30, what=f"a child process of {name}")
        assert len(children) == 1, f"{name} has children {children}"
        os.kill(children[0], sig)
        return children[0]

    @contextlib.contextmanager
    def reaper(self, interval: float = 2.0, unsent_after: float = 0) -> Iterator[list[str]]:
        """Run ``manage.py repair`` every ``interval`` seconds in the
        background, as the deployment's cron does; yields its outputs."""
        outputs: list[str] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    outputs.append(self.manage("repair", "--unsent-after", str(unsent_after)).strip())
                except Exception as exc:  # e.g. the database is down: cron tries again
                    outputs.append(f"error: {str(exc)[-300:]}")
                stop.wait(interval)

        thread = threading.Thread(target=loop, name="stack-reaper", daemon=True)
        thread.start()
        try:
            yield outputs
        finally:
            stop.set()
            thread.join(timeout=150)

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
