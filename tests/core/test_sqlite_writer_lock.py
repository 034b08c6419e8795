"""SQLite write transactions take turns on a file lock next to the database
(core/db_backends/sqlite3): taken at BEGIN, given back at COMMIT, ROLLBACK
or close, and a writer that cannot get it within the timeout fails as
SQLite would ("database is locked")."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from tenants.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's writer lock; Postgres locks rows")


def _held_elsewhere() -> bool:
    """Whether another descriptor (as another process would) finds the lock taken."""
    fd = os.open(connection._writer_lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_write_transaction_holds_the_lock_until_it_ends():
    assert not _held_elsewhere()
    with transaction.atomic():
        Tenant.objects.create(slug="locked")
        assert _held_elsewhere()
    assert not _held_elsewhere()

    def rolled_back() -> None:
        with transaction.atomic():
            Tenant.objects.create(slug="rolled-back")
            assert _held_elsewhere()
            raise RuntimeError

    with pytest.raises(RuntimeError):
        rolled_back()
    assert not _held_elsewhere()
    assert list(Tenant.objects.values_list("slug", flat=True)) == ["locked"]


def test_closing_the_connection_gives_the_lock_back():
    transaction.set_autocommit(False)
    connection._start_transaction_under_autocommit()
    assert _held_elsewhere()
    connection.close()
    assert not _held_elsewhere()


def test_a_second_writer_waits_for_the_first_to_commit():
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        try:
            with transaction.atomic():
                Tenant.objects.create(slug="first")
                inside.set()
                assert release.wait(timeout=10)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            with transaction.atomic():
                seen.append(Tenant.objects.filter(slug="first").exists())  # only after first's commit
        finally:
            connections.close_all()

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(timeout=10)
    two = threading.Thread(target=second)
    two.start()
    two.join(timeout=0.3)
    assert two.is_alive() and seen == []  # waiting for the lock
    release.set()
    one.join(timeout=10)
    two.join(timeout=10)
    assert seen == [True]


def test_a_writer_that_cannot_get_the_lock_fails_as_sqlite_would(settings, monkeypatch):
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.2)
    fd = os.open(connection._writer_lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
            Tenant.objects.create(slug="never")
    finally:
        os.close(fd)
    assert not Tenant.objects.exists()
    with transaction.atomic():  # and the connection is usable again
        Tenant.objects.create(slug="later")
    assert Tenant.objects.filter(slug="later").exists()
