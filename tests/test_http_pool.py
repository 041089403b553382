"""The adapter's own pool: max_connections split over small pools, requests spread round-robin."""

from __future__ import annotations

import httpx2
import pytest

from llm.providers.http_pool import ShardedTransport, pooled_client


def test_pools_add_up_to_max_connections_and_stay_small() -> None:
    transport = ShardedTransport(2048, shard_size=128)
    sizes = [pool._pool._max_connections for pool in transport.pools]
    assert len(sizes) == 16 and set(sizes) == {128}
    assert [p._pool._max_connections for p in ShardedTransport(100).pools] == [100]
    assert [p._pool._max_connections for p in ShardedTransport(300).pools] == [100, 100, 100]
    with pytest.raises(ValueError):
        ShardedTransport(0)


async def test_requests_go_round_robin_and_close_every_pool(monkeypatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    transport = ShardedTransport(4, shard_size=1)
    seen: list[int] = []
    for index, pool in enumerate(transport.pools):

        async def handle(request: httpx2.Request, index: int = index) -> httpx2.Response:
            seen.append(index)
            return httpx2.Response(200, json={"pool": index})

        pool.handle_async_request = handle  # type: ignore[method-assign]
    client = httpx2.AsyncClient(transport=transport)
    answers = [(await client.get("http://emulator.test/")).json()["pool"] for _ in range(6)]
    assert answers == [0, 1, 2, 3, 0, 1] == seen
    await client.aclose()
    assert isinstance(pooled_client(10)._transport, ShardedTransport)


def test_a_proxy_from_the_environment_keeps_the_single_pool_that_honours_it(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    client = pooled_client(300)
    assert not isinstance(client._transport, ShardedTransport)
    assert client._transport._pool._max_connections == 300
    assert any(mount is not None for mount in client._mounts.values())  # the proxy is used
