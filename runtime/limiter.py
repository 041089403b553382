"""Client-side rate limiting for one provider account: continuously refilled token buckets.

One :class:`RateLimiter` holds up to four buckets, one per known limit:

* ``rpm``  requests per minute (each request costs 1);
* ``itpm`` input tokens per minute;
* ``otpm`` output tokens per minute;
* ``tpm``  input + output tokens per minute (OpenAI's single token limit).

Short windows. Providers enforce their per-minute limits over short windows ("60 RPM may
be enforced as 1 request per second"), so a bucket refills continuously at the limit's rate
but holds only ``burst_s`` seconds of it (:data:`DEFAULT_BURST_S`, half a second; at least
one request): after start-up or an idle spell at most that much leaves at once, never a
minute's budget. Buckets refill at :data:`DEFAULT_PACE` of the limit, so the provider's own
short-window bucket keeps a little slack against network jitter.

:meth:`RateLimiter.reserve` waits until one request plus the estimated tokens fit in every
bucket, then debits them. Callers are admitted strictly first in, first out: the head of the
queue waits for room while everyone behind it waits for the head, so a large request is never
starved by a stream of small ones. A request larger than a bucket's capacity is admitted as
soon as that bucket is full and drives its level negative, so later requests repay the
excess and the long-run rate still holds (a long prompt never overshoots the rate).

Tokens. Input tokens are estimated by the caller (the prompt is known). Output tokens are
reserved from the output limit the adapter sends (``max_tokens`` plus any thinking or
reasoning allowance, what Anthropic's OTPM counts at admission) through
:class:`~runtime.token_estimates.OutputEstimate`, which learns the share of that limit
answers really use, so a large ``max_tokens`` with short answers does not starve the
account. :meth:`RateLimiter.settle` replaces the estimates with
the real usage (refunding or debiting the difference). With ``cache_reads_count=False``
(Anthropic, whose ITPM does not count cache reads on most models) the cached part of the
input is refunded.

Learning limits. Limits nobody configured are learned from the provider's rate-limit headers
(:meth:`RateLimiter.observe`, fed at the first byte of every answer, see
:mod:`runtime.rate_headers`): a bucket is created for each limit the headers name, and a
learned limit follows the headers up or down; a configured limit is only ever lowered by them
(it was set too high). ``remaining`` can only lower a bucket, never raise it: it was computed
when the provider admitted that one request, while other requests of ours were in flight, so
it may predate our latest admissions. (``reset`` adds nothing the refill rate does not say.)

Calibration (slow start). A new limiter knows neither the account's limits (when none are
configured) nor how much of its budget other clients are spending. Until the first answer's
rate-limit headers are observed (or an answer is settled, or a 429 arrives, or
``probe_timeout_s`` passes) admissions follow a slow start instead of the buckets alone: one
request (the probe) at first, then :data:`BLIND_MAX_PER_STEP` per :data:`BLIND_STEP_S`
(80 requests per second, spaced), from a bucket that holds one step, so time the loop spent
elsewhere never comes out as a burst, and never more than an account of
:data:`BLIND_ACCOUNT_RPM` would admit over a one-second window (80 in the first second, then
40 per second). The engine sends the calls it admits as streams where headers carry the
limits (:attr:`Reservation.blind`; a stream's headers come before its first token, a few
hundred milliseconds after the request, a whole answer's only with its body, seconds
later); the slow start keeps the account busy meanwhile without a blind burst (never more
than one step, four requests, at once), and on an account too small for it the first 429,
answered at once and carrying the limits in its headers, ends it. An account
whose answers carry no headers (Gemini) is then paced by the in-flight window of
:mod:`runtime.inflight` and by what its 429s teach.

429s. :meth:`RateLimiter.penalize` stops all admissions until ``now + retry_after`` and
empties the buckets (the provider just said the account has no room). A second 429 for a
request admitted after the previous one says our pace itself is too fast: the refill rate is
cut to :data:`PACE_CUT` of itself (not below :data:`PACE_FLOOR`) and recovers by
:data:`PACE_RECOVERY_PER_S` per second. A 429 that names the limit (Gemini's ``QuotaFailure``,
headers on Anthropic and OpenAI 429s) is learned through :meth:`RateLimiter.observe`.

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
from runtime.token_estimates import OutputEstimate

BUCKETS = ("rpm", "itpm", "otpm", "tpm")

#: Seconds of a limit a bucket holds (what may leave at once after an idle spell).
DEFAULT_BURST_S = 0.5
#: Share of each limit the buckets refill at (slack for the provider's short window).
DEFAULT_PACE = 0.995
#: A 429 for a request admitted after the previous 429 multiplies the pace by this...
PACE_CUT = 0.8
#: ...but never below this share of the limit;
PACE_FLOOR = 0.5
#: and the pace recovers by this share of the limit per second without such 429s.
PACE_RECOVERY_PER_S = 0.005
#: Slow start before the first answer: step length, and admissions per step (80 per second,
#: spaced, never more than one step at once).
BLIND_STEP_S = 0.05
BLIND_MAX_PER_STEP = 4
#: ...and never more than an account of this many requests per minute would admit over the
#: providers' one-second window (its first second's burst included): 80 in the first second,
#: then 40 per second. An account that small or larger sees no 429 from the slow start
#: whenever its first answer comes; a smaller one answers the first request over its limit
#: with a 429 at once, which ends the slow start and teaches the limit. Measured at 10,000
#: RPM (median latency 4 s, first answer after ~1.2 s, before the slow start's calls were streamed):
#: 40 per second throughout left 0.92 of the account used, 80 in the first second 0.946.
BLIND_ACCOUNT_RPM = 2400
#: A request limit learned after the slow start begins with the budget the slow start left
#: unused: what the provider's one-second window would hold now, counting on only
#: :data:`CATCH_UP_WINDOW_S` of it plus the refill since the probe, less what the slow start
#: sent, and never more than :data:`CATCH_UP_S` of the rate at once. (Our admissions reach
#: the provider later than we admit them, by a varying delay while the driver is busy: with
#: the whole second counted on, a 3,000 RPM account answered one request of the catch-up
#: with a 429.) It never starts below zero: a slow start that outran a small account's
#: window met 429s (which empty the buckets anyway); one that met none found a longer
#: window than assumed.
CATCH_UP_WINDOW_S = 0.5
CATCH_UP_S = 0.9
_BLIND_POLL_S = 0.01
#: Weight of the newest answer in the running mean tokens per request.
_MEAN_WEIGHT = 0.05

#: Waits shorter than this count as zero, so float rounding can never leave a caller
#: sleeping ever-smaller slices that no longer move the clock.
_EPSILON_S = 1e-9


class AccountLimits(BaseModel):
    """Per-minute limits of one provider account; None means unknown (learned from headers)."""

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
    #: Output tokens reserved (the estimate, at most ``max_output_tokens``).
    output_tokens: int
    admitted_at: float
    waited_s: float
    settled: bool = False
    #: The request's ``max_tokens`` (what the estimate learns against).
    max_output_tokens: int = 0
    #: Admitted by the slow start, before any answer told the account's limits.
    blind: bool = False


class _Bucket:
    """A continuously refilled bucket of one per-minute limit; the level may go negative."""

    __slots__ = ("burst_s", "capacity", "level", "limit", "rate", "updated")

    def __init__(
        self, limit: float, now: float, *, burst_s: float, pace: float, level: float | None = None
    ) -> None:
        self.burst_s = burst_s
        self.updated = now
        self.limit = self.capacity = self.rate = 0.0
        self.set_limit(limit, pace)
        self.level = self.capacity if level is None else min(float(level), self.capacity)

    def set_limit(self, limit: float, pace: float) -> None:
        """A new per-minute limit: capacity is ``burst_s`` of it (at least 1), rate ``pace``."""
        self.limit = float(limit)
        self.capacity = max(self.limit / 60.0 * self.burst_s, 1.0)
        self.rate = self.limit / 60.0 * pace
        if hasattr(self, "level"):
            self.level = min(self.level, self.capacity)

    def refill(self, now: float) -> None:
        if now > self.updated and self.level < self.capacity:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` fits (an oversized amount waits for a full bucket)."""
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def debit(self, amount: float) -> None:
        """Take ``amount`` (a refund when negative, never above capacity or the level)."""
        level = self.level - amount
        self.level = min(level, max(self.capacity, self.level)) if amount < 0 else level


class RateLimiter:
    """FIFO admission against the account's buckets. See the module docstring.

    ``combined_tokens`` says the provider's token headers report one input+output budget
    (OpenAI): a learned token limit then becomes ``tpm`` rather than ``itpm``. A configured
    token limit overrides it: the headers then correct that limit (``tpm`` when ``tpm`` and
    not ``itpm`` is configured, else ``itpm``) instead of opening a second token bucket
    beside it, which would count the same budget twice (measured: 0.857 of an input-token
    limit in the rate bench, whose account counts input tokens only).
    """

    def __init__(
        self,
        limits: AccountLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        poll_interval_s: float = 1.0,
        probe_timeout_s: float = 30.0,
        burst_s: float = DEFAULT_BURST_S,
        pace: float = DEFAULT_PACE,
        combined_tokens: bool | None = None,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._poll = poll_interval_s
        self._burst_s = burst_s
        self._pace_max = self._pace = pace
        if combined_tokens is None or limits.tpm is not None or limits.itpm is not None:
            # A configured token limit says how the provider's one token budget counts:
            # headers naming it must correct that bucket, not open a second one beside it.
            combined_tokens = limits.tpm is not None and limits.itpm is None
        self._token_bucket = "tpm" if combined_tokens else "itpm"
        now = clock()
        self._paced_at = now
        self._buckets: dict[str, _Bucket] = {
            name: _Bucket(getattr(limits, name), now, burst_s=burst_s, pace=pace)
            for name in BUCKETS
            if getattr(limits, name) is not None
        }
        self._configured = frozenset(self._buckets)
        self._blocked_until = now
        self._last_penalty: float | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.waiting = 0
        self.outputs = OutputEstimate()
        self._mean_in: float | None = None
        self._mean_out: float | None = None
        # Slow start until the first answer (probe_timeout_s=0 turns it off).
        self._calibrated = probe_timeout_s <= 0
        self._probe_started: float | None = None
        self._probe_timeout = probe_timeout_s
        self._blind_sent = 0
        # The slow start's own bucket: BLIND_MAX_PER_STEP per BLIND_STEP_S, holding one step.
        self._blind_credit = 0.0
        self._blind_at = 0.0

    # --- admission ----------------------------------------------------------------------

    async def reserve(self, input_tokens: int, output_tokens: int) -> Reservation:
        """Wait until 1 request and the estimated tokens fit, then debit them.

        ``output_tokens`` is the request's ``max_tokens``; what is reserved for it is the
        learned estimate (:class:`~runtime.token_estimates.OutputEstimate`).
        """
        start = self._clock()
        self.waiting += 1
        try:
            async with self._lock:
                while (blind := self._blind_wait()) > _EPSILON_S:
                    await self._sleep(min(blind, _BLIND_POLL_S))  # an answer may end it
                estimate = self.outputs.estimate(output_tokens)
                while (wait := self._wait_time(input_tokens, estimate)) > _EPSILON_S:
                    # Sleep in slices so refunds and corrections made meanwhile are seen.
                    await self._sleep(min(wait, self._poll) if self._poll > 0 else wait)
                    estimate = self.outputs.estimate(output_tokens)
                now = self._clock()
                self._debit({"rpm": 1, **self._token_costs(input_tokens, estimate)})
                blind = not self._calibrated
                if blind:
                    self._blind_sent += 1
                    if self._probe_started is None:
                        self._probe_started = self._blind_at = now
                    else:
                        self._blind_credit -= 1.0
        finally:
            self.waiting -= 1
        return Reservation(
            next(self._ids),
            input_tokens,
            estimate,
            now,
            now - start,
            max_output_tokens=output_tokens,
            blind=blind,
        )

    def _blind_wait(self) -> float:
        """Seconds until the slow start admits the next request (0: now, or calibrated).

        Two bounds (see :data:`BLIND_MAX_PER_STEP` and :data:`BLIND_ACCOUNT_RPM`): a bucket
        refilled at ``BLIND_MAX_PER_STEP`` per ``BLIND_STEP_S`` that holds one step, so time
        the event loop spent elsewhere (a driver preparing thousands of calls before they
        reach the limiter) never comes out as a burst; and what an account of
        ``BLIND_ACCOUNT_RPM`` would admit since the probe.
        """
        if self._calibrated or self._probe_started is None:
            return 0.0
        now = self._clock()
        elapsed = now - self._probe_started
        if elapsed >= self._probe_timeout:
            self._calibrated = True  # never wait forever on a lost probe
            return 0.0
        per_s = BLIND_MAX_PER_STEP / BLIND_STEP_S
        credit = self._blind_credit + (now - self._blind_at) * per_s
        self._blind_credit = min(float(BLIND_MAX_PER_STEP), credit)
        self._blind_at = now
        account = BLIND_ACCOUNT_RPM / 60.0
        over = self._blind_sent - account * (1.0 + elapsed)
        waits = [(1.0 - self._blind_credit) / per_s, (over + 1.0) / account]
        wait = max(waits)
        if wait <= _EPSILON_S:
            return 0.0
        return min(wait, self._probe_timeout - elapsed)

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
    def _token_costs(input_tokens: float, output_tokens: float) -> dict[str, float]:
        return {"itpm": input_tokens, "otpm": output_tokens, "tpm": input_tokens + output_tokens}

    def _refill(self) -> float:
        now = self._clock()
        if self._pace < self._pace_max and now > self._paced_at:
            pace = min(self._pace_max, self._pace + (now - self._paced_at) * PACE_RECOVERY_PER_S)
            self._set_pace(pace, now)
        self._paced_at = now
        for bucket in self._buckets.values():
            bucket.refill(now)
        return now

    def _set_pace(self, pace: float, now: float) -> None:
        self._pace = pace
        for bucket in self._buckets.values():
            bucket.refill(now)
            bucket.set_limit(bucket.limit, pace)

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
        if usage.input_tokens or usage.output_tokens:  # an answer, not a refund
            self.outputs.learn(usage.output_tokens, reservation.max_output_tokens)
            self._mean_in = _mean(self._mean_in, counted_input)
            self._mean_out = _mean(self._mean_out, usage.output_tokens)

    def observe(self, snapshot: RateLimitSnapshot) -> None:
        """Learn limits from the provider's headers; lower buckets to what remains."""
        self._calibrated = True
        now = self._refill()
        pairs = {
            "rpm": (snapshot.requests_limit, snapshot.requests_remaining),
            self._token_bucket: (snapshot.input_tokens_limit, snapshot.input_tokens_remaining),
            "otpm": (snapshot.output_tokens_limit, snapshot.output_tokens_remaining),
        }
        for name, (limit, remaining) in pairs.items():
            self._observe_one(name, limit, remaining, now)

    def _observe_one(self, name: str, limit: int | None, remaining: int | None, now: float) -> None:
        bucket = self._buckets.get(name)
        if bucket is None:
            if limit is not None and limit > 0:
                bucket = _Bucket(limit, now, burst_s=self._burst_s, pace=self._pace)
                if name == "rpm" and self._probe_started is not None:
                    since = now - self._probe_started
                    left = bucket.rate * (CATCH_UP_WINDOW_S + since) - self._blind_sent
                    bucket.level = max(0.0, min(bucket.rate * CATCH_UP_S, left))
                if remaining is not None:
                    bucket.level = min(bucket.level, float(remaining))
                self._buckets[name] = bucket
            return
        if limit is not None and limit > 0 and limit != bucket.limit:
            if limit < bucket.limit or name not in self._configured:
                bucket.set_limit(limit, self._pace)
        if remaining is not None and remaining < bucket.level:
            bucket.level = float(remaining)

    def penalize(self, retry_after_s: float, admitted_at: float | None = None) -> None:
        """After a 429: admit nothing until ``retry_after_s`` seconds from now.

        A 429 also says the account has no room left, whatever our buckets think (another
        client may share the key), so every bucket is emptied: after the pause, admissions
        resume at the refill rate instead of as a burst of a full bucket. If the refused
        request (admitted at ``admitted_at``) was sent after the previous 429, pacing at the
        refill rate was itself too fast, so the pace is cut (see the module docstring).
        """
        self._calibrated = True
        now = self._refill()
        last = self._last_penalty
        if admitted_at is not None and last is not None and admitted_at > last:
            self._set_pace(max(PACE_FLOOR, self._pace * PACE_CUT), now)
        self._last_penalty = now
        for bucket in self._buckets.values():
            bucket.level = min(bucket.level, 0.0)
        if retry_after_s > 0:
            self._blocked_until = max(self._blocked_until, now + retry_after_s)

    # --- introspection ------------------------------------------------------------------

    @property
    def pace(self) -> float:
        """The share of each limit the buckets refill at right now."""
        return self._pace

    def request_rate(self) -> float | None:
        """Requests per second the known limits sustain (None while no limit is known).

        Token limits are turned into requests with the mean tokens per answer seen so far
        (or, before any answer, left out).
        """
        self._refill()
        per_request = {
            "rpm": 1.0,
            "itpm": self._mean_in,
            "otpm": self._mean_out,
            "tpm": None
            if self._mean_in is None or self._mean_out is None
            else self._mean_in + self._mean_out,
        }
        rates = [
            bucket.rate / cost
            for name, bucket in self._buckets.items()
            if (cost := per_request[name]) is not None and cost > 0
        ]
        if not rates and self._buckets:
            return None if "rpm" not in self._buckets else self._buckets["rpm"].rate
        return min(rates, default=None)

    def headroom(self) -> float:
        """Free share of the tightest bucket, in [0, 1]; 0 while penalized, 1 if unlimited."""
        now = self._refill()
        if now < self._blocked_until:
            return 0.0
        shares = [max(b.level, 0.0) / b.capacity for b in self._buckets.values()]
        return min(shares, default=1.0)

    def levels(self) -> dict[str, float]:
        """Current level of each known bucket (for metrics and tests)."""
        self._refill()
        return {name: bucket.level for name, bucket in self._buckets.items()}

    def capacities(self) -> dict[str, float]:
        """Capacity (the burst) of each bucket."""
        return {name: bucket.capacity for name, bucket in self._buckets.items()}

    def known_limits(self) -> dict[str, int]:
        """Per-minute limit of each bucket, configured or learned from headers."""
        return {name: int(bucket.limit) for name, bucket in self._buckets.items()}


def _mean(current: float | None, value: float) -> float:
    if current is None:
        return float(value)
    return current + _MEAN_WEIGHT * (value - current)
