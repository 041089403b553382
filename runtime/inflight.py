"""How many calls one provider account may have in flight: governed by its budget.

The rate limiter (:mod:`runtime.limiter`) decides *when* a call may go; this module decides
*how many* may be out at once. By Little's law, using a rate ``r`` with calls that take ``L``
seconds needs ``r x L`` calls in flight: 50 requests/s at 5 s is 250, 10,000 RPM at 5 s
over 800. A fixed cap (a semaphore of 32, a pool of 100 connections) silently caps the rate
at ``cap / L`` instead.

:class:`InFlightController` holds the account's in-flight slots. Its :meth:`target` is

* with a known rate (configured or learned limits, see
  :meth:`~runtime.limiter.RateLimiter.request_rate`):
  ``ceil(rate x latency x HEADROOM) + SPARE`` where ``latency`` is a running mean of the
  account's observed call durations (starting from :data:`INITIAL_LATENCY_S`) and ``HEADROOM``
  covers the heavy tail and the bias of early means towards fast answers; the limiter still
  paces admissions, so a generous target costs memory, not 429s;
* while the limiter is still calibrating (its slow start, before the first answer): the
  upper bound, since the limiter's slow start is what holds calls back then;
* with no known rate (answers carry no rate-limit headers: Gemini): a congestion window,
  starting from the calls in flight when the limiter's calibration ended, grown by one per
  answer (slow start, doubling per round trip) until the first 429, then by
  ``1 / window`` per answer (additive increase), and halved by a 429 for a call started
  after the previous halving (multiplicative decrease);

never more than ``max_in_flight`` (the connection pool's size, ``LLM_MAX_CONNECTIONS``), so
the pool never binds by accident. Waiters are served first in, first out; :meth:`wake`
re-reads the target (the engine calls it when the limiter learns something).

Memory: a call in flight costs about 43 KiB (its task, the SDK request and response, its
connection's buffers): 2,000 in flight added 83 MiB to a process (measured with the
emulator at 25 s latency, in process).

Both the ProviderActor and the in-process :class:`~runtime.local.EngineExecutor` run calls
through :class:`~runtime.engine.ProviderEngine`, which owns one controller per account; a
batch job sizes its own look-ahead from :meth:`target` (:func:`capacity_hint`).

Use from one event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

#: Multiplies rate x latency (tail and early-mean bias).
HEADROOM = 2.0
#: Added to the Little's-law target.
SPARE = 8
#: Latency assumed before any call of the account has finished.
INITIAL_LATENCY_S = 10.0
#: Weight of the newest duration in the running mean.
LATENCY_WEIGHT = 0.05
#: Default upper bound (the default connection-pool size, ``LLM_MAX_CONNECTIONS``).
DEFAULT_MAX_IN_FLIGHT = 2048


class RateSource(Protocol):
    """What the controller reads from the rate limiter."""

    @property
    def calibrated(self) -> bool: ...

    def request_rate(self) -> float | None: ...


class InFlightController:
    """In-flight slots of one account; see the module docstring."""

    def __init__(
        self,
        rates: RateSource | None,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = rates
        self.max_in_flight = max(1, max_in_flight)
        self._clock = clock
        self.in_flight = 0
        self.latency_s = INITIAL_LATENCY_S
        self.window = 1.0
        self._window_open = False
        self._threshold = float(self.max_in_flight)
        self._last_cut: float | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()

    # --- the target ---------------------------------------------------------------------

    def target(self) -> int:
        """Calls worth having in flight now (see the module docstring)."""
        rates = self._rates
        if rates is None:
            return self.max_in_flight
        rate = rates.request_rate()
        if rate is not None:
            wanted = math.ceil(rate * self.latency_s * HEADROOM) + SPARE
        elif not rates.calibrated:
            wanted = self.max_in_flight
        else:
            if not self._window_open:
                self._window_open = True
                self.window = max(1.0, float(self.in_flight))
            wanted = int(self.window)
        return max(1, min(self.max_in_flight, wanted))

    def reported(self) -> int:
        """The target as others should size by it: 0 while the limiter is calibrating.

        During the slow start :meth:`target` is the upper bound (the limiter holds calls
        back), which says nothing about what the account needs; a batch job reading 0 keeps
        its own default look-ahead until the first answer has taught the limits.
        """
        rates = self._rates
        if rates is not None and rates.request_rate() is None and not rates.calibrated:
            return 0
        return self.target()

    # --- slots --------------------------------------------------------------------------

    async def acquire(self) -> float:
        """Wait for a slot (first in, first out); returns when the call may start."""
        if not self._waiters and self.in_flight < self.target():
            self.in_flight += 1
            return self._clock()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted, then cancelled: give the slot back
                self.wake()
            else:
                self._waiters.remove(waiter)
            raise
        return self._clock()

    def release(self) -> None:
        """A call ended; hand its slot on."""
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Grant slots to waiters while the target allows (call after learning)."""
        limit = self.target()
        while self._waiters and self.in_flight < limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiters)

    # --- feedback -----------------------------------------------------------------------

    def finished(self, started_at: float, *, ok: bool, rate_limited: bool = False) -> None:
        """Feed back one call: its duration, and whether it was refused with a 429."""
        if ok:
            # From INITIAL_LATENCY_S, not from the first answer: the first answers of a burst
            # are its fastest ones, and a target set from them would cap the rate.
            duration = max(self._clock() - started_at, 0.0)
            self.latency_s += LATENCY_WEIGHT * (duration - self.latency_s)
            if self.window < self._threshold:
                self.window += 1.0  # slow start: one more per answer
            else:
                self.window += 1.0 / self.window
            self.window = min(self.window, float(self.max_in_flight))
        elif rate_limited and (self._last_cut is None or started_at > self._last_cut):
            self._threshold = max(self.window / 2.0, 1.0)
            self.window = self._threshold
            self._last_cut = self._clock()

    def stats(self) -> dict[str, float]:
        """Target, calls in flight and waiting, mean latency and window (for metrics)."""
        return {
            "target": self.target(),
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "latency_s": round(self.latency_s, 3),
            "window": round(self.window, 2),
        }
