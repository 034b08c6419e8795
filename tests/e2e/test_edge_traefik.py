"""The shipped Traefik edge (platform/traefik/dynamic/middlewares.yml and the
routes runplatform writes, core/traefik.py) in front of a real gunicorn
that trusts it (TRUSTED_PROXIES=127.0.0.1/32, as `make cluster` sets):

- the address the app sees is the client's, not the proxy's and not what a
  client writes in X-Forwarded-For: the failed-authentication limit blocks
  the guessing address while another client's key still works;
- chunked bodies pass through and are read;
- Traefik's own 502 is answered in the API's error shape;
- what remains: malformed HTTP that Traefik refuses before routing gets its
  plain 400 (no middleware runs for it), and never reaches the app.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.redis_server import free_port
from core.traefik import traefik_argv, write_dynamic_config
from harness.stack import Stack
from harness.traefik import http_status

pytestmark = pytest.mark.integration

FAILURE_LIMIT = 4


@dataclass
class Edge:
    stack: Stack
    port: int
    log_dir: Path

    def request(self, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None, source: str = "127.0.0.1"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(source, 0))
        try:
            connection.request(method, path, body=body, headers=headers, encode_chunked=body is not None and not isinstance(body, bytes))
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Iterator[Edge]:
    workdir = tmp_path_factory.mktemp("edge-traefik")
    stack = Stack(
        workdir,
        worker_threads=1,
        extra_env={"TRUSTED_PROXIES": "127.0.0.1/32", "AUTH_FAILURE_LIMIT": str(FAILURE_LIMIT), "AUTH_FAILURE_WINDOW_S": "36000"},
    ).start()
    dynamic = workdir / "dynamic"
    write_dynamic_config(dynamic, [stack.base_url], health_interval_s=0.5)
    # A test-only route to a port nobody listens on, behind the shipped error
    # page: Traefik's own 502.
    broken = {
        "http": {
            "routers": {
                "broken": {
                    "rule": "PathPrefix(`/broken`)",
                    "priority": 1000,
                    "entryPoints": ["web"],
                    "service": "broken",
                    "middlewares": ["mynah-edge-errors"],
                }
            },
            "services": {"broken": {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{free_port()}"}]}}},
        }
    }
    (dynamic / "broken.yml").write_text(json.dumps(broken))
    port, ping_port = free_port(), free_port()
    process = subprocess.Popen(
        traefik_argv(host="127.0.0.1", port=port, ping_port=ping_port, dynamic_dir=dynamic, log_dir=workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while http_status(f"http://127.0.0.1:{port}/healthz") != 200 or http_status(f"http://127.0.0.1:{port}/broken") is None:
            assert process.poll() is None and time.monotonic() < deadline, (workdir / "traefik.log").read_text()
            time.sleep(0.1)
        yield Edge(stack=stack, port=port, log_dir=workdir)
    finally:
        process.terminate()
        process.wait(timeout=10)
        stack.stop()


def test_the_app_sees_each_client_through_the_proxy_and_no_forged_address(edge):
    """Bad keys from 127.0.0.7, each claiming another X-Forwarded-For: the
    limit blocks that client (Traefik replaced the forged header with the
    real address, which the app believes from Traefik only). A client at
    127.0.0.8 behind the same proxy is not blocked with it."""
    statuses = []
    for n in range(FAILURE_LIMIT + 3):
        status, headers, body = edge.request(
            "GET",
            "/v1/usage",
            headers={"Authorization": f"Bearer guess{n}.secret", "X-Forwarded-For": f"192.0.2.{n + 1}"},
            source="127.0.0.7",
        )
        statuses.append(status)
    assert statuses == [401] * FAILURE_LIMIT + [429] * 3
    assert json.loads(body)["error"]["code"] == "rate_limited" and int(headers["retry-after"]) >= 1
    assert edge.request("GET", "/v1/usage", headers=edge.stack.headers(), source="127.0.0.7")[0] == 429
    assert edge.request("GET", "/v1/usage", headers=edge.stack.headers(), source="127.0.0.8")[0] == 200


def test_the_scheme_is_the_proxys_not_the_clients(edge):
    """Traefik sets X-Forwarded-Proto from its own entry point (http here),
    whatever the client sent; the links the API builds follow it."""
    for _ in range(2):
        assert edge.stack.submit(text="Two jobs for a next page.", engine="espeak").status_code == 202
    status, _, body = edge.request("GET", "/v1/jobs?limit=1", headers={**edge.stack.headers(), "X-Forwarded-Proto": "https"})
    assert status == 200
    assert json.loads(body)["next"].startswith("http://")


def test_a_chunked_body_passes_through_the_proxy(edge):
    payload = json.dumps({"text": "Chunked through the edge.", "engine": "espeak"}).encode()
    status, _, body = edge.request(
        "POST", "/v1/tts", headers={**edge.stack.headers(), "Content-Type": "application/json"}, body=iter([payload[:9], payload[9:]])
    )
    assert status == 202, body
    assert json.loads(body)["input"]["text"] == "Chunked through the edge."


def test_the_proxys_own_502_is_in_the_error_shape(edge):
    status, headers, body = edge.request("GET", "/broken/anything", headers={})
    assert status == 502
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "bad_gateway" and error["request_id"] == headers["x-request-id"]
    assert headers["retry-after"] == "1"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /v1/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x00b\r\n\r\n",
    ],
    ids=["two-content-lengths", "negative-content-length", "nul-in-a-header"],
)
def test_what_remains_malformed_http_refused_by_the_proxy(edge, request_bytes):
    """Documented in the README (Security): Traefik's HTTP server refuses
    these before any router or middleware runs, with its own plain-text 400
    and a closed connection; the app never sees them."""
    with socket.create_connection(("127.0.0.1", edge.port), timeout=20) as sock:
        sock.sendall(request_bytes)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 400")
    assert "connection: close" in head
