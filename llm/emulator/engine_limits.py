"""Per-account rate limits: continuously refilled buckets enforced over short windows.

An account is one API key at one provider. Each of its limits (requests, input tokens,
output tokens per minute) is two buckets refilling at ``limit / 60`` per second:

* the **minute bucket** (capacity = the per-minute limit) is what the rate-limit headers
  report: ``limit``, ``remaining`` (its level) and ``reset`` (seconds until it is full);
* the **burst bucket** (capacity = ``burst_s`` seconds of refill, 1 s by default, at least
  one request) is what providers really enforce: "60 RPM may be enforced as 1 request per
  second". A full minute's budget can therefore never go out as one burst: at 3,000 RPM
  about 50 requests may leave at once, then 50 per second.

A request needs one request token and its (uncached) input tokens in both buckets, and the
output buckets must hold its output estimate (Anthropic: ``max_tokens``, counted at
admission and corrected to the real output at the end, as Anthropic does for OTPM; others:
0, the output is deducted afterwards, so the buckets may go below zero). A request larger than a burst bucket is admitted once that bucket
is full and drives it negative, so the long-run rate still holds.

Limits nobody configured are **reported but not enforced**: every Anthropic and OpenAI
answer carries rate-limit headers, as the real APIs' do, with the values of a realistic
default account (:data:`DEFAULT_TIERS`: Anthropic Tier 4 for Claude Sonnet, 4,000 RPM,
2,000,000 ITPM, 400,000 OTPM; OpenAI Tier 4 for gpt-4.1, 10,000 RPM and a combined
2,000,000 TPM; an account configured with more requests per minute reports token limits
grown in proportion, :func:`tier_defaults`). Their ``remaining`` falls and refills as for
an enforced limit, but nothing is refused on their account. Gemini reports no limits in headers (the wire module drops
them), so it has no default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LIMIT_NAMES = ("requests", "input_tokens", "output_tokens")

#: Reported (not enforced) per-minute limits of an account whose limits were not configured.
#: Anthropic: Tier 4, Claude Sonnet 4.x. OpenAI: Tier 4, gpt-4.1 (one combined ``tokens``
#: budget for input and output, reported under ``tokens``).
DEFAULT_TIERS: dict[str, dict[str, int]] = {
    "anthropic": {"requests": 4_000, "input_tokens": 2_000_000, "output_tokens": 400_000},
    "openai": {"requests": 10_000, "tokens": 2_000_000},
}


def tier_defaults(provider: str, rpm: int | None = None) -> dict[str, int] | None:
    """The reported default limits of ``provider``, grown with a larger configured ``rpm``.

    An account allowed more requests per minute than the default tier is a larger tier:
    its token limits keep the default tier's tokens per request (a 10,000 RPM Anthropic
    account reports 5,000,000 ITPM and 1,000,000 OTPM, not Tier 4's 400,000 OTPM, which
    would bind long before its RPM). A smaller ``rpm`` leaves the token limits as they are.
    """
    defaults = DEFAULT_TIERS.get(provider)
    if defaults is None or not rpm or rpm <= defaults["requests"]:
        return defaults
    scale = rpm / defaults["requests"]
    return {name: round(value * scale) for name, value in defaults.items()}


@dataclass
class TokenBucket:
    capacity: float
    level: float
    updated: float
    #: Refill per second (``capacity / 60`` for a minute bucket).
    per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.per_s <= 0:
            self.per_s = self.capacity / 60.0

    @property
    def rate(self) -> float:
        return self.per_s

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(self.capacity, self.level + elapsed * self.per_s)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until the bucket holds ``amount`` (0 when it already does)."""
        amount = min(amount, self.capacity)
        if self.level >= amount:
            return 0.0
        return (amount - self.level) / self.per_s

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.per_s)


class Throttled(Exception):
    """A request does not fit; ``retry_after_s`` says when it would."""

    def __init__(self, retry_after_s: float, limit_name: str) -> None:
        super().__init__(limit_name)
        self.retry_after_s = retry_after_s
        self.limit_name = limit_name


class Limit:
    """One per-minute limit: the reported minute bucket and, when enforced, its burst bucket."""

    def __init__(self, per_minute: int, now: float, *, enforced: bool, burst_s: float) -> None:
        self.enforced = enforced
        self.minute = TokenBucket(float(per_minute), float(per_minute), now)
        burst = max(1.0, per_minute / 60.0 * burst_s) if burst_s < 60 else float(per_minute)
        self.burst = TokenBucket(burst, burst, now, per_s=per_minute / 60.0)

    def refill(self, now: float) -> None:
        self.minute.refill(now)
        self.burst.refill(now)

    def wait_for(self, amount: float) -> float:
        if not self.enforced:
            return 0.0
        return max(self.minute.wait_for(amount), self.burst.wait_for(amount))

    def debit(self, amount: float, *, capped: bool = True) -> None:
        self.minute.level -= min(amount, self.minute.capacity) if capped else amount
        self.burst.level -= amount
        self.minute.level = min(self.minute.level, self.minute.capacity)  # after a refund
        self.burst.level = min(self.burst.level, self.burst.capacity)
        if not self.enforced:  # reported only: never below empty, so it recovers on time
            self.minute.level = max(0.0, self.minute.level)
            self.burst.level = max(0.0, self.burst.level)


class AccountLimits:
    """The limits of one account (API key at one provider)."""

    def __init__(
        self,
        limits: dict[str, int | None],
        now: float,
        *,
        defaults: dict[str, int] | None = None,
        burst_s: float = 1.0,
    ) -> None:
        defaults = defaults or {}
        self.buckets: dict[str, Limit | None] = {}
        for name in LIMIT_NAMES:
            configured = limits.get(name)
            value = configured or defaults.get(name)
            self.buckets[name] = (
                Limit(value, now, enforced=bool(configured), burst_s=burst_s) if value else None
            )
        #: A combined input+output budget reported when neither token limit is configured.
        self.combined: Limit | None = None
        if (
            "tokens" in defaults
            and not limits.get("input_tokens")
            and not limits.get("output_tokens")
        ):
            self.buckets["input_tokens"] = self.buckets["output_tokens"] = None
            self.combined = Limit(defaults["tokens"], now, enforced=False, burst_s=burst_s)

    def _all(self) -> list[Limit]:
        found = [limit for limit in self.buckets.values() if limit is not None]
        return found + ([self.combined] if self.combined is not None else [])

    def _refill(self, now: float) -> None:
        for limit in self._all():
            limit.refill(now)

    def admit(self, input_tokens: int, now: float, output_estimate: int = 0) -> None:
        """Take one request, ``input_tokens`` and ``output_estimate``, or raise Throttled."""
        self._refill(now)
        needs = {
            "requests": 1.0,
            "input_tokens": float(input_tokens),
            "output_tokens": float(output_estimate),
        }
        waits = {
            name: limit.wait_for(needs[name])
            for name, limit in self.buckets.items()
            if limit is not None
        }
        worst = max(waits, key=lambda name: waits[name], default=None)
        if worst is not None and waits[worst] > 0:
            raise Throttled(waits[worst], worst)
        for name in LIMIT_NAMES:
            limit = self.buckets[name]
            if limit is not None and needs[name]:
                limit.debit(needs[name])
        if self.combined is not None:
            self.combined.debit(float(input_tokens))

    def charge_output(self, output_tokens: int, now: float, estimate: int = 0) -> None:
        """Correct the output estimate taken at admission to the output produced."""
        output = self.buckets["output_tokens"]
        if output is not None:
            output.refill(now)
            output.debit(float(output_tokens - estimate), capped=False)
        if self.combined is not None:
            self.combined.refill(now)
            self.combined.debit(float(output_tokens), capped=False)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Limit values for response headers (``None`` where a limit is not reported)."""
        self._refill(now)
        out: dict[str, Any] = {}
        for name, limit in self.buckets.items():
            out.update(_values(name, limit))
        if self.combined is not None:
            out.update(_values("tokens", self.combined))
        return out


def _values(name: str, limit: Limit | None) -> dict[str, Any]:
    if limit is None:
        return {f"{name}_limit": None, f"{name}_remaining": None, f"{name}_reset_s": None}
    bucket = limit.minute
    return {
        f"{name}_limit": int(bucket.capacity),
        f"{name}_remaining": max(0, math.floor(bucket.level)),
        f"{name}_reset_s": round(bucket.reset_s(), 3),
    }


class RateLimits:
    """Limits for every account seen (API key at a provider), created on first use."""

    def __init__(
        self,
        rpm: int | None,
        itpm: int | None,
        otpm: int | None,
        clock: Callable[[], float],
        *,
        burst_s: float = 1.0,
    ) -> None:
        self._limits = {"requests": rpm, "input_tokens": itpm, "output_tokens": otpm}
        self._clock = clock
        self._burst_s = burst_s
        self._accounts: dict[tuple[str, str], AccountLimits] = {}

    def _new(self, provider: str) -> AccountLimits:
        defaults = tier_defaults(provider, self._limits.get("requests"))
        return AccountLimits(self._limits, self._clock(), defaults=defaults, burst_s=self._burst_s)

    def account(self, api_key: str, provider: str = "") -> AccountLimits:
        found = self._accounts.get((provider, api_key))
        if found is None:
            found = self._accounts[(provider, api_key)] = self._new(provider)
        return found

    def admit(
        self, api_key: str, input_tokens: int, provider: str = "", output_estimate: int = 0
    ) -> None:
        self.account(api_key, provider).admit(input_tokens, self._clock(), output_estimate)

    def charge_output(
        self, api_key: str, output_tokens: int, provider: str = "", estimate: int = 0
    ) -> None:
        self.account(api_key, provider).charge_output(output_tokens, self._clock(), estimate)

    def snapshot(self, api_key: str | None, provider: str = "") -> dict[str, Any]:
        if api_key is None:
            return self._new(provider).snapshot(self._clock())
        return self.account(api_key, provider).snapshot(self._clock())

    def drain(
        self, api_key: str, providers: tuple[str, ...] = ("anthropic", "openai", "google")
    ) -> None:
        """Empty the enforced buckets of ``api_key``'s accounts (as right after a busy job)."""
        now = self._clock()
        for provider in providers:
            for limit in self.account(api_key, provider).buckets.values():
                if limit is not None and limit.enforced:
                    limit.refill(now)
                    limit.minute.level = limit.burst.level = 0.0

    def clear(self) -> None:
        self._accounts.clear()
