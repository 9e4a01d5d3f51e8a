"""The default transport: hosts spread over several small httpx connection pools.

httpcore 1.0's connection pool does bookkeeping proportional to (connections x requests in the
pool) every time a request starts or ends (encode/httpcore PR #1035; fixed only in the httpx2
fork). With one pool of 64 busy connections that bookkeeping takes most of the client's CPU and
caps a client at ~100 requests/s on one core, whatever the network does. Giving each group of
hosts its own pool keeps every pool small; the global and per-host limits of ``fetch_images`` are
enforced above the transport, so they do not change.

``fetch_images`` uses it unless proxies are configured in the environment (``HTTP_PROXY`` and
friends): httpx applies those, with ``NO_PROXY``, only to a client without a custom transport.
Every pool connects through the address policy (:mod:`finer_datasets.fetch.address`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from finer_datasets.fetch.address import AddressPolicy, guarded_pool

__all__ = ["ShardedTransport", "default_transport"]


class ShardedTransport(httpx.AsyncBaseTransport):
    """Send each request to one of ``shards`` by a stable hash of its host (a host keeps its pool)."""

    def __init__(self, shards: list[httpx.AsyncBaseTransport], *, policy: AddressPolicy | None = None):
        if not shards:
            raise ValueError("ShardedTransport needs at least one shard")
        self.shards = shards
        self.policy = policy  # the address policy its pools enforce (None: not known)

    def shard_for(self, host: str) -> httpx.AsyncBaseTransport:
        return self.shards[zlib.crc32(host.encode("utf-8", "surrogatepass")) % len(self.shards)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.shard_for(request.url.host).handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


def default_transport(concurrency: int, *, per_shard: int = 8,
                      wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
                      policy: AddressPolicy | None = None) -> ShardedTransport:
    """``ceil(concurrency / per_shard)`` pools, each keeping at most ``per_shard`` idle connections.

    Pools have no connection cap of their own (``fetch_images`` bounds requests in flight), so an
    unlucky hash never queues a request behind a full pool. Each pool connects only where
    ``policy`` allows (default ``AddressPolicy()``: public addresses only), whatever a ``wrap``
    does to the request before it (tests use
    :class:`~finer_datasets.testing.image_server.LoopbackTransport`, with a policy that allows
    loopback).
    """
    policy = policy if policy is not None else AddressPolicy()
    shards: list[httpx.AsyncBaseTransport] = []
    make_context = getattr(httpx, "create_ssl_context", None)  # public from httpx 0.28
    verify: Any = make_context() if make_context is not None else True  # one CA bundle load, not one per pool
    for _ in range(max(1, math.ceil(concurrency / per_shard))):
        pool: httpx.AsyncBaseTransport = guarded_pool(policy, verify=verify, max_keepalive=per_shard)
        shards.append(wrap(pool) if wrap is not None else pool)
    return ShardedTransport(shards, policy=policy)
