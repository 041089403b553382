"""Cache-aware ordering of batch rows: one leader per cacheable prefix goes first.

Rows that share a cacheable prefix (the cache gate's key, :func:`prefix_key`: same
provider, model, tools and system text, with ``enable_caching``) should not all hit a cold prompt cache at once: each would pay the cache
write. Within the job's read-ahead window the scheduler therefore releases

1. the first row of each new prefix group (its *leader*) before anything else;
2. rows without a cacheable prefix, and rows of a warm prefix, in input order;
3. the *followers* of a prefix once its leader has finished (the cache is warm), or once
   ``hold_s`` has passed since the leader started (the provider actors gate followers at
   the leader's first byte anyway; this only avoids flooding a cold prefix).

If a leader fails, the next follower becomes the leader. A prefix stays warm for
``warm_s`` after its last finished row (the provider cache's TTL), then is cold again.
The scheduler holds only rows of the window; it never sends anything itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from jobs.batch_input import DEFAULT_MODEL, RowRequest
from llm.exceptions import LLMError
from runtime import cache_keys

#: How often (in released rows) expired warm prefixes are forgotten.
_SWEEP_EVERY = 256


def prefix_key(
    row: RowRequest, *, caching_default: bool = False, default_model: str = DEFAULT_MODEL
) -> str | None:
    """The row's cacheable-prefix key, or None if it cannot hit a prompt cache.

    The cache gate's own key (:func:`runtime.cache_keys.prefix_key`) of the row's prepared
    request, when the gate would gate it (:func:`runtime.cache_keys.is_gated`): rows the
    scheduler groups are exactly the calls that share a gate. An invalid row has none.
    """
    try:
        request = row.request(default_model=default_model, caching_default=caching_default)
    except LLMError:
        return None
    return cache_keys.prefix_key(request) if cache_keys.is_gated(request) else None


@dataclass
class _Prefix:
    state: str  # "pending" (leader chosen, not started), "leading", "warm"
    leader: RowRequest | None = None
    deadline: float = 0.0
    warm_until: float = 0.0
    held: deque[RowRequest] = field(default_factory=deque)


class CacheAwareScheduler:
    """Orders the rows of the read-ahead window; see the module docstring."""

    def __init__(
        self,
        *,
        hold_s: float = 10.0,
        warm_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hold_s = hold_s
        self.warm_s = warm_s
        self._clock = clock
        self._leaders: deque[RowRequest] = deque()
        self._ready: deque[RowRequest] = deque()
        self._prefixes: dict[str, _Prefix] = {}
        self._leading: dict[str, _Prefix] = {}
        self._released = 0
        self._keys: dict[int, str] = {}  # id(row) -> prefix key, for rows in the window
        self._size = 0

    def __len__(self) -> int:
        """Rows in the window, not yet released."""
        return self._size

    def add(self, row: RowRequest, key: str | None) -> None:
        """Put one row into the window under its prefix key (None: no cacheable prefix)."""
        self._size += 1
        if key is None:
            self._ready.append(row)
            return
        self._keys[id(row)] = key
        prefix = self._prefixes.get(key)
        if prefix is not None and prefix.state == "warm" and prefix.warm_until <= self._clock():
            prefix = None
        if prefix is None:
            self._prefixes[key] = _Prefix(state="pending", leader=row)
            self._leaders.append(row)
        elif prefix.state == "warm":
            self._ready.append(row)
        else:
            prefix.held.append(row)

    def next_ready(self) -> RowRequest | None:
        """The next row to send (a new leader first), or None if every row is held."""
        self._release_expired()
        if self._leaders:
            row = self._leaders.popleft()
            key = self._keys[id(row)]
            prefix = self._prefixes[key]
            prefix.state, prefix.deadline = "leading", self._clock() + self.hold_s
            self._leading[key] = prefix
        elif self._ready:
            row = self._ready.popleft()
        else:
            return None
        self._size -= 1
        self._released += 1
        if self._released % _SWEEP_EVERY == 0:
            self._forget_cold()
        return row

    def finished(self, row: RowRequest, ok: bool) -> None:
        """Report that a released row finished (``ok``: it got an answer)."""
        key = self._keys.pop(id(row), None)
        prefix = self._prefixes.get(key) if key is not None else None
        if prefix is None:
            return
        now = self._clock()
        if prefix.leader is row and prefix.state == "leading" and not ok:
            self._promote(key, prefix)
            return
        if prefix.leader is row or prefix.state == "warm":
            self._warm(key, prefix, now)

    def next_deadline(self) -> float | None:
        """Clock time at which a held follower group is released, if any is waiting."""
        times = [p.deadline for p in self._leading.values() if p.held]
        return min(times) if times else None

    def release_all(self) -> None:
        """Release every held follower (used when nothing else can make progress)."""
        for key, prefix in list(self._leading.items()):
            if prefix.held:
                self._warm(key, prefix, self._clock())

    def drain(self) -> int:
        """Drop every row still in the window; returns how many there were."""
        count = self._size
        self._leaders.clear()
        self._ready.clear()
        for prefix in self._prefixes.values():
            prefix.held.clear()
        self._size = 0
        return count

    # ------------------------------------------------------------------ internals

    def _warm(self, key: str, prefix: _Prefix, now: float) -> None:
        self._leading.pop(key, None)
        prefix.state, prefix.leader = "warm", None
        prefix.warm_until = now + self.warm_s
        self._ready.extendleft(reversed(prefix.held))
        prefix.held.clear()

    def _promote(self, key: str, prefix: _Prefix) -> None:
        self._leading.pop(key, None)
        if not prefix.held:
            del self._prefixes[key]
            return
        prefix.state, prefix.leader = "pending", prefix.held.popleft()
        self._leaders.appendleft(prefix.leader)

    def _release_expired(self) -> None:
        now = self._clock()
        for key, prefix in list(self._leading.items()):
            if prefix.held and prefix.deadline <= now:
                self._warm(key, prefix, now)

    def _forget_cold(self) -> None:
        now = self._clock()
        for key, prefix in list(self._prefixes.items()):
            if prefix.state == "warm" and prefix.warm_until <= now:
                del self._prefixes[key]
