from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


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
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
        except RecursionError:
            raise ParseError("Malformed JSON: nested too deeply.") from None
        if not isinstance(data, dict):
            raise ParseError("The request body must be a JSON object.")
        return data


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
