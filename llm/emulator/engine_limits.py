"""Per-API-key rate limits: continuously refilled token buckets for RPM, ITPM and OTPM.

Each limit is a bucket whose capacity is the per-minute limit and which refills at
``limit / 60`` per second. A request needs one request token and its (uncached) input
tokens, and the output bucket must not be negative; the output actually produced is
deducted afterwards, so that bucket may go below zero. A limit of ``None`` is off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LIMIT_NAMES = ("requests", "input_tokens", "output_tokens")


@dataclass
class TokenBucket:
    capacity: float
    level: float
    updated: float

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(self.capacity, self.level + elapsed * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until the bucket holds ``amount`` (0 when it already does)."""
        amount = min(amount, self.capacity)
        if self.level >= amount:
            return 0.0
        return (amount - self.level) / self.rate

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.rate)


class Throttled(Exception):
    """A request does not fit; ``retry_after_s`` says when it would."""

    def __init__(self, retry_after_s: float, limit_name: str) -> None:
        super().__init__(limit_name)
        self.retry_after_s = retry_after_s
        self.limit_name = limit_name


class AccountLimits:
    """The three buckets of one API key."""

    def __init__(self, limits: dict[str, int | None], now: float) -> None:
        self.buckets: dict[str, TokenBucket | None] = {
            name: TokenBucket(float(limit), float(limit), now) if limit else None
            for name, limit in limits.items()
        }

    def _refill(self, now: float) -> None:
        for bucket in self.buckets.values():
            if bucket is not None:
                bucket.refill(now)

    def admit(self, input_tokens: int, now: float) -> None:
        """Take one request and ``input_tokens``, or raise :class:`Throttled`."""
        self._refill(now)
        needs = {"requests": 1.0, "input_tokens": float(input_tokens), "output_tokens": 0.0}
        waits = {
            name: bucket.wait_for(needs[name])
            for name, bucket in self.buckets.items()
            if bucket is not None
        }
        worst = max(waits, key=lambda name: waits[name], default=None)
        if worst is not None and waits[worst] > 0:
            raise Throttled(waits[worst], worst)
        for name in ("requests", "input_tokens"):
            bucket = self.buckets[name]
            if bucket is not None:
                bucket.level -= min(needs[name], bucket.capacity)

    def charge_output(self, output_tokens: int, now: float) -> None:
        """Deduct the output produced (the bucket may go negative)."""
        bucket = self.buckets["output_tokens"]
        if bucket is not None:
            bucket.refill(now)
            bucket.level -= output_tokens

    def snapshot(self, now: float) -> dict[str, Any]:
        """Limit values for response headers (``None`` where a limit is off)."""
        self._refill(now)
        out: dict[str, Any] = {}
        for name, bucket in self.buckets.items():
            if bucket is None:
                out.update({f"{name}_limit": None, f"{name}_remaining": None})
                out[f"{name}_reset_s"] = None
                continue
            out[f"{name}_limit"] = int(bucket.capacity)
            out[f"{name}_remaining"] = max(0, math.floor(bucket.level))
            out[f"{name}_reset_s"] = round(bucket.reset_s(), 3)
        return out


class RateLimits:
    """Buckets for every API key seen, created on first use."""

    def __init__(
        self, rpm: int | None, itpm: int | None, otpm: int | None, clock: Callable[[], float]
    ) -> None:
        self._limits = {"requests": rpm, "input_tokens": itpm, "output_tokens": otpm}
        self._clock = clock
        self._accounts: dict[str, AccountLimits] = {}

    def account(self, api_key: str) -> AccountLimits:
        found = self._accounts.get(api_key)
        if found is None:
            found = self._accounts[api_key] = AccountLimits(self._limits, self._clock())
        return found

    def admit(self, api_key: str, input_tokens: int) -> None:
        self.account(api_key).admit(input_tokens, self._clock())

    def charge_output(self, api_key: str, output_tokens: int) -> None:
        self.account(api_key).charge_output(output_tokens, self._clock())

    def snapshot(self, api_key: str | None) -> dict[str, Any]:
        if api_key is None:
            return AccountLimits(self._limits, self._clock()).snapshot(self._clock())
        return self.account(api_key).snapshot(self._clock())

    def clear(self) -> None:
        self._accounts.clear()
