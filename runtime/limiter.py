"""Client-side rate limiting for one provider account: continuously refilled token buckets.

One :class:`RateLimiter` holds up to four buckets, one per configured limit:

* ``rpm``  requests per minute (each request costs 1);
* ``itpm`` input tokens per minute;
* ``otpm`` output tokens per minute;
* ``tpm``  input + output tokens per minute (OpenAI's single token limit).

A bucket holds at most its per-minute limit and refills at ``limit / 60`` per second.
:meth:`RateLimiter.reserve` waits until one request plus the estimated tokens fit in every
bucket, then debits them. Callers are admitted strictly first in, first out: the head of the
queue waits for room while everyone behind it waits for the head, so a large request is never
starved by a stream of small ones.

A request larger than a bucket's capacity could never fit; it is admitted as soon as that
bucket is full and drives its level negative, so later requests repay the excess and the
long-run rate still holds.

After the call, :meth:`RateLimiter.settle` replaces the estimate with the real usage
(refunding or debiting the difference). With ``cache_reads_count=False`` (Anthropic, whose
ITPM does not count cache reads on most models) the cached part of the input is refunded.

Provider headers (:meth:`RateLimiter.observe`) can only lower a bucket, never raise it: an
answer's ``remaining`` was computed when the provider handled that one request, while other
requests of ours were in flight, so it is stale; the provider saying fewer remain than we
think is a sure sign our accounting is optimistic, but it saying more could just be the
snapshot predating our latest admissions. A provider ``limit`` below our capacity is adopted
(the configured limit was too high); an unconfigured limit reported by the provider is
learned from the headers.

:meth:`RateLimiter.penalize` after a 429 stops all admissions until ``now + retry_after`` and
empties the buckets (the provider just said the account has no room).

Calibration. A new limiter does not know how much of the account's budget other clients have
already spent, so with configured limits it starts with one probe request: the next callers
wait until the probe is settled or its rate-limit headers are observed (or ``probe_timeout_s``
passes), which corrects the buckets to what the provider says remains before a burst goes
out. Without that, a fresh process facing an account already at its limit sends a whole
bucket's worth of requests into 429s.

Why not ``aiolimiter``: its ``AsyncLimiter`` reads the event loop's clock and has a single
bucket with a fixed capacity, so it can take neither an injected clock (needed for
deterministic tests) nor negative levels, refunds or header corrections.

Not thread-safe; use from one event loop (the ProviderActor's).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llm.providers.base import RateLimitSnapshot
from llm.types import Usage

BUCKETS = ("rpm", "itpm", "otpm", "tpm")

#: Waits shorter than this count as zero, so float rounding can never leave a caller
#: sleeping ever-smaller slices that no longer move the clock.
_EPSILON_S = 1e-9


class AccountLimits(BaseModel):
    """Per-minute limits of one provider account; None means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpm: int | None = Field(None, gt=0)
    itpm: int | None = Field(None, gt=0)
    otpm: int | None = Field(None, gt=0)
    #: A combined input+output token limit (OpenAI's TPM).
    tpm: int | None = Field(None, gt=0)
    #: Whether tokens read from the prompt cache count against ``itpm``/``tpm``.
    cache_reads_count: bool = True


@dataclass(slots=True)
class Reservation:
    """What :meth:`RateLimiter.reserve` debited for one request."""

    id: int
    input_tokens: int
    output_tokens: int
    admitted_at: float
    waited_s: float
    settled: bool = False


class _Bucket:
    """A continuously refilled bucket; the level may go negative (debt)."""

    __slots__ = ("capacity", "level", "updated")

    def __init__(self, capacity: float, now: float, level: float | None = None) -> None:
        self.capacity = float(capacity)
        self.level = self.capacity if level is None else float(level)
        self.updated = now

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` fits (an oversized amount waits for a full bucket)."""
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def debit(self, amount: float) -> None:
        self.level = min(self.capacity, self.level - amount)


class RateLimiter:
    """FIFO admission against the account's buckets. See the module docstring."""

    def __init__(
        self,
        limits: AccountLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        poll_interval_s: float = 1.0,
        probe_timeout_s: float = 30.0,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._poll = poll_interval_s
        now = clock()
        self._buckets: dict[str, _Bucket] = {
            name: _Bucket(getattr(limits, name), now)
            for name in BUCKETS
            if getattr(limits, name) is not None
        }
        self._blocked_until = now
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.waiting = 0
        # Calibration probe: only when limits are configured (otherwise nothing to protect).
        self._calibrated = not self._buckets
        self._probe_started: float | None = None
        self._probe_timeout = probe_timeout_s

    # --- admission ----------------------------------------------------------------------

    async def reserve(self, input_tokens: int, output_tokens: int) -> Reservation:
        """Wait until 1 request and the estimated tokens fit, then debit them."""
        start = self._clock()
        self.waiting += 1
        try:
            async with self._lock:
                while self._probe_in_flight():
                    await self._sleep(min(self._poll, 0.05) if self._poll > 0 else 0.05)
                while (wait := self._wait_time(input_tokens, output_tokens)) > _EPSILON_S:
                    # Sleep in slices so refunds and corrections made meanwhile are seen.
                    await self._sleep(min(wait, self._poll) if self._poll > 0 else wait)
                now = self._clock()
                self._debit({"rpm": 1, **self._token_costs(input_tokens, output_tokens)})
                if not self._calibrated and self._probe_started is None:
                    self._probe_started = now
        finally:
            self.waiting -= 1
        return Reservation(next(self._ids), input_tokens, output_tokens, now, now - start)

    def _probe_in_flight(self) -> bool:
        """True while the first (probe) request is out and its answer not yet seen."""
        if self._calibrated or self._probe_started is None:
            return False
        if self._clock() - self._probe_started >= self._probe_timeout:
            self._calibrated = True  # never wait forever on a lost probe
            return False
        return True

    @property
    def calibrated(self) -> bool:
        """Whether the probe's answer (or a timeout) has corrected the buckets."""
        return self._calibrated

    def _wait_time(self, input_tokens: int, output_tokens: int) -> float:
        now = self._refill()
        costs = {"rpm": 1, **self._token_costs(input_tokens, output_tokens)}
        waits = [bucket.wait_for(costs[name]) for name, bucket in self._buckets.items()]
        return max([self._blocked_until - now, 0.0, *waits])

    @staticmethod
    def _token_costs(input_tokens: int, output_tokens: int) -> dict[str, int]:
        return {"itpm": input_tokens, "otpm": output_tokens, "tpm": input_tokens + output_tokens}

    def _refill(self) -> float:
        now = self._clock()
        for bucket in self._buckets.values():
            bucket.refill(now)
        return now

    def _debit(self, costs: dict[str, float]) -> None:
        for name, bucket in self._buckets.items():
            bucket.debit(costs.get(name, 0))

    # --- corrections --------------------------------------------------------------------

    def settle(self, reservation: Reservation, usage: Usage) -> None:
        """Replace the reservation's token estimates by the real ``usage`` (once)."""
        self._calibrated = True
        if reservation.settled:
            return
        reservation.settled = True
        counted_input = usage.input_tokens
        if not self.limits.cache_reads_count:
            counted_input -= usage.cached_tokens
        extra_in = counted_input - reservation.input_tokens
        extra_out = usage.output_tokens - reservation.output_tokens
        self._refill()
        self._debit(self._token_costs(extra_in, extra_out))

    def observe(self, snapshot: RateLimitSnapshot) -> None:
        """Lower buckets to what the provider's headers say remains (never raise them)."""
        self._calibrated = True
        now = self._refill()
        token_bucket = "itpm" if "itpm" in self._buckets or "tpm" not in self._buckets else "tpm"
        pairs = {
            "rpm": (snapshot.requests_limit, snapshot.requests_remaining),
            token_bucket: (snapshot.input_tokens_limit, snapshot.input_tokens_remaining),
            "otpm": (snapshot.output_tokens_limit, snapshot.output_tokens_remaining),
        }
        for name, (limit, remaining) in pairs.items():
            self._observe_one(name, limit, remaining, now)

    def _observe_one(self, name: str, limit: int | None, remaining: int | None, now: float) -> None:
        bucket = self._buckets.get(name)
        if bucket is None:
            if limit is not None and limit > 0:
                start = remaining if remaining is not None else limit
                self._buckets[name] = _Bucket(limit, now, level=min(start, limit))
            return
        if limit is not None and 0 < limit < bucket.capacity:
            bucket.capacity = float(limit)
            bucket.level = min(bucket.level, bucket.capacity)
        if remaining is not None and remaining < bucket.level:
            bucket.level = float(remaining)

    def penalize(self, retry_after_s: float) -> None:
        """After a 429: admit nothing until ``retry_after_s`` seconds from now.

        A 429 also says the account has no room left, whatever our buckets think (another
        client may share the key), so every bucket is emptied: after the pause, admissions
        resume at the refill rate instead of as a burst of a full bucket.
        """
        self._calibrated = True
        now = self._refill()
        for bucket in self._buckets.values():
            bucket.level = min(bucket.level, 0.0)
        if retry_after_s > 0:
            self._blocked_until = max(self._blocked_until, now + retry_after_s)

    # --- introspection ------------------------------------------------------------------

    def headroom(self) -> float:
        """Free share of the tightest bucket, in [0, 1]; 0 while penalized, 1 if unlimited."""
        now = self._refill()
        if now < self._blocked_until:
            return 0.0
        shares = [max(b.level, 0.0) / b.capacity for b in self._buckets.values()]
        return min(shares, default=1.0)

    def levels(self) -> dict[str, float]:
        """Current level of each configured bucket (for metrics and tests)."""
        self._refill()
        return {name: bucket.level for name, bucket in self._buckets.items()}

    def capacities(self) -> dict[str, float]:
        """Capacity of each bucket (after any limit learned from headers)."""
        return {name: bucket.capacity for name, bucket in self._buckets.items()}
