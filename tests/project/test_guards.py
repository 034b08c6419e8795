"""The lane guards (tests/support/guards.py) work: this module is not marked
integration, so starting a server or using Redis unasked must fail here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
from django.conf import settings

from tests.support import guards


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["/usr/bin/redis-server", "--port", "1"], "redis-server"),
        ([sys.executable, "-m", "gunicorn", "config.asgi:application"], "gunicorn"),
        ([sys.executable, "manage.py", "rundramatiq", "--processes", "1"], "rundramatiq"),
        (["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "start"], "pg_ctl"),
        (["/bin/sh", "-c", 'exec "$@"', "log", "/venv/bin/traefik", "--ping"], "traefik"),
        ([sys.executable, "-m", "tests.support.cosyvoice_server", "--port", "1"], "tests.support.cosyvoice_server"),
        ([sys.executable, "-c", "import runpy; runpy.run_path('config/gunicorn.conf.py')"], None),
        ([sys.executable, "manage.py", "reap_jobs"], None),
        (["bash", "platform/run-cluster.sh"], "run-cluster.sh"),
        (["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/createdb", "x"], None),
    ],
)
def test_server_programs_are_recognised_in_a_command_line(argv, program):
    assert guards._server_program(argv) == program


def test_a_server_process_fails_a_test_not_marked_integration():
    with pytest.raises(pytest.fail.Exception, match="not marked integration"):
        subprocess.Popen(["/nonexistent/redis-server", "--port", "1"])  # refused before it is even looked up


def test_an_in_process_server_fails_a_test_not_marked_integration():
    from tests.support.comfyui_server import ComfyUIStub

    with pytest.raises(pytest.fail.Exception, match="starts a fake ComfyUI server but is not marked integration"):
        ComfyUIStub()


def test_redis_unasked_fails_at_once(request):
    assert settings.REDIS_URL == guards.NOT_REQUESTED_URL
    with pytest.raises(guards.RedisNotRequested, match="does not request the `redis_url` fixture"):
        redis.Redis.from_url(settings.REDIS_URL).ping()
    request.node.stash[guards._redis_misuse].clear()  # expected here: not a failure of this test


def test_redis_asked_for_is_a_real_server(redis_url):
    assert settings.REDIS_URL == redis_url != guards.NOT_REQUESTED_URL
    assert redis.Redis.from_url(redis_url).ping()


def test_a_setting_changed_beside_redis_url_is_undone_with_it(settings, redis_url):
    """``settings`` set up before ``redis_url``, then a setting changed: the
    two overrides must be undone in reverse order (the next test checks)."""
    settings.METRICS_TOKEN = "changed-after-redis-url"
    assert redis_url == settings.REDIS_URL


def test_the_redis_url_did_not_outlive_the_test_before():
    assert settings.REDIS_URL == guards.NOT_REQUESTED_URL
    assert settings.METRICS_TOKEN != "changed-after-redis-url"
