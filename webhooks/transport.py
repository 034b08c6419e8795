"""SSRF-safe HTTP for webhooks.

Targets are checked twice: when a URL is registered (every address its host
resolves to), and on every send, against the address the socket actually
connected to. The second check is what defeats DNS rebinding: whatever a name
resolves to at send time, no byte is sent to a forbidden address. Redirects
are never followed, and proxies from the environment are not used.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_RESPONSE_EXCERPT_BYTES = 500


class UnsafeTarget(Exception):
    """The URL is not http(s), or its host is (or resolves to) an address
    webhooks may not reach."""


class Unresolvable(UnsafeTarget):
    """The host does not resolve (now): refused at registration, retried at send."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.WEBHOOK_ALLOWED_NETWORKS]


def address_is_forbidden(address: IPAddress) -> bool:
    """Anything but a public unicast address: loopback, private, link-local
    (169.254.169.254 metadata), carrier-grade NAT (100.100.100.200 metadata),
    multicast, reserved, unspecified; IPv4-mapped IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in network for network in _allowed_networks()):
        return False
    return address.is_multicast or not address.is_global


def url_check(url: str) -> None:
    """Raise UnsafeTarget unless every address of the URL's host is allowed."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeTarget("Webhook URLs must be absolute http:// or https:// URLs.")
    if parts.username or parts.password:
        raise UnsafeTarget("Webhook URLs may not contain credentials.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeTarget("The URL's port is invalid.") from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Unresolvable(f"The host '{parts.hostname}' does not resolve.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address_is_forbidden(address):
            raise UnsafeTarget(f"The host '{parts.hostname}' resolves to a private or reserved address ({address}).")


def _check_peer(sock: socket.socket) -> None:
    peer = ipaddress.ip_address(sock.getpeername()[0].split("%", 1)[0])
    if address_is_forbidden(peer):
        sock.close()
        raise UnsafeTarget(f"Refusing to send to a private or reserved address ({peer}).")


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock)  # before the TLS handshake: nothing is sent
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def _pool_manager() -> urllib3.PoolManager:
    manager = urllib3.PoolManager(num_pools=50, maxsize=4, retries=False)
    manager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return manager


_manager = _pool_manager()


@dataclass(frozen=True)
class SendOutcome:
    status_code: int | None
    latency_ms: int
    error: str
    response_excerpt: str
    refused: bool = False  # the target is forbidden: retrying cannot help

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(*, url: str, body: bytes, headers: dict[str, str]) -> SendOutcome:
    """POST once. Never raises for network trouble: the outcome says what happened."""
    started = time.monotonic()
    status_code, error, excerpt, refused = None, "", "", False
    try:
        url_check(url)
        response = _manager.request(
            "POST", url, body=body, headers=headers, redirect=False, preload_content=False,
            timeout=urllib3.Timeout(connect=settings.WEBHOOK_CONNECT_TIMEOUT_S, read=settings.WEBHOOK_READ_TIMEOUT_S),
        )
        try:
            status_code = response.status
            excerpt = response.read(_RESPONSE_EXCERPT_BYTES, decode_content=False).decode("utf-8", "replace")
            if 300 <= status_code < 400:
                error = "Redirects are not followed; configure the final URL."
        finally:
            response.release_conn()
    except Unresolvable as exc:
        error = str(exc)
    except UnsafeTarget as exc:
        error, refused = str(exc), True
    except urllib3.exceptions.HTTPError as exc:
        error = _describe(exc)
        refused = isinstance(getattr(exc, "reason", None), UnsafeTarget)
    latency_ms = int((time.monotonic() - started) * 1000)
    return SendOutcome(status_code=status_code, latency_ms=latency_ms, error=error[:500], response_excerpt=excerpt, refused=refused)


def _describe(exc: Exception) -> str:
    if isinstance(exc, (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError)):
        return "Timed out."
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "Could not connect."
    reason = getattr(exc, "reason", None)
    if isinstance(reason, UnsafeTarget):
        return str(reason)
    return f"{type(exc).__name__}: {exc}"[:500]
