"""Group commit: the short write transactions of many request threads of a
process, run by one thread in shared transactions.

Why: every submission is a write transaction. On SQLite the writers of all
processes take turns on one write lock, and a request thread that holds it
competes for the GIL with the process's other request threads, so the lock
was held for milliseconds per job and most of a submission's wall time was
spent waiting for it (profiled: ~30 % of web samples in BEGIN IMMEDIATE, p99
1.7 s at 64 connections). On Postgres each submission held its tenant's turn
through its own commit. Here a process's submissions queue for one thread,
which runs whatever has queued in one transaction (see below for each unit's
isolation), commits once, and wakes each request with its own result.

What each unit of work sees is what it saw in a transaction of its own:
- an exception rolls back only that unit (and discards its ``on_commit``
  callbacks), and is raised in its request thread. On Postgres each unit
  runs in a savepoint (an error there aborts the whole transaction). On
  SQLite a unit runs without one, and the connection's count of changed rows
  says whether it wrote anything before it raised: a unit that refuses
  before it writes (a quota, a conflict) leaves nothing to roll back, and
  one that wrote fails the batch, whose units then run again one per
  transaction (below). The savepoint and its release were two of a
  submission's six statements in the shared transaction, each a moment the
  commit thread gave up the GIL while it held the writer lock;
- its request answers only after the batch committed (a 202 stays durable);
  a batch that fails as a whole (at BEGIN, a lock or COMMIT: a foreign key
  is checked at COMMIT) runs again one unit per transaction, so each unit
  gets its own outcome;
- it runs in a copy of its request's context (context variables: the request
  id in logs, an Idempotency-Key's claim);
- named locks (``core.locks``) that units declare are all taken at the start
  of the batch, in sorted order: on Postgres two batches that need the same
  locks take them in the same order, so they wait for each other instead of
  deadlocking.

Work runs inline, in a transaction of its own, when group commit is off
(``DB_GROUP_COMMIT``) or when the caller is already inside a transaction
(its rows would be invisible to the committer's connection).
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from core.locks import named_lock_in_transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A batch holds the write lock while its units run: this bounds how long
# (a unit of job creation is about a millisecond of CPU).
MAX_BATCH = 64


@dataclass
class _Unit(Generic[T]):
    work: Callable[[], T]
    locks: tuple[str, ...]
    context: contextvars.Context
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommitter:
    """One thread per process (started on first use, again after a fork)
    that runs queued units of work in shared transactions."""

    def __init__(self, name: str = "group-commit") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Unit[Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self.batches = 0  # committed or not; for tests and metrics
        self.units = 0

    def run(self, work: Callable[[], T], *, locks: Iterable[str] = ()) -> T:
        """``work()`` in a transaction shared with other threads' units; its
        result once that transaction committed, or its exception."""
        unit: _Unit[T] = _Unit(work=work, locks=tuple(locks), context=contextvars.copy_context())
        self._queue.put(unit)
        self._ensure_thread()
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return
        with self._start_lock:
            thread = self._thread
            if thread is not None and self._pid == os.getpid() and thread.is_alive():
                return
            self._pid = os.getpid()  # a forked child starts its own thread
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def _take(self) -> list[_Unit[Any]]:
        """What has queued: the first blocks, the rest only if already there
        (no waiting for company: a lone request pays nothing)."""
        batch = [self._queue.get()]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            try:
                self.run_batch(batch)
            finally:
                for unit in batch:
                    unit.done.set()
                close_old_connections()  # as after a request: a broken or aged connection is replaced

    def run_batch(self, batch: list[_Unit[Any]]) -> None:
        self.batches += 1
        self.units += len(batch)
        try:
            _run_in_transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = _first_error(batch[0], exc)
                return
            # BEGIN, a lock or COMMIT failed: nothing of the batch was
            # written. Run each unit again in a transaction of its own, so
            # one unit's deferred constraint (a foreign key checked at
            # COMMIT) fails that unit only; if the database is down, each
            # gets its own error.
            logger.warning("group commit failed; running its %d units one by one", len(batch), exc_info=True)
            for unit in batch:
                unit.error = unit.result = None
                try:
                    _run_in_transaction([unit])
                except Exception as unit_exc:  # its transaction failed (its own error is kept)
                    unit.error = _first_error(unit, unit_exc)


def _first_error(unit: _Unit[Any], exc: BaseException) -> BaseException:
    return unit.error if unit.error is not None else exc


def _run_in_transaction(batch: list[_Unit[Any]]) -> None:
    """The units in one transaction, after every lock they declared (taken
    in sorted order), each in its request's context."""
    with transaction.atomic():
        _named_locks_in_order(name for unit in batch for name in unit.locks)
        for unit in batch:
            unit.context.run(_run_unit, unit)


def _named_locks_in_order(names: Iterable[str]) -> None:
    """Each named lock once, in sorted order: every transaction that takes
    several takes them in the same order, so none waits on another in a cycle."""
    for name in sorted(set(names)):
        named_lock_in_transaction(name)


def _run_unit(unit: _Unit[Any]) -> None:
    if connection.vendor != "sqlite":
        try:
            with transaction.atomic():
                unit.result = unit.work()
        except Exception as exc:  # this unit only: rolled back to its savepoint
            unit.error = exc
        return
    raw = connection.connection
    changes, hooks = raw.total_changes, len(connection.run_on_commit)
    try:
        unit.result = unit.work()
    except Exception as exc:
        # A unit that changed no row left nothing behind. One that did, or
        # whose error ended the transaction or left Django marking it for
        # rollback (a failed ORM save), fails the batch: only a rollback
        # undoes it.
        if raw.total_changes != changes or not raw.in_transaction or connection.needs_rollback:
            raise
        del connection.run_on_commit[hooks:]  # its callbacks, as a savepoint's rollback discards them
        unit.error = exc


_committer = GroupCommitter()


def _drain_at_exit() -> None:
    """Units still queued when the process exits run here (their requests
    are still waiting)."""
    pending: list[_Unit[Any]] = []
    while True:
        try:
            pending.append(_committer._queue.get_nowait())
        except queue.Empty:
            break
    if pending:
        try:
            _committer.run_batch(pending)
        finally:
            for unit in pending:
                unit.done.set()


atexit.register(_drain_at_exit)


def in_shared_transaction(work: Callable[[], T], *, locks: Iterable[str] = ()) -> T:
    """``work()`` in a transaction, holding ``locks`` (named locks, see
    core.locks): shared with the process's other units (DB_GROUP_COMMIT), or
    its own when that is off or the caller is already in a transaction."""
    if settings.DB_GROUP_COMMIT and not connection.in_atomic_block:
        return _committer.run(work, locks=locks)
    with transaction.atomic():
        _named_locks_in_order(locks)
        return work()
