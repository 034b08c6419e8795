"""Streamed speech through the real stack: redis-server, gunicorn with
Uvicorn workers (config/asgi.py routes the stream to Django's async
handler), a Dramatiq worker. What only a real server shows: the chunked
response, a client that really disconnects, a Redis restart mid-stream."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from engines.audio.io import decode_audio
from harness.stack import Stack

pytestmark = pytest.mark.integration

# The "slow" double takes 0.3 s per chunk (of up to 300 characters): ten chunks.
LONG_TEXT = " ".join(f"Sentence number {i} of a longer text that streams chunk by chunk." for i in range(40))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("audio-stream"), extra_env={"AUDIO_STREAM_POLL_S": "0.2"}).start()
    yield running
    running.stop()


def _submit(stack: Stack, **payload) -> dict:
    response = requests.post(f"{stack.base_url}/v1/tts", json=payload, headers=stack.headers(), timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def _result(stack: Stack, job_id: str) -> bytes:
    response = requests.get(f"{stack.base_url}/v1/jobs/{job_id}/result", headers=stack.headers(), timeout=30)
    assert response.status_code == 200
    return response.content


def _first_bytes_then_hang_up(stack: Stack, job_id: str) -> bytes:
    """Read the response head and some audio, then close the socket."""
    parts = urlsplit(stack.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        request = f"GET /v1/jobs/{job_id}/audio-stream HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {stack.api_key}\r\n\r\n"
        conn.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 64:
            data = conn.recv(65536)
            assert data, "the server closed the stream"
            received += data
    return received


def test_the_stream_is_chunked_decodes_and_is_the_stored_file(stack, tmp_path):
    job = _submit(stack, text="The real server streams this. It arrives in chunks.", engine="espeak", format="flac", stream=True)
    with requests.get(job["audio_stream_url"], headers=stack.headers(), stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked" and response.headers["Content-Type"] == "audio/flac"
        streamed = b"".join(response.iter_content(chunk_size=None))
    assert stack.wait_terminal(job["id"])["status"] == "succeeded"
    assert streamed == _result(stack, job["id"])
    path = tmp_path / "streamed.flac"
    path.write_bytes(streamed)
    audio, rate = decode_audio(path)
    assert len(audio) / rate > 2.0


@pytest.mark.parametrize("cancel_on_disconnect", [False, True])
def test_a_client_that_hangs_up_cancels_only_when_it_asked(stack, cancel_on_disconnect):
    # Asked to cancel: a job far longer (5 s a chunk) than a loaded machine
    # takes to notice the hang-up, so the cancel surely finds it running.
    engine = "stuck" if cancel_on_disconnect else "slow"
    job = _submit(stack, text=LONG_TEXT, engine=engine, stream=True, cancel_on_disconnect=cancel_on_disconnect, cache=False)
    head = _first_bytes_then_hang_up(stack, job["id"])
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    final = stack.wait_terminal(job["id"])
    assert final["status"] == ("canceled" if cancel_on_disconnect else "succeeded")


def test_a_redis_restart_mid_stream_loses_no_job_and_the_stream_completes_from_storage(stack):
    job = _submit(stack, text=LONG_TEXT, engine="slow", format="mp3", stream=True, cache=False)
    with requests.get(job["audio_stream_url"], headers=stack.headers(), stream=True, timeout=120) as response:
        chunks = response.iter_content(chunk_size=None)
        streamed = next(chunks)
        stack.kill_redis()  # mid-stream: the worker's publishing and the relay's reads both fail
        time.sleep(0.5)
        stack.start_redis()
        streamed += b"".join(chunks)
    final = stack.wait_terminal(job["id"], timeout=120)
    assert final["status"] == "succeeded"
    assert streamed == _result(stack, job["id"])


def test_a_job_that_ends_without_its_audio_cuts_the_body_off(stack):
    """Once audio went out, a job that is canceled (or fails) mid-speech
    cannot answer with an error: the chunked body never gets its last chunk,
    so the client sees a broken transfer, not a short file."""
    job = _submit(stack, text=LONG_TEXT, engine="slow", stream=True, cache=False)
    parts = urlsplit(stack.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as conn:
        request = f"GET /v1/jobs/{job['id']}/audio-stream HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {stack.api_key}\r\n\r\n"
        conn.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 64:
            received += conn.recv(65536)
        canceled = requests.post(f"{stack.base_url}/v1/jobs/{job['id']}/cancel", headers=stack.headers(), timeout=30)
        assert canceled.status_code == 200
        while data := conn.recv(65536):  # the server closes the connection
            received += data
    assert received.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in received.lower()
    assert not received.endswith(b"0\r\n\r\n")  # no terminating chunk
    assert stack.wait_terminal(job["id"])["status"] == "canceled"
