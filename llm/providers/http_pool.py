"""The connection pool an adapter owns: one httpx2 client over a few smaller pools.

httpcore's pool walks all of its connections and waiting requests each time a request
starts or ends, so its cost per call grows with the calls in flight: with 800 in flight a
provider actor at 10,000 RPM spent about a sixth of its CPU in that walk (py-spy,
2026-11-27). :class:`ShardedTransport` spreads requests round-robin over pools of at most
:data:`SHARD_SIZE` connections each, so each walk stays short, while the total stays
``max_connections`` (``LLM_MAX_CONNECTIONS``). The SDKs see one ``httpx2.AsyncClient``.
With a proxy set in the environment the client keeps one pool (see :func:`pooled_client`).
"""

from __future__ import annotations

import itertools
import math

import httpx2
from httpx2._utils import get_environment_proxies

#: Connections per pool; a pool this size is cheap to walk.
SHARD_SIZE = 128


class ShardedTransport(httpx2.AsyncBaseTransport):
    """``max_connections`` split over ``ceil(max_connections / shard_size)`` pools."""

    def __init__(self, max_connections: int, *, shard_size: int = SHARD_SIZE) -> None:
        if max_connections < 1 or shard_size < 1:
            raise ValueError("max_connections and shard_size must be at least 1")
        count = math.ceil(max_connections / shard_size)
        per_pool = math.ceil(max_connections / count)
        limits = httpx2.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        self.pools = [httpx2.AsyncHTTPTransport(limits=limits) for _ in range(count)]
        self._next = itertools.cycle(range(count))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.pools[next(self._next)].handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


def pooled_client(max_connections: int) -> httpx2.AsyncClient:
    """The client an adapter builds when none is given: sharded pools, a 600 s timeout.

    httpx2 applies proxies from the environment (``HTTPS_PROXY`` and the like) only to the
    transport it builds itself, so with a proxy configured the client keeps its own single
    pool of ``max_connections``, as before sharding, rather than silently bypass the proxy.
    """
    timeout = httpx2.Timeout(600.0, connect=10.0)
    if get_environment_proxies():
        limits = httpx2.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        return httpx2.AsyncClient(limits=limits, timeout=timeout)
    return httpx2.AsyncClient(transport=ShardedTransport(max_connections), timeout=timeout)
