"""A circuit breaker that stops sending to a provider after repeated overloads.

States:

* ``closed``: requests flow; consecutive overload-type failures are counted.
* ``open``: after ``threshold`` consecutive failures, provided that among the last
  ``min_calls`` outcomes at least ``min_calls`` are known and ``failure_ratio`` of them are
  failures. :meth:`CircuitBreaker.check` raises
  :class:`CircuitOpenError` with ``retry_after_s`` = the remaining cooldown.
* ``half_open``: once the cooldown has passed, one trial request is let through; the others
  keep getting ``CircuitOpenError``. Its success closes the circuit, its failure re-opens it
  for another cooldown. If the trial never reports back within ``cooldown_s``, another trial
  is allowed, so a lost caller cannot wedge the breaker.

Why the volume rule: at the start of a burst, failures come back at once while successes
take a full response time, so a handful of instant transient faults (say 6 of 60 requests at
a 10 % fault rate) arrive "consecutively" before any success. A breaker that opened on
them would stall a healthy provider for a whole cooldown. The engine uses ``min_calls=20``;
``min_calls=1`` gives the plain consecutive-failure breaker.

Only overload-type errors count (:data:`COUNTED_ERRORS`): overload, 5xx, connection and
timeout errors. Anything else (a 400, a 429 rate limit, a bad key) says nothing about the
provider's health: :meth:`record_failure` ignores it, except that it frees a half-open trial
slot without deciding the state.

Not thread-safe; use from one event loop (the ProviderActor's).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from llm.exceptions import (
    CircuitOpenError,
    LLMTimeoutError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
)

BreakerState = Literal["closed", "open", "half_open"]

COUNTED_ERRORS: tuple[type[BaseException], ...] = (
    ProviderOverloadedError,
    ProviderError,
    ProviderConnectionError,
    LLMTimeoutError,
)


class CircuitBreaker:
    """Consecutive-failure breaker with a cooldown and a single half-open trial."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        provider: str | None = None,
        min_calls: int = 1,
        failure_ratio: float = 0.5,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if min_calls < 1 or not 0.0 < failure_ratio <= 1.0:
            raise ValueError("min_calls must be >= 1 and failure_ratio in (0, 1]")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.provider = provider
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None
        self.times_opened = 0
        self.min_calls = min_calls
        self.failure_ratio = failure_ratio
        self._recent: deque[bool] = deque(maxlen=max(min_calls, threshold))  # True = failure

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose cooldown passed reads ``half_open``."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown_s:
            return "open"
        return "half_open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def check(self) -> None:
        """Raise :class:`CircuitOpenError` unless a request may be sent now."""
        state = self.state
        if state == "closed":
            return
        now = self._clock()
        if state == "open":
            self._raise(self._opened_at + self.cooldown_s - now)  # type: ignore[operator]
        trial = self._trial_started
        if trial is not None and now - trial < self.cooldown_s:
            self._raise(trial + self.cooldown_s - now)
        self._trial_started = now  # this caller is the half-open trial

    def record_success(self) -> None:
        """A request got a real answer from the provider: close the circuit."""
        self._recent.append(False)
        self._failures = 0
        self._opened_at = None
        self._trial_started = None

    def record_failure(self, error: BaseException) -> None:
        """Count an overload-type failure; open (or re-open) the circuit when due."""
        if not isinstance(error, COUNTED_ERRORS):
            self._trial_started = None
            return
        state = self.state
        if state == "open":
            return  # a request admitted before the circuit opened; already accounted
        self._failures += 1
        self._recent.append(True)
        if state == "half_open" or (self._failures >= self.threshold and self._mostly_failing()):
            self._open()

    def _mostly_failing(self) -> bool:
        known = len(self._recent)
        return known >= self.min_calls and sum(self._recent) >= self.failure_ratio * known

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._trial_started = None
        self.times_opened += 1

    def _raise(self, remaining: float) -> None:
        raise CircuitOpenError(
            f"circuit open after {self._failures} consecutive provider failures",
            retry_after_s=max(remaining, 0.0),
            provider=self.provider,
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._failures})"
