"""``make run``: Redis, migrations, a demo key, the API and supervised workers.

``--web-instances 2 --worker-replicas 2 --traefik`` (platform/run-cluster.sh)
runs the scale-out shape on one machine: a real Traefik on PORT in front of
several web instances on their own ports, and each worker pool replicated,
as the Kubernetes manifests in platform/k8s run them."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sys
import threading
import time
import urllib.request
from urllib.parse import urlparse

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from core.redis_server import free_port, redis_ping, redis_server_argv, wait_for_redis
from core.supervisor import CrashLoop, ProcessSpec, Supervisor

# Worker pools: (name, queues, threads, extra env). The same pools are the
# worker Deployments in platform/k8s and the process types in the Procfile.
POOLS = [
    ("worker", ["voices", "tts-high", "tts"], None, {}),
    # Talking heads on their own worker, so a video backlog never delays
    # speech. One thread: a render uses both cores.
    ("video", ["video-high", "video", "video-hires"], 1, {"ENGINES_PRELOAD": "builtin", "VOICE_MODELS_PRELOAD": "0"}),
    # Webhook deliveries wait on receivers (up to the timeouts): their own
    # small worker, so they never queue behind generation jobs. No models.
    ("webhooks", ["webhooks"], 4, {"ENGINES_PRELOAD": "", "VOICE_MODELS_PRELOAD": "0"}),
]

DEMO_TENANT = "demo"
DEMO_KEY_NAME = "make-run demo key"
REPAIR_INTERVAL_S = 30.0


class Command(BaseCommand):
    help = "Run the whole platform locally: Redis, API (gunicorn) and a supervised Dramatiq worker."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--worker-processes", type=int, default=int(os.environ.get("WORKER_PROCESSES", "1")))
        parser.add_argument("--worker-threads", type=int, default=int(os.environ.get("WORKER_THREADS", "2")))
        parser.add_argument("--web-instances", type=int, default=1, help="gunicorn instances (more than one needs --traefik)")
        parser.add_argument("--worker-replicas", type=int, default=1, help="supervised copies of each worker pool (0: web only)")
        parser.add_argument("--traefik", action="store_true", help="a Traefik proxy on --port in front of the web instances")

    def handle(
        self,
        *args,
        port: int,
        worker_processes: int,
        worker_threads: int,
        web_instances: int,
        worker_replicas: int,
        traefik: bool,
        **options,
    ):
        if web_instances < 1 or worker_replicas < 0:
            raise CommandError("--web-instances must be at least 1 and --worker-replicas at least 0.")
        if web_instances > 1 and not traefik:
            raise CommandError("Several web instances need --traefik in front of them.")
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())

        supervisor = Supervisor(specs=[], log=self.stdout.write)
        try:
            self._start_redis(supervisor)
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            raw_key = self._demo_key()
            web_ports = [free_port() for _ in range(web_instances)] if traefik else [port]
            self._start_app(supervisor, port, web_ports, worker_processes, worker_threads, worker_replicas, behind_proxy=traefik)
            for web_port in web_ports:
                self._wait_for_web(web_port, supervisor)
            if traefik:
                self._start_traefik(supervisor, port, web_ports)
                self._wait_for_web(port, supervisor)
            self._banner(port, raw_key, web_ports if traefik else [])
            self._supervise(supervisor, stop)
        except CrashLoop as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self.stdout.write("Stopping…")
            supervisor.stop()
            self.stdout.write("Stopped.")

    def _start_redis(self, supervisor: Supervisor) -> None:
        url = urlparse(settings.REDIS_URL)
        host, port = url.hostname or "127.0.0.1", url.port or 6379
        if redis_ping(host, port):
            self.stdout.write(f"Using the Redis already running on {host}:{port}")
            return
        if host not in {"127.0.0.1", "localhost"}:
            raise CommandError(f"Redis at {host}:{port} is not reachable (REDIS_URL).")
        spec = ProcessSpec("redis", redis_server_argv(port=port, data_dir=settings.VAR_DIR / "redis"))
        supervisor.specs.append(spec)
        child = supervisor.spawn(spec)
        wait_for_redis(host, port, process=child.process)
        self.stdout.write(f"Started redis-server on {host}:{port} ({spec.argv[0]})")

    def _demo_key(self) -> str:
        # Through the tenants app's commands (core imports no app). Keys are
        # stored hashed and cannot be shown again: each run rotates the demo
        # key and prints the new one once.
        call_command("create_tenant", DEMO_TENANT, "--name", "Demo", "--exist-ok", stdout=io.StringIO())
        out = io.StringIO()
        call_command("create_api_key", DEMO_TENANT, "--name", DEMO_KEY_NAME, "--replace", stdout=out)
        return out.getvalue().strip().splitlines()[-1]  # the key is the last line

    def _start_app(
        self, supervisor: Supervisor, port: int, web_ports: list[int], processes: int, threads: int, replicas: int, *, behind_proxy: bool
    ) -> None:
        # Every process writes its metric samples here; /metrics adds them up.
        metrics_dir = settings.VAR_DIR / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)  # counters restart with the processes
        metrics_dir.mkdir(parents=True)
        env = {
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
            "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}"),
            # Local development: webhooks may reach receivers on this machine.
            "WEBHOOK_ALLOWED_NETWORKS": os.environ.get("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
        }
        worker_env = {**env, "dramatiq_worker_timeout": os.environ.get("dramatiq_worker_timeout", "20")}  # noqa: SIM112 (dramatiq's own name)
        specs = []
        for name, queues, pool_threads, pool_env in POOLS:
            argv = [
                sys.executable,
                "manage.py",
                "rundramatiq",
                "--processes",
                str(processes if name == "worker" else 1),
                "--threads",
                str(pool_threads or threads),
                "--queues",
                *queues,
            ]
            specs += [ProcessSpec(_numbered(name, i, replicas), argv, {**worker_env, **pool_env}) for i in range(replicas)]
        web_argv = [sys.executable, "-m", "gunicorn", "config.asgi:application", "-c", "config/gunicorn.conf.py"]
        web_env = {**env}
        if behind_proxy:
            # The local Traefik connects from loopback: believe its
            # X-Forwarded-For (the client's address) and X-Forwarded-Proto.
            web_env["TRUSTED_PROXIES"] = os.environ.get("TRUSTED_PROXIES", "127.0.0.1/32,::1/128")
        specs += [
            ProcessSpec(_numbered("web", i, len(web_ports)), web_argv, {**web_env, "PORT": str(web_port)})
            for i, web_port in enumerate(web_ports)
        ]
        for spec in specs:
            supervisor.specs.append(spec)
            supervisor.spawn(spec)

    def _start_traefik(self, supervisor: Supervisor, port: int, web_ports: list[int]) -> None:
        from core.traefik import traefik_argv, write_dynamic_config

        run_dir = settings.VAR_DIR / "traefik"
        write_dynamic_config(run_dir / "dynamic", [f"http://127.0.0.1:{web_port}" for web_port in web_ports])
        argv = traefik_argv(host="127.0.0.1", port=port, ping_port=free_port(), dynamic_dir=run_dir / "dynamic", log_dir=run_dir)
        spec = ProcessSpec("traefik", argv)
        supervisor.specs.append(spec)
        supervisor.spawn(spec)

    def _wait_for_web(self, port: int, supervisor: Supervisor, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            supervisor.poll()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise CommandError(f"The API did not come up on port {port} within {timeout:.0f} s.")

    def _banner(self, port: int, raw_key: str, web_ports: list[int]) -> None:
        base = f"http://127.0.0.1:{port}"
        behind = ""
        if web_ports:
            instances = ", ".join(f"http://127.0.0.1:{web_port}" for web_port in web_ports)
            behind = (
                f"Traefik on {base} in front of {len(web_ports)} web instances: {instances}\nTraefik logs: {settings.VAR_DIR / 'traefik'}\n"
            )
        self.stdout.write(
            f"""
Mynah is running at {base}   (Ctrl-C stops everything)
{behind}
Demo API key (shown once; a new one is issued on every `make run`):
  {raw_key}

Try it in a browser: {base}/playground   (paste the key above)

Or with curl:
  curl -s -X POST {base}/v1/tts -H 'Authorization: Bearer {raw_key}' -H 'Content-Type: application/json' -d '{{"text": "Hello from Mynah."}}'
  curl -s {base}/v1/jobs/<id> -H 'Authorization: Bearer {raw_key}'
  curl -s -o hello.wav {base}/v1/jobs/<id>/result -H 'Authorization: Bearer {raw_key}'

Staff: `.venv/bin/python manage.py createsuperuser`, then {base}/admin/ and {base}/admin/dashboard/
Health and metrics: {base}/readyz  {base}/metrics
"""
        )

    def _supervise(self, supervisor: Supervisor, stop: threading.Event) -> None:
        next_repair = time.monotonic() + REPAIR_INTERVAL_S
        while not stop.wait(0.5):
            supervisor.poll()
            if time.monotonic() >= next_repair:
                next_repair = time.monotonic() + REPAIR_INTERVAL_S
                try:  # what cron / a CronJob runs in a deployment
                    call_command("repair", stdout=io.StringIO())
                except Exception as exc:  # the database may be briefly busy
                    self.stderr.write(f"[repair] {exc}")


def _numbered(name: str, index: int, count: int) -> str:
    """``web`` alone, ``web-1``, ``web-2``… when there are several."""
    return name if count == 1 else f"{name}-{index + 1}"
