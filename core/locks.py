"""Database locks on names rather than rows."""

from __future__ import annotations

from django.db import connection


def named_lock_in_transaction(name: str) -> None:
    """Hold a lock on ``name`` until the current transaction ends, so callers
    that take it run in turn. On Postgres a transaction-scoped advisory lock
    (no row is locked, so nothing else waits on it); SQLite's IMMEDIATE
    transactions already serialize every writer, so nothing more is needed."""
    if not connection.in_atomic_block:
        raise RuntimeError("named_lock_in_transaction() belongs inside transaction.atomic().")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])
