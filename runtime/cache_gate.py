"""Prompt-cache warm-up gate: one leader writes a cold cache prefix, the others wait and read it.

When many requests share a long cacheable prefix (same provider, model, tools and system
text) and the cache is cold, sending them all at once makes each one pay the cache *write*.
The gate lets the first caller through as the **leader**; later callers of the same prefix
wait until the leader's response has started (the provider has then written the cache entry
and it is readable) and go as **followers**, paying the cheap cache *read*.

* Warm prefix (``warm_until`` in the future): pass at once, role ``"warm"``.
* Cold prefix, no leader: become the leader, role ``"leader"``, pass at once.
* Cold prefix with a leader in flight: wait for ``ticket.started()``, role ``"follower"``.
* The leader calls ``ticket.failed()`` (or leaves its ``with`` block by an exception before
  ``started()``): the first waiting follower is promoted to leader; the others keep waiting.
* A follower waits at most ``follower_timeout_s`` (default 120 s), then goes anyway, so a
  leader that hangs or vanishes can never deadlock its followers. A leader that has not
  reported back within that time is presumed lost, and the next caller becomes leader.

``started()`` on any ticket marks the prefix warm until ``now + ttl_s`` (Anthropic refreshes
the cache TTL on every hit, so each use extends it). Callers should pass a ``ttl_s`` a little
under the provider's TTL to stay on the safe side.

Keys are opaque strings; the ProviderActor hashes the cacheable prefix into them.

Not thread-safe; use from one event loop (the ProviderActor's).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

Role = Literal["warm", "leader", "follower"]

_PRUNE_EVERY = 1024


class Ticket:
    """A pass through the gate for one request. Report ``started()`` or ``failed()``."""

    def __init__(self, gate: CacheGate, prefix_key: str, ttl_s: float, role: Role) -> None:
        self.gate = gate
        self.prefix_key = prefix_key
        self.ttl_s = ttl_s
        self.role: Role = role
        self.waited_s = 0.0
        self.timed_out = False
        self.done = False

    def started(self) -> None:
        """The response began: the cache entry is readable; mark the prefix warm."""
        if not self.done:
            self.done = True
            self.gate._on_started(self)

    def failed(self) -> None:
        """The request failed before starting; a leader hands over to one follower."""
        if not self.done:
            self.done = True
            self.gate._on_failed(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.failed()

    def __repr__(self) -> str:
        return f"Ticket(role={self.role!r}, waited_s={self.waited_s:.3f})"


@dataclass
class _Waiter:
    """A follower in the queue; resolved with a leader ticket (promotion) or None (go)."""

    ttl_s: float
    future: asyncio.Future[Ticket | None]


@dataclass
class _Prefix:
    warm_until: float = float("-inf")
    leader: Ticket | None = None
    leader_since: float = 0.0
    waiters: deque[_Waiter] = field(default_factory=deque)


@dataclass
class GateStats:
    """Counters since the gate was created."""

    leaders: int = 0
    followers: int = 0
    warm_hits: int = 0
    waits: int = 0
    promotions: int = 0
    timeouts: int = 0


class CacheGate:
    """Per-prefix warm/cold state and leader election. See the module docstring."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        follower_timeout_s: float = 120.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.follower_timeout_s = follower_timeout_s
        self._prefixes: dict[str, _Prefix] = {}
        self._enters = 0
        self.stats = GateStats()

    def is_warm(self, prefix_key: str) -> bool:
        """True if the prefix is believed cached right now."""
        state = self._prefixes.get(prefix_key)
        return state is not None and state.warm_until > self._clock()

    async def enter(
        self, prefix_key: str, ttl_s: float, *, timeout_s: float | None = None
    ) -> Ticket:
        """Pass the gate for ``prefix_key``; may wait for a leader (see the module docstring)."""
        self._maybe_prune()
        now = self._clock()
        state = self._prefixes.setdefault(prefix_key, _Prefix())
        if state.warm_until > now:
            self.stats.warm_hits += 1
            return Ticket(self, prefix_key, ttl_s, "warm")
        if state.leader is not None and now - state.leader_since > self.follower_timeout_s:
            state.leader = None  # a leader that never reported back is presumed lost
        if state.leader is None:
            return self._make_leader(state, prefix_key, ttl_s)
        return await self._follow(state, prefix_key, ttl_s, timeout_s)

    def _make_leader(self, state: _Prefix, prefix_key: str, ttl_s: float) -> Ticket:
        ticket = Ticket(self, prefix_key, ttl_s, "leader")
        state.leader = ticket
        state.leader_since = self._clock()
        self.stats.leaders += 1
        return ticket

    async def _follow(
        self, state: _Prefix, prefix_key: str, ttl_s: float, timeout_s: float | None
    ) -> Ticket:
        self.stats.waits += 1
        start = self._clock()
        waiter = _Waiter(ttl_s, asyncio.get_running_loop().create_future())
        state.waiters.append(waiter)
        limit = self.follower_timeout_s if timeout_s is None else timeout_s
        try:
            timed_out = not await self._wait(waiter.future, limit)
        finally:
            _discard(state.waiters, waiter)
        ticket = None if timed_out else waiter.future.result()
        if ticket is None:
            ticket = Ticket(self, prefix_key, ttl_s, "follower")
            ticket.timed_out = timed_out
            self.stats.followers += 1
            self.stats.timeouts += timed_out
        ticket.waited_s = self._clock() - start
        return ticket

    async def _wait(self, future: asyncio.Future[Ticket | None], timeout_s: float) -> bool:
        """Wait for the leader's outcome; False if the timeout came first."""
        timer = asyncio.ensure_future(self._sleep(timeout_s))
        try:
            await asyncio.wait({future, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if future.done() and future.result() is not None:
                future.result().failed()  # promoted but cancelled: hand leadership on
            raise
        finally:
            timer.cancel()
            if not future.done():
                future.cancel()  # timed out or cancelled: leave the queue
        return not future.cancelled()

    def _on_started(self, ticket: Ticket) -> None:
        state = self._prefixes.setdefault(ticket.prefix_key, _Prefix())
        state.warm_until = max(state.warm_until, self._clock() + ticket.ttl_s)
        if state.leader is ticket:
            state.leader = None
            while state.waiters:
                _resolve(state.waiters.popleft(), None)

    def _on_failed(self, ticket: Ticket) -> None:
        state = self._prefixes.get(ticket.prefix_key)
        if state is None or state.leader is not ticket:
            return
        state.leader = None
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.future.done():
                self.stats.promotions += 1
                _resolve(waiter, self._make_leader(state, ticket.prefix_key, waiter.ttl_s))
                return

    def _maybe_prune(self) -> None:
        self._enters += 1
        if self._enters % _PRUNE_EVERY:
            return
        now = self._clock()
        idle = [
            key
            for key, state in self._prefixes.items()
            if state.warm_until <= now and state.leader is None and not state.waiters
        ]
        for key in idle:
            del self._prefixes[key]


def _resolve(waiter: _Waiter, leader: Ticket | None) -> None:
    if not waiter.future.done():
        waiter.future.set_result(leader)


def _discard(waiters: deque[_Waiter], waiter: _Waiter) -> None:
    try:
        waiters.remove(waiter)
    except ValueError:
        pass
