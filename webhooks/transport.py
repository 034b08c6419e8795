"""SSRF-safe HTTP for webhooks.

Targets are checked when a URL is registered (every address its host
resolves to) and again on every send, where the connection itself resolves
the name, drops forbidden addresses and connects only to an allowed one.
That defeats DNS rebinding (whatever the name resolves to at send time, no
connection is made to a forbidden address) and leaves nothing to learn about
private hosts or ports. Redirects are never followed; environment proxies
are not used.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_RESPONSE_EXCERPT_BYTES = 500


class UnsafeTarget(Exception):
    """The URL is not http(s), or its host is (or resolves to) an address
    webhooks may not reach."""


class Unresolvable(UnsafeTarget):
    """The host does not resolve (now): refused at registration, retried at send."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.WEBHOOK_ALLOWED_NETWORKS]


# IPv6 prefixes that carry an IPv4 address a router may translate to: the
# embedded address is judged instead (NAT64 is how IPv6-only clusters reach
# IPv4 receivers, so it cannot simply be refused).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# Deprecated or tunnelling forms with no business being a webhook target.
_REFUSED_V6 = (
    ipaddress.ip_network("::/96"),  # IPv4-compatible
    ipaddress.ip_network("::ffff:0:0:0/96"),  # IPv4-translated
    ipaddress.ip_network("2001::/32"),  # Teredo
    ipaddress.ip_network("fec0::/10"),  # site-local
)


def address_is_forbidden(address: IPAddress) -> bool:
    """Anything but a public unicast address: loopback, private, link-local
    (169.254.169.254 metadata), carrier-grade NAT (100.100.100.200 metadata),
    multicast, reserved, unspecified. IPv6 forms that embed an IPv4 address
    (mapped, 6to4, NAT64) are judged by that address."""
    if any(address in network for network in _allowed_networks()):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in network for network in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_is_forbidden(embedded)
        if any(address in network for network in _REFUSED_V6):
            return True
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
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # (str for IP families)
        if address_is_forbidden(address):
            raise UnsafeTarget(f"The host '{parts.hostname}' resolves to a private or reserved address ({address}).")


def _address(sockaddr: tuple[Any, ...]) -> IPAddress:
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])


def _connect_vetted(connection: HTTPConnection) -> socket.socket:
    """Resolve, drop forbidden addresses, connect only to an allowed one.
    The TLS layer still verifies the certificate against the host name. No
    connection is ever attempted to a forbidden address, so the outcome says
    nothing about private hosts or ports (no scanning through webhooks)."""
    try:
        infos = socket.getaddrinfo(connection.host, connection.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Unresolvable(f"The host '{connection.host}' does not resolve.") from None
    allowed = [info for info in infos if not address_is_forbidden(_address(info[4]))]
    if not allowed:
        raise UnsafeTarget("The host resolves only to private or reserved addresses.")
    timeout = connection.timeout if isinstance(connection.timeout, (int, float)) else settings.WEBHOOK_CONNECT_TIMEOUT_S
    error: Exception | None = None
    for family, kind, proto, _, sockaddr in allowed:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except TimeoutError as exc:
            sock.close()
            error = ConnectTimeoutError(connection, f"Connection to {connection.host} timed out.")
            error.__cause__ = exc
            continue
        except OSError as exc:
            sock.close()
            error = NewConnectionError(connection, f"Failed to establish a new connection: {exc}")
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if address_is_forbidden(_address(sock.getpeername())):  # belt and braces
            sock.close()
            raise UnsafeTarget("The host resolves only to private or reserved addresses.")
        return sock
    assert error is not None
    raise error


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_vetted(self)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_vetted(self)  # then the TLS handshake, with SNI and checks for self.host


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
            "POST",
            url,
            body=body,
            headers=headers,
            redirect=False,
            preload_content=False,
            timeout=urllib3.Timeout(
                connect=settings.WEBHOOK_CONNECT_TIMEOUT_S,
                read=settings.WEBHOOK_READ_TIMEOUT_S,
                # A receiver that drips bytes may not stretch one attempt past its lease.
                total=settings.WEBHOOK_CONNECT_TIMEOUT_S + settings.WEBHOOK_READ_TIMEOUT_S,
            ),
        )
        try:
            status_code = response.status
            excerpt = response.read(_RESPONSE_EXCERPT_BYTES, decode_content=False).decode("utf-8", "replace").replace("\x00", "")
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
