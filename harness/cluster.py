"""``platform/run-cluster.sh`` as a child process, for the multi-instance
test and the scaling benchmark: Traefik in front of several web instances
and replicated worker pools, on free loopback ports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.redis_server import free_port
from harness.doubles import DOUBLES
from harness.stack import ROOT, _stack_database_url


class Cluster:
    """platform/run-cluster.sh as a child process; what it prints tells the
    demo key, the web instances and every supervised child's pid."""

    def __init__(
        self,
        workdir: Path,
        *,
        web_instances: int = 2,
        worker_replicas: int = 2,
        extra_env: dict[str, str] | None = None,
        database_url: str | None = None,
    ):
        self.workdir = workdir
        self.web_instances = web_instances
        self.worker_processes = 3 * worker_replicas  # 3 pools x 1 process each
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = workdir / "cluster.log"
        self.env = {
            **os.environ,
            "VENV": str(Path(sys.executable).parent.parent),
            "PORT": str(self.port),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "MYNAH_VAR_DIR": str(workdir / "var"),
            "DATABASE_URL": database_url or _stack_database_url(workdir),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "cluster-tests",
            "ENGINES_EXTRA": ",".join(f"{name}={path}" for name, path in DOUBLES.items()),
            "ENGINES_PRELOAD": "espeak",
            "WEB_CONCURRENCY": "1",
            "JOB_RETRY_MIN_BACKOFF_MS": "50",
            "JOB_RETRY_MAX_BACKOFF_MS": "200",
            "PYTHONPATH": str(ROOT),
            "WEB_INSTANCES": str(web_instances),
            "WORKER_REPLICAS": str(worker_replicas),
            # Postgres pass: the suite's cluster allows 300 connections
            # (harness/postgres.py); each process's pool holds 1 to 12.
            "DB_POOL_MIN_SIZE": "1",
            "DB_POOL_MAX_SIZE": "12",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> Cluster:
        with self.output.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "platform/run-cluster.sh"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while "Mynah is running" not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not start:\n{self.text()[-4000:]}")
            time.sleep(0.2)
        # The API answers before the workers have loaded their models; a
        # kill "mid-burst" must hit a worker that is running jobs.
        while self.text().count("Worker process is ready for action") < self.worker_processes:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not start:\n{self.text()[-4000:]}")
            time.sleep(0.2)
        self.api_key = _found(r"Demo API key.*\n\s+(\S+)", self.text())
        self.instances = _found(r"in front of \d+ web instances?: (.+)", self.text()).split(", ")
        return self

    @property
    def web_names(self) -> list[str]:
        return ["web"] if self.web_instances == 1 else [f"web-{i + 1}" for i in range(self.web_instances)]

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def pid(self, name: str) -> int:
        """The latest pid the supervisor reported for a child."""
        return int(re.findall(rf"\[supervisor\] {re.escape(name)} started \(pid (\d+)\)", self.text())[-1])

    def kill(self, name: str) -> int:
        """SIGKILL the child's whole process group (gunicorn's or Dramatiq's
        master and its workers): an instance or a pod gone at once."""
        pid = self.pid(name)
        os.killpg(pid, signal.SIGKILL)
        return pid

    def kill_during_a_run(self, name: str, runs_dir: Path, timeout: float = 60) -> list[str]:
        """SIGKILL a worker while it is inside an engine run, so that a job is
        certainly lost mid-run. Its process group is frozen (SIGSTOP) and
        killed only if one of its processes has a run in progress (the marker
        files the "slow" double leaves in ``runs_dir``, see harness/doubles.py);
        otherwise it goes on (SIGCONT) and is looked at again. Frozen, it
        cannot finish a run between the look and the kill. Returns the ids of
        the jobs it was running."""
        deadline = time.monotonic() + timeout
        while True:
            group = self.pid(name)
            os.killpg(group, signal.SIGSTOP)
            try:
                running = [job_id for pid, job_id in self._runs(runs_dir) if _group_of(pid) == group]
            except BaseException:
                os.killpg(group, signal.SIGCONT)
                raise
            if running:
                os.killpg(group, signal.SIGKILL)
                return running
            os.killpg(group, signal.SIGCONT)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} started no engine run within {timeout} s")
            time.sleep(0.02)

    @staticmethod
    def _runs(runs_dir: Path) -> list[tuple[int, str]]:
        """(pid, job id) of every engine run in progress."""
        runs = []
        for marker in runs_dir.glob("*.running"):
            pid, _, job_id = marker.stem.partition("-")
            runs.append((int(pid), job_id))
        return runs

    def access_log(self) -> list[dict]:
        path = self.workdir / "var" / "traefik" / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        """Ctrl-C, as a user stops it: the supervisor stops its children."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:  # a run of a process that died
        return None


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"not in the cluster's output: {pattern!r}")
    return match.group(1)
