from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.db.models import Model, QuerySet
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

_M = TypeVar("_M", bound=Model)
_Row = TypeVar("_Row")


class NewestFirstCursorPagination(CursorPagination):
    """Stable, opaque cursors: pages do not shift when new rows arrive."""

    ordering = ("-created_at", "-id")
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100

    if TYPE_CHECKING:
        # A page, never None: DRF returns None only when page_size is None.
        def paginate_queryset(
            self, queryset: QuerySet[_M, _Row] | Sequence[_Row], request: Request, view: APIView | None = None
        ) -> list[_Row]: ...

    def decode_cursor(self, request: Any) -> Any:
        cursor = super().decode_cursor(request)
        # A tampered cursor can carry any position; it must be a timestamp
        # before it reaches a query.
        if cursor is not None and cursor.position is not None:
            try:
                valid = parse_datetime(cursor.position) is not None  # type: ignore[arg-type]  # a str (the stubs say int)
            except ValueError:
                valid = False
            if not valid:
                raise NotFound(self.invalid_cursor_message)
        return cursor
