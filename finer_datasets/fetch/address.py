"""The address policy of every image fetch: no request reaches this machine or an internal network.

Image URLs come from third parties (Pixmo-cap lists web URLs), so a URL, or a redirect, may name
``http://169.254.169.254/latest/meta-data/`` (cloud metadata), ``http://localhost:6379/``, a
decimal IP (``http://2130706433/``) or a host whose DNS answer is a private address. The policy
resolves the host, refuses any address that is not a public unicast address, and connects to the
address it checked (never a second lookup that could answer differently):

    loopback      127.0.0.0/8, ::1
    link-local    169.254.0.0/16 (cloud metadata 169.254.169.254), fe80::/10 (fd00:ec2::254 is private)
    private       10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10 (shared), documentation and benchmark nets
    multicast     224.0.0.0/4, ff00::/8
    reserved      240.0.0.0/4, 255.255.255.255 and the IPv6 reserved ranges
    unspecified   0.0.0.0, ::

IPv4-mapped (``::ffff:a.b.c.d``) and NAT64 (``64:ff9b::a.b.c.d``) IPv6 addresses are judged by the
IPv4 address inside; integer host forms (decimal, octal, hex) are judged as the resolver reads
them. A refused URL ends as ``dead`` with the reason ``private_address``: never requested, never
retried (it is checked again on the next run, the policy or the DNS answer may have changed).

:class:`GuardedBackend` does this in the connection layer (an ``httpcore`` network backend: each
new connection, first request and every redirect alike); :func:`guarded_pool` is an httpx
transport on it. ``AddressPolicy(allow_private=True)`` turns the policy off (local mirrors,
tests); ``allow_servers`` lets exactly the listed ``IP:PORT`` servers through (the bundled sample's
local image server).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore
import httpx

__all__ = ["REFUSED", "AddressPolicy", "AddressRefused", "GuardedBackend", "address_kind", "guarded_pool"]

#: the dead-URL reason of a refused address
REFUSED = "private_address"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; not "private" in Python < 3.13


class AddressRefused(httpx.ConnectError):
    """A host that resolves to an address the policy refuses (no connection was made)."""

    reason = REFUSED

    def __init__(self, host: str, address: str, kind: str):
        self.host, self.address, self.kind = host, address, kind
        super().__init__(f"{host} resolves to {address}, a {kind} address (refused; see --allow-private-addresses)")


def address_kind(address: IPAddress) -> str | None:
    """Why ``address`` is refused (``"loopback"``, ``"link-local"``, ...), or None for a public unicast one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(address.packed[-4:])
        if embedded is not None:
            return address_kind(embedded)
    for kind, flag in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                       ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                       ("private", address.is_private or address in _SHARED), ("reserved", address.is_reserved)):
        if flag:
            return kind
    return None if address.is_global else "non-global"


def _server(text: str) -> tuple[IPAddress, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"allow_servers: {text!r} is not IP:PORT")
    return ipaddress.ip_address(host.strip("[]")), int(port)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a fetch may connect to: public unicast ones, plus ``allow_servers``
    (``(address, port)`` pairs), or every address with ``allow_private``."""

    allow_private: bool = False
    allow_servers: frozenset[tuple[IPAddress, int]] = frozenset()

    @classmethod
    def of(cls, *, allow_private: bool = False, allow_servers: Iterable[str] = ()) -> AddressPolicy:
        """The policy from plain values: ``allow_servers`` as ``"127.0.0.1:8080"`` / ``"[::1]:8080"``."""
        return cls(bool(allow_private), frozenset(_server(s) for s in allow_servers))

    def refusal(self, address: str, port: int) -> str | None:
        """The kind of a refused ``address`` (a literal IP) for a connection to ``port``, else None."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if self.allow_private or (ip, port) in self.allow_servers:
            return None
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if mapped is not None and (mapped, port) in self.allow_servers:
            return None
        return address_kind(ip)

    async def resolve(self, host: str, port: int, *, timeout: float | None = None) -> list[str]:
        """Every address ``host`` resolves to, in the resolver's order; :class:`AddressRefused`
        when any of them is refused, ``httpcore.ConnectError`` when it does not resolve."""
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:  # (before OSError, its base class)
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from exc
        except (OSError, UnicodeError) as exc:  # socket.gaierror: no such host
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            kind = self.refusal(address, port)
            if kind is not None:
                raise AddressRefused(host, address, kind)
        return addresses

    async def check_request(self, request: httpx.Request) -> None:
        """An httpx request hook (used when an HTTP proxy resolves the names, so nothing can be
        pinned): refuse a request whose host resolves, here, to a refused address."""
        if self.allow_private:
            return
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            await self.resolve(request.url.host, port)
        except httpcore.ConnectError:  # not resolvable here: only the proxy can tell
            return


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves each host once, checks every address with
    ``policy`` and connects to a checked address (TLS still verifies the original host name)."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if self.policy.allow_private:
            addresses = [host]
        else:
            addresses = await self.policy.resolve(host, port, timeout=timeout)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:  # try the next address
                failure = exc
        raise failure if failure is not None else httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_pool(policy: AddressPolicy, *, verify: ssl.SSLContext | bool = True,
                 max_keepalive: int = 8) -> httpx.AsyncHTTPTransport:
    """An ``httpx.AsyncHTTPTransport`` whose connections go through :class:`GuardedBackend`.

    httpx has no public way to pass a network backend, so the transport's ``httpcore`` pool is
    replaced by one built with it (same settings as httpx's own: HTTP/1.1, no connection cap).
    """
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=max_keepalive)
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):  # pragma: no cover
        raise RuntimeError("this httpx version keeps no httpcore pool in AsyncHTTPTransport._pool; "
                           "the address policy cannot be installed")
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context, max_connections=None, max_keepalive_connections=max_keepalive,
        keepalive_expiry=limits.keepalive_expiry, network_backend=GuardedBackend(policy))
    return transport
