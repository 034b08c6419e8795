"""Inserting one new row without the ORM's per-call query compiling.

``Model.objects.create()`` compiles its INSERT on every call: for a job
(34 columns) that was a seventh of a submission's CPU (profiled). The hot
inserts (a job, its audit record) use :func:`row_insert`: the statement is
built once per model and database vendor, and each value is prepared as
``save()`` prepares it (``pre_save``, e.g. ``auto_now_add``, then
``get_db_prep_save``). Unlike ``save()`` it sends no ``pre_save`` /
``post_save`` signals and skips a model's own ``save()``: use it only for
models that have neither (checked by tests/core/test_rows.py).

:func:`row_prepare` does the preparing apart from the INSERT, so a caller
can prepare a row before it takes a lock and only run the statement while
holding it (a submission's job and audit rows, outside the group commit's
shared transaction: building and preparing them was a third of the commit
thread's time, while it held the database's one writer lock on SQLite)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from django.db import connection
from django.db.models import AutoField, Field, Model


def quoted(name: Any) -> str:
    """A table or column name, quoted for the current connection's database."""
    return connection.ops.quote_name(str(name))


def quoted_column(model: type[Model], field_name: str) -> str:
    return quoted(cast(Field, model._meta.get_field(field_name)).column)


M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class PreparedRow(Generic[M]):
    """A new instance's INSERT, ready to run (see :func:`row_prepare`)."""

    instance: M
    sql: str
    values: list[Any]
    returns_pk: bool


def row_prepare(instance: M) -> PreparedRow[M]:
    """The INSERT of ``instance`` (new), its values prepared as ``save()``
    prepares them (``auto_now_add`` fields are set now, on the instance)."""
    sql, fields, returns_pk = _insert_query(type(instance), connection.vendor)
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    return PreparedRow(instance, sql, values, returns_pk)


def prepared_row_insert(row: PreparedRow[M]) -> M:
    """Run a prepared INSERT; an auto primary key is read back (RETURNING).
    May run again (in a new transaction) after a rollback."""
    instance = row.instance
    with connection.cursor() as cursor:
        cursor.execute(row.sql, row.values)
        if row.returns_pk:
            setattr(instance, type(instance)._meta.pk.attname, cursor.fetchone()[0])
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def row_insert(instance: Model) -> None:
    """INSERT ``instance`` (new) as one row; an auto primary key is read
    back from the INSERT (RETURNING)."""
    prepared_row_insert(row_prepare(instance))


@functools.cache
def _insert_query(model: type[Model], vendor: str) -> tuple[str, list[Field[Any, Any]], bool]:
    meta = model._meta
    pk = meta.pk
    returns_pk = isinstance(pk, AutoField)
    if returns_pk and not connection.features.can_return_columns_from_insert:
        raise RuntimeError(f"row_insert needs INSERT ... RETURNING for {meta.label}'s auto primary key")
    fields = [field for field in meta.concrete_fields if not (returns_pk and field is pk)]
    columns = ", ".join(quoted(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    returning = f" RETURNING {quoted(pk.column)}" if returns_pk else ""
    return f"INSERT INTO {quoted(meta.db_table)} ({columns}) VALUES ({placeholders}){returning}", fields, returns_pk
