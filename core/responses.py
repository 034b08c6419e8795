from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from django.http import JsonResponse, StreamingHttpResponse

from core.context import request_id_var


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}, "request_id": request_id_var.get()}}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def raw_error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of an error answered outside Django (the ASGI router
    before the body is read, the HTTP server for a request it cannot
    parse), in the same shape, with a fresh request id. The connection is
    closed after it."""
    request_id = uuid.uuid4().hex
    body = json.dumps({"error": {"code": code, "message": message, "details": details or {}, "request_id": request_id}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"connection", b"close"),
    ]
    return headers, body


def iso(value: Any) -> str | None:
    """A datetime as ISO 8601 with ``Z`` (what every API body uses)."""
    return value.isoformat().replace("+00:00", "Z") if value else None


class ClosingStreamingHttpResponse(StreamingHttpResponse):
    """A streaming response whose async iterator is closed when the response
    ends, however it ends. Django's ASGI handler closes the iterator it
    consumes, but that is a wrapper around the view's: when a client hung up
    (the serving task is cancelled between two chunks) the view's generator
    stayed suspended at its ``yield`` until garbage collection, so its
    cleanup (``cancel_on_disconnect``, its Redis connection) ran late or
    never. Here it runs at once."""

    def __init__(self, streaming_content: Any = (), *args: Any, **kwargs: Any) -> None:
        super().__init__(streaming_content, *args, **kwargs)
        self._source = streaming_content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parts = cast(AsyncGenerator[bytes, None], super().__aiter__())
        try:
            async for part in parts:
                yield part
        finally:
            await parts.aclose()
            close = getattr(self._source, "aclose", None)
            if close is not None:
                await close()
