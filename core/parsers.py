"""Reading client JSON: request bodies (``LimitedJSONParser``) and JSON text in
form fields (``core.fields.MetadataField``) go through ``json_text_parse``, so
the same text gets the same verdict whatever the content type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

# Deeper JSON is refused. Python's decoder recurses once per level and gives
# out near 1,000 levels (less in a deep call stack); code that walks a parsed
# value recurses too. No request of this API needs more than a few levels.
MAX_JSON_DEPTH = 32


class JsonTooDeep(ValueError):
    """JSON nested deeper than allowed (or than the decoder can recurse)."""


def json_text_parse(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse client JSON. Raises ``ValueError`` (with a message fit for the
    client) for anything that is not strict JSON: bad syntax or UTF-8, a BOM,
    ``NaN``/``Infinity``, and ``JsonTooDeep`` for nesting past ``max_depth``.
    Never ``RecursionError``: a caller cannot turn this into a 500."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels") from None
    if deeper_than(value, max_depth):
        raise JsonTooDeep(f"nested deeper than {max_depth} levels")
    return value


def deeper_than(value: Any, max_depth: int) -> bool:
    """Without recursion: ``{}`` and ``[]`` are one level, a scalar none."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


class LimitedJSONParser(JSONParser):
    """JSON parser that never reads more than ``MAX_JSON_BODY_BYTES`` (also for
    chunked bodies without Content-Length) and requires a JSON object."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.MAX_JSON_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        try:
            data = json_text_parse(raw)
        except ValueError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ParseError("The request body must be a JSON object.")
        return data


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
