"""Tests for runtime.cache_gate: one leader per cold prefix, followers after started()."""

from __future__ import annotations

import asyncio

import pytest

from runtime.cache_gate import CacheGate


class ManualTime:
    """A clock plus a sleep that only returns when the test fires the timers."""

    def __init__(self):
        self.now = 0.0
        self.timers: list[tuple[float, asyncio.Future]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.timers.append((self.now + delay, future))
        await future

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in self.timers:
            if deadline <= self.now and not future.done():
                future.set_result(None)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def make_gate(timeout: float = 120.0) -> tuple[CacheGate, ManualTime]:
    clock = ManualTime()
    return CacheGate(clock=clock, sleep=clock.sleep, follower_timeout_s=timeout), clock


async def test_cold_key_has_exactly_one_leader_and_followers_wait_for_start():
    gate, _ = make_gate()
    tasks = [asyncio.create_task(gate.enter("k", 300.0)) for _ in range(10)]
    await settle()
    done = [t for t in tasks if t.done()]
    assert len(done) == 1
    leader = done[0].result()
    assert leader.role == "leader"
    assert gate.stats.waits == 9

    leader.started()
    tickets = await asyncio.gather(*tasks)
    assert sorted(t.role for t in tickets) == ["follower"] * 9 + ["leader"]
    assert (gate.stats.leaders, gate.stats.followers) == (1, 9)


async def test_warm_prefix_passes_immediately_until_ttl_expires():
    gate, clock = make_gate()
    leader = await gate.enter("k", 300.0)
    leader.started()
    clock.advance(299.0)
    warm = await gate.enter("k", 300.0)
    assert warm.role == "warm"
    assert gate.stats.warm_hits == 1
    clock.advance(2.0)  # 301 s after the start: expired
    again = await gate.enter("k", 300.0)
    assert again.role == "leader"


async def test_each_use_refreshes_warm_until():
    gate, clock = make_gate()
    (await gate.enter("k", 300.0)).started()
    clock.advance(200.0)
    (await gate.enter("k", 300.0)).started()  # a cache hit refreshes the TTL
    clock.advance(200.0)  # 400 s after the first write, 200 s after the hit
    assert (await gate.enter("k", 300.0)).role == "warm"


async def test_leader_failure_promotes_exactly_one_follower():
    gate, _ = make_gate()
    leader = await gate.enter("k", 300.0)
    waiting = [asyncio.create_task(gate.enter("k", 300.0)) for _ in range(3)]
    await settle()
    leader.failed()
    await settle()
    done = [t for t in waiting if t.done()]
    assert len(done) == 1
    promoted = done[0].result()
    assert promoted.role == "leader"
    assert gate.stats.promotions == 1

    promoted.started()
    rest = await asyncio.gather(*[t for t in waiting if t is not done[0]])
    assert [t.role for t in rest] == ["follower", "follower"]


async def test_leader_exception_in_with_block_counts_as_failure():
    gate, _ = make_gate()
    leader = await gate.enter("k", 300.0)
    follower = asyncio.create_task(gate.enter("k", 300.0))
    await settle()
    with pytest.raises(RuntimeError), leader:
        raise RuntimeError("boom")
    assert (await follower).role == "leader"


async def test_follower_times_out_and_proceeds():
    gate, clock = make_gate(timeout=120.0)
    await gate.enter("k", 300.0)  # a leader that never reports back
    follower = asyncio.create_task(gate.enter("k", 300.0))
    await settle()
    clock.advance(119.0)
    await settle()
    assert not follower.done()
    clock.advance(1.0)
    ticket = await follower
    assert ticket.role == "follower"
    assert ticket.timed_out
    assert ticket.waited_s == pytest.approx(120.0)
    assert gate.stats.timeouts == 1


async def test_lost_leader_is_replaced_after_the_timeout():
    gate, clock = make_gate(timeout=120.0)
    await gate.enter("k", 300.0)
    clock.advance(121.0)
    assert (await gate.enter("k", 300.0)).role == "leader"


async def test_cancelled_follower_leaves_the_queue():
    gate, _ = make_gate()
    leader = await gate.enter("k", 300.0)
    doomed = asyncio.create_task(gate.enter("k", 300.0))
    survivor = asyncio.create_task(gate.enter("k", 300.0))
    await settle()
    doomed.cancel()
    await settle()
    leader.failed()  # promotion must skip the cancelled follower
    assert (await survivor).role == "leader"


async def test_keys_are_independent():
    gate, _ = make_gate()
    a = await gate.enter("a", 300.0)
    b = await gate.enter("b", 300.0)
    assert (a.role, b.role) == ("leader", "leader")
    a.started()
    assert gate.is_warm("a")
    assert not gate.is_warm("b")


async def test_follower_started_does_not_disturb_the_next_leader():
    gate, clock = make_gate()
    leader = await gate.enter("k", 10.0)
    follower_task = asyncio.create_task(gate.enter("k", 10.0))
    await settle()
    leader.started()
    follower = await follower_task
    clock.advance(11.0)
    new_leader = await gate.enter("k", 10.0)
    assert new_leader.role == "leader"
    follower.failed()  # a stale follower's outcome must not clear the new leader
    waiting = asyncio.create_task(gate.enter("k", 10.0))
    await settle()
    assert not waiting.done()
    new_leader.started()
    assert (await waiting).role == "follower"
