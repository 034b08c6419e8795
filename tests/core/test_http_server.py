"""The edge of the HTTP layer against a real gunicorn with the project's
worker class (harness.stack): chunked bodies, malformed HTTP, forwarded
headers from a client, and the limit on failed authentications per address
across two web processes. Requests are written on raw sockets or with
http.client from chosen loopback addresses (127.0.0.0/8 is all this host)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from harness.stack import Stack

pytestmark = pytest.mark.integration

FAILURE_LIMIT = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("edge"),
        web_workers=2,
        worker_threads=1,
        # A window so long that no failure is refunded during the module.
        extra_env={"AUTH_FAILURE_LIMIT": str(FAILURE_LIMIT), "AUTH_FAILURE_WINDOW_S": "36000", "MAX_JSON_BODY_BYTES": "65536"},
    ).start()
    yield running
    running.stop()


def _raw(stack: Stack, data: bytes, *, source: str = "127.0.0.1") -> bytes:
    """Send ``data`` as is and read until the server closes (or 20 s pass)."""
    with socket.create_connection(("127.0.0.1", stack.web_port), timeout=20, source_address=(source, 0)) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _request(
    stack: Stack, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], dict]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.web_port, timeout=30, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read() or b"{}")
    finally:
        connection.close()


# ------------------------------------------------------------- chunked bodies
def test_a_chunked_json_body_is_read(stack):
    payload = json.dumps({"text": "Sent in chunks, read whole.", "engine": "espeak"}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", stack.web_port, timeout=30)
    try:
        # An iterable body with encode_chunked: Transfer-Encoding: chunked, no Content-Length.
        connection.request(
            "POST",
            "/v1/tts",
            body=iter([payload[:7], payload[7:20], payload[20:]]),
            headers={**stack.headers(), "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 202, body
    assert body["input"]["text"] == "Sent in chunks, read whole."
    assert stack.wait_terminal(body["id"])["status"] == "succeeded"


def test_a_chunked_body_over_the_limit_is_refused_before_it_ends(stack):
    """The client announces a chunk far larger than the JSON limit, sends one
    byte more than the limit and nothing else: the body never ends, so an
    answer at all means the server did not wait for the whole of it."""
    limit = 65536
    head = (
        b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + stack.api_key.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    status, headers, body = _parse(_raw(stack, head + b"%x\r\n" % (10 * limit) + b"x" * (limit + 1)))
    assert status == 413
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and error["details"] == {"limit_bytes": limit}


# ------------------------------------------------------------- malformed HTTP
MALFORMED = {
    "content-length-and-transfer-encoding": b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-content-lengths": b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "negative-content-length": b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
    "nul-in-a-header": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x00b\r\n\r\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello on the plain port
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_http_is_answered_in_the_error_shape(stack, name):
    status, headers, body = _parse(_raw(stack, MALFORMED[name]))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_request"
    assert error["request_id"] == headers["x-request-id"]
    assert error["details"]["reason"]  # what the parser objected to


# ------------------------------------------------------------- forwarded headers
def test_forwarded_headers_from_a_client_are_not_believed(stack):
    """No TRUSTED_PROXIES (the default): a client on this very host cannot
    claim https or another address. The scheme shows in the links the API
    builds (pagination), the address in the failure limit below."""
    for _ in range(2):
        assert stack.submit(text="Two jobs for a next page.", engine="espeak").status_code == 202
    status, _, body = _request(
        stack, "GET", "/v1/jobs?limit=1", headers={**stack.headers(), "X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.1"}
    )
    assert status == 200
    assert body["next"].startswith(f"http://127.0.0.1:{stack.web_port}/v1/jobs?")


# ------------------------------------------------------------- failed authentications
def test_failed_authentications_are_limited_per_address_across_processes(stack):
    """Concurrent bad keys from one address over two web processes: exactly
    the limit is answered 401, the rest 429 with Retry-After, although each
    request claims another X-Forwarded-For. The address is then refused
    even with a good key; another address is not."""
    attacker, neighbour = "127.0.0.3", "127.0.0.4"
    results: list[tuple[int, dict[str, str], dict]] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def guess(index: int) -> None:
        headers = {"Authorization": f"Bearer guess{index:04d}.secret-{index}", "X-Forwarded-For": f"192.0.2.{index + 1}"}
        start.wait()
        result = _request(stack, "GET", "/v1/usage", headers=headers, source=attacker)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=guess, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [401] * FAILURE_LIMIT + [429] * (16 - FAILURE_LIMIT)
    for status, headers, body in results:
        if status == 429:
            assert body["error"]["code"] == "rate_limited"
            assert body["error"]["details"]["limit"] == "authentication_failures"
            assert int(headers["retry-after"]) >= 1

    # Blocked: a good key from the same address is refused before any lookup.
    status, headers, body = _request(stack, "GET", "/v1/usage", headers=stack.headers(), source=attacker)
    assert status == 429 and int(headers["retry-after"]) >= 1
    # Another address is untouched: its good key works, a bad one is a 401.
    assert _request(stack, "GET", "/v1/usage", headers=stack.headers(), source=neighbour)[0] == 200
    assert _request(stack, "GET", "/v1/usage", headers={"Authorization": "Bearer nope.nope"}, source=neighbour)[0] == 401
