"""The retry policy: which errors are retried, how long to wait, and the retry loop.

This is the only retry loop of the package: adapters build SDK clients with
``max_retries=0`` and raise :mod:`llm.exceptions` errors, and the caller (the in-process
service or the ProviderActor) wraps each call in :meth:`RetryPolicy.run`.

Backoff. After attempt ``n`` fails, the base delay is
``initial_delay * exponential_base ** (n - 1)``, capped at ``max_delay``. With ``jitter`` on,
the delay is drawn uniformly from ``[base / 2, base]`` ("equal jitter"): retries of many
concurrent callers spread out, yet none comes back sooner than half the backoff.

Server hints. When the error carries ``retry_after_s`` (``RateLimitError``,
``ProviderOverloadedError``, ``CircuitOpenError``), the wait is ``max(backoff, retry_after_s)``:
the server's hint is a floor, never shortened by jitter or by ``max_delay``. A hint longer than
``max_retry_after`` (default 600 s) is not waited for: the error counts as not retryable and is
raised at once, since the caller is better served by an error (or a fallback provider) than by
a ten-minute stall.

Attempt count. On final failure the last error is re-raised with ``error.attempts = n``; it is
one of :class:`~llm.exceptions.LLMError`'s pickled fields, so it survives a Ray process
boundary.

The header helpers :func:`parse_retry_after` and :func:`parse_google_retry_delay` are for
adapters, which fill ``retry_after_s`` when they map a provider error.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm.exceptions import (
    CircuitOpenError,
    LLMError,
    LLMTimeoutError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    RateLimitError,
)

T = TypeVar("T")

OnRetry = Callable[[int, BaseException, float], None]
"""Called before each retry sleep with (failed attempt, its error, the delay to sleep)."""

#: Errors that say nothing about the request itself: worth another attempt.
RETRYABLE_ERRORS: tuple[type[LLMError], ...] = (
    RateLimitError,
    ProviderOverloadedError,
    ProviderError,
    LLMTimeoutError,
    ProviderConnectionError,
    CircuitOpenError,
)


class RetryConfig(BaseModel):
    """How often and how patiently to retry. All durations are in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_retries: int = Field(3, ge=0)
    initial_delay: float = Field(1.0, ge=0.0)
    max_delay: float = Field(60.0, ge=0.0)
    exponential_base: float = Field(2.0, ge=1.0)
    jitter: bool = True
    #: A server hint longer than this is not waited for: the error is raised instead.
    max_retry_after: float = Field(600.0, ge=0.0)

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryConfig:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must be at least initial_delay")
        return self


class RetryPolicy:
    """Decides retries and runs the retry loop; holds no per-call state, so it can be shared.

    ``sleep`` and ``rand`` are injected so tests run without real time or randomness.
    """

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        on_retry: OnRetry | None = None,
    ) -> None:
        self.config = config or RetryConfig()
        self._sleep = sleep
        self._rand = rand
        self._on_retry = on_retry

    def is_retryable(self, error: BaseException) -> bool:
        """True if another attempt may succeed; unknown (non-LLM) errors are not retried."""
        if not isinstance(error, RETRYABLE_ERRORS):
            return False
        if isinstance(error, RateLimitError) and error.quota_exhausted:
            return False
        hint = _retry_after(error)
        return hint is None or hint <= self.config.max_retry_after

    def backoff(self, attempt: int) -> float:
        """The capped exponential delay after failed attempt ``attempt`` (1-based), no jitter."""
        cfg = self.config
        try:
            raw = cfg.initial_delay * cfg.exponential_base ** max(attempt - 1, 0)
        except OverflowError:
            raw = math.inf
        return min(raw, cfg.max_delay)

    def delay_for(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt``; honours ``error.retry_after_s``."""
        delay = self.backoff(attempt)
        if self.config.jitter:
            delay = delay * (0.5 + 0.5 * self._rand())
        hint = _retry_after(error) if error is not None else None
        return max(delay, hint) if hint is not None else delay

    async def run(
        self, fn: Callable[[int], Awaitable[T]], *, on_retry: OnRetry | None = None
    ) -> tuple[T, int]:
        """Call ``fn(attempt)`` until it succeeds; return ``(value, attempts)``.

        Non-retryable errors and the error of the last allowed attempt are re-raised with
        ``error.attempts`` set. Cancellation is never retried.
        """
        callback = on_retry or self._on_retry
        last_attempt = self.config.max_retries + 1
        attempt = 1
        while True:
            try:
                return await fn(attempt), attempt
            except Exception as error:
                if attempt >= last_attempt or not self.is_retryable(error):
                    _set_attempts(error, attempt)
                    raise
                delay = self.delay_for(attempt, error)
                if callback is not None:
                    callback(attempt, error, delay)
            await self._sleep(delay)
            attempt += 1

    async def run_stream(
        self, open_stream: Callable[[int], AsyncIterator[T]], *, on_retry: OnRetry | None = None
    ) -> AsyncIterator[T]:
        """Yield the items of ``open_stream(attempt)``, retrying like :meth:`run` as long as
        no item has been yielded; once one has, a failure is re-raised (the caller has seen
        part of the answer). Errors carry ``error.attempts`` as in :meth:`run`."""
        callback = on_retry or self._on_retry
        last_attempt = self.config.max_retries + 1
        attempt = 1
        while True:
            sent = False
            try:
                async with contextlib.aclosing(open_stream(attempt)) as stream:
                    async for item in stream:
                        sent = True
                        yield item
                return
            except Exception as error:
                if sent or attempt >= last_attempt or not self.is_retryable(error):
                    _set_attempts(error, attempt)
                    raise
                delay = self.delay_for(attempt, error)
                if callback is not None:
                    callback(attempt, error, delay)
            await self._sleep(delay)
            attempt += 1


def _retry_after(error: BaseException) -> float | None:
    hint = getattr(error, "retry_after_s", None)
    if isinstance(hint, int | float) and math.isfinite(hint) and hint > 0:
        return float(hint)
    return None


def _set_attempts(error: BaseException, attempts: int) -> None:
    try:
        error.attempts = attempts  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__: nothing to do
        pass


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` (float ms) or ``retry-after``.

    ``retry-after`` may be seconds or an HTTP-date (a date in the past gives 0.0).
    Header names are matched case-insensitively; unusable values give None.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = _non_negative_float(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative_float(value)
    if seconds is not None:
        return seconds
    return _seconds_until_http_date(value, now)


def _non_negative_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _seconds_until_http_date(value: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s\s*$")
_RETRY_INFO = "google.rpc.RetryInfo"


def parse_google_retry_delay(details: list[Any] | dict[str, Any] | None) -> float | None:
    """Seconds from a Gemini ``google.rpc.RetryInfo`` detail (``"retryDelay": "33s"``).

    Accepts the ``details`` list, the ``error`` object holding it, or the whole error body.
    A ``retryDelay`` given as ``{"seconds": 1, "nanos": 500000000}`` is understood too.
    """
    for item in _detail_items(details):
        if not str(item.get("@type", "")).endswith(_RETRY_INFO):
            continue
        delay = _duration_seconds(item.get("retryDelay"))
        if delay is not None:
            return delay
    return None


def _detail_items(details: list[Any] | dict[str, Any] | None) -> list[dict[str, Any]]:
    if isinstance(details, dict):
        if "error" in details and isinstance(details["error"], dict):
            return _detail_items(details["error"])
        if "details" in details:
            return _detail_items(details["details"])
        return [details]
    if isinstance(details, list):
        return [item for item in details if isinstance(item, dict)]
    return []


def _duration_seconds(value: Any) -> float | None:
    if isinstance(value, str):
        match = _DURATION.match(value)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        try:
            seconds = float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
        return seconds if seconds >= 0 else None
    return None
