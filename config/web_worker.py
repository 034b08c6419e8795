"""The gunicorn worker class of the API (``config/gunicorn.conf.py``):
uvicorn's, with the server's own answers in the API's error shape.

uvicorn answers a request its HTTP parser rejects (a Content-Length together
with Transfer-Encoding, two Content-Lengths, a negative one, a NUL in a
header...) with a ``text/plain`` "Invalid HTTP request received.". Here it
is ``{"error": {"code", "message", "details", "request_id"}}`` like every
other error, with ``X-Request-ID``, and the log line carries the same id and
the parser's reason. (An application crash before the response started,
uvicorn's other plain-text answer, is caught by the ASGI router itself.)

uvicorn's own proxy-header handling is off: forwarded headers are believed
only from ``TRUSTED_PROXIES``, which the ASGI router (``config/asgi.py``)
applies, so the rule lives in the settings with everything else.
"""

from __future__ import annotations

import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from core.responses import raw_error_response

logger = logging.getLogger("mynah.http")


class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request it cannot parse is answered in
    the API's error shape."""

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the parser's reason kept for the client.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.send_malformed_response(str(exc) or type(exc).__name__)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def send_400_response(self, msg: str) -> None:
        self.send_malformed_response(msg)

    def send_malformed_response(self, reason: str) -> None:
        headers, body = raw_error_response(
            400, "malformed_request", "The HTTP request is malformed and was not processed.", {"reason": reason[:200]}
        )
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        logger.warning("malformed HTTP request from %s: %s", peer, reason, extra={"request_id": dict(headers)[b"x-request-id"].decode()})
        lines = [b"HTTP/1.1 400 Bad Request\r\n"]
        lines += [name + b": " + value + b"\r\n" for name, value in [*self.server_state.default_headers, *headers]]
        self.transport.write(b"".join([*lines, b"\r\n", body]))
        self.transport.close()


class MynahUvicornWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": JsonErrorHttpToolsProtocol, "proxy_headers": False}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.cfg.accesslog is None:
            # uvicorn writes an access line per request whenever its logger
            # has a handler, whatever gunicorn's accesslog says: it did, a
            # twentieth of the event loop's time. Off unless ACCESS_LOG=1.
            access = logging.getLogger("uvicorn.access")
            access.handlers = []
            access.propagate = False
