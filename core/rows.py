"""Inserting one new row without the ORM's per-call query compiling.

``Model.objects.create()`` compiles its INSERT on every call: for a job
(34 columns) that was a seventh of a submission's CPU (profiled). The hot
inserts (a job, its audit record) use :func:`row_insert`: the statement is
built once per model and database vendor, and each value is prepared as
``save()`` prepares it (``pre_save``, e.g. ``auto_now_add``, then
``get_db_prep_save``). Unlike ``save()`` it sends no ``pre_save`` /
``post_save`` signals and skips a model's own ``save()``: use it only for
models that have neither (checked by tests/core/test_rows.py)."""

from __future__ import annotations

import functools
from typing import Any, cast

from django.db import connection
from django.db.models import AutoField, Field, Model


def quoted(name: Any) -> str:
    """A table or column name, quoted for the current connection's database."""
    return connection.ops.quote_name(str(name))


def quoted_column(model: type[Model], field_name: str) -> str:
    return quoted(cast(Field, model._meta.get_field(field_name)).column)


def row_insert(instance: Model) -> None:
    """INSERT ``instance`` (new) as one row; an auto primary key is read
    back from the INSERT (RETURNING)."""
    sql, fields, returns_pk = _insert_query(type(instance), connection.vendor)
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if returns_pk:
            setattr(instance, type(instance)._meta.pk.attname, cursor.fetchone()[0])
    instance._state.adding = False
    instance._state.db = connection.alias


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
