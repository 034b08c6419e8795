"""Cursor pagination for every list endpoint, with its query parameters
checked: a ``limit`` or ``cursor`` the API cannot honour is a 400
``validation_error`` naming the field, never a silent default."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib import parse

from django.db.models import Model, QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.utils.urls import remove_query_param

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

_M = TypeVar("_M", bound=Model)
_Row = TypeVar("_Row")

PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

# For @extend_schema(parameters=...) on list endpoints.
PAGE_PARAMETERS = [
    OpenApiParameter("cursor", str, description="From a page's next or previous link; anything else is refused"),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        description=f"Items per page, 1-{MAX_PAGE_SIZE} (default {PAGE_SIZE})",
    ),
]

_OFFSET = re.compile(r"^[0-9]{1,10}$")
_BAD_CURSOR = "Not a cursor from this list's next or previous link."


class NewestFirstCursorPagination(CursorPagination):
    """Stable, opaque cursors: pages do not shift when new rows arrive."""

    ordering = ("-created_at", "-id")
    page_size = PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE

    def paginate_queryset(self, queryset: QuerySet[_M, _Row] | Sequence[_Row], request: Request, view: APIView | None = None) -> list[_Row]:
        # Both parameters are checked first, so one answer names every bad one.
        errors: dict[str, Any] = {}
        try:
            self._limit = self._limit_parse(request)
        except serializers.ValidationError as exc:
            errors["limit"] = exc.detail
        try:
            self._cursor = self._cursor_parse(request)
        except serializers.ValidationError as exc:
            errors["cursor"] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        page = super().paginate_queryset(queryset, request, view)
        return page if page is not None else []  # None only without a page size

    def get_page_size(self, request: Any) -> int:
        return self._limit

    def decode_cursor(self, request: Any) -> Cursor | None:
        return self._cursor

    def encode_cursor(self, cursor: Cursor) -> str:
        if cursor == Cursor(offset=0, reverse=False, position=None):
            # The start of the list: the link without a cursor (an empty one is refused).
            return remove_query_param(self.base_url or "", self.cursor_query_param)
        return str(super().encode_cursor(cursor))

    def _limit_parse(self, request: Any) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        field = serializers.IntegerField(min_value=1, max_value=self.max_page_size)
        value: int = field.run_validation(raw)
        return value

    def _cursor_parse(self, request: Any) -> Cursor | None:
        """Only what ``encode_cursor`` makes: base64 of ``o`` (an offset up to
        ``offset_cutoff``), ``r=1`` (backwards) and ``p`` (a ``created_at``
        with its time zone), each at most once. DRF's own reader took any
        base64 text, and one without a position meant the start of the list."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            querystring = base64.b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
            pairs = parse.parse_qsl(querystring, keep_blank_values=True, strict_parsing=True)
        except (ValueError, binascii.Error):
            raise serializers.ValidationError(_BAD_CURSOR, code="invalid") from None
        tokens = dict(pairs)
        offset, reverse, position = tokens.get("o", "0"), tokens.get("r"), tokens.get("p")
        valid = (
            bool(pairs)
            and len(tokens) == len(pairs)
            and set(tokens) <= {"o", "r", "p"}
            and bool(_OFFSET.match(offset))
            and int(offset) <= self.offset_cutoff
            and reverse in (None, "1")
            and (position is None or _is_aware_datetime(position))
        )
        if not valid:
            raise serializers.ValidationError(_BAD_CURSOR, code="invalid")
        return Cursor(offset=int(offset), reverse=reverse == "1", position=position)  # type: ignore[arg-type]  # a str (the stubs say int)


def _is_aware_datetime(text: str) -> bool:
    try:
        moment = parse_datetime(text)
    except ValueError:  # well formed but out of range: month 13
        return False
    return moment is not None and moment.tzinfo is not None
