"""Live figures of a running batch job, for the progress view.

:class:`CallTracker` wraps the job's ``call`` (the function :func:`jobs.batch_core.run_batch`
awaits per row): it counts calls in flight and tallies each finished row by provider (rows
ok and failed, retries, tokens and cached tokens, spend). With a ``stats`` source it also polls
the engines' own counters (:class:`runtime.engine.EngineStats`: 429 answers, retries, waiting
calls) every ``poll_s`` seconds in the background and reports them as this job's deltas,
since the engines (the provider actors on a cluster) are shared and count from their start.

:func:`engine_stats_source` builds that source for the batch job's wiring: the in-process
executor's ``stats()``, or the provider actors' ``stats`` through Ray.

:class:`BatchWait` (a list of :class:`OpenBatch`) is what a ``--mode batch`` run waits for:
the provider batches in flight, their states and rows answered, and an ETA from those counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from jobs.batch_core import Call
from jobs.batch_input import RowRequest
from llm.types import LLMResponse

logger = logging.getLogger(__name__)

StatsSource = Callable[[], Awaitable[Iterable[Any]] | Iterable[Any]]

_ZERO = Decimal(0)


@dataclass
class ProviderTally:
    """What one provider did for this job so far."""

    ok: int = 0
    failed: int = 0
    in_flight: int = 0
    #: Retried attempts of finished rows (attempts beyond the first).
    retries: int = 0
    #: Rows that failed with a 429 after every retry.
    rate_limited_rows: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal = _ZERO

    @property
    def cache_hit_ratio(self) -> float | None:
        """Share of input tokens read from the prompt cache (None before any input)."""
        return self.cached_tokens / self.input_tokens if self.input_tokens else None


@dataclass
class EngineDelta:
    """The engines' counters of one provider since this job started."""

    rate_limited: int = 0
    retries: int = 0
    waiting: int = 0
    in_flight: int = 0


@dataclass
class LiveStats:
    """A snapshot for the progress view."""

    in_flight: int = 0
    providers: dict[str, ProviderTally] = field(default_factory=dict)
    #: From the engines, when a stats source is polled; empty otherwise.
    engines: dict[str, EngineDelta] = field(default_factory=dict)

    @property
    def rate_limited(self) -> int:
        """429 answers: the engines' count when known, else rows that failed with one."""
        if self.engines:
            return sum(e.rate_limited for e in self.engines.values())
        return sum(p.rate_limited_rows for p in self.providers.values())

    @property
    def cache_hit_ratio(self) -> float | None:
        """Cached share of all input tokens so far."""
        total = sum(p.input_tokens for p in self.providers.values())
        cached = sum(p.cached_tokens for p in self.providers.values())
        return cached / total if total else None


def _provider_of(row: RowRequest) -> str:
    if row.model:
        from llm.registry import get_model_info

        info = get_model_info(row.model)
        if info is not None:
            return info.provider
    return "other"  # picked by task/budget (known once answered), or an unknown model


class CallTracker:
    """A ``call`` for :func:`run_batch` that keeps :class:`LiveStats`; see the module doc."""

    def __init__(
        self, call: Call, *, stats: StatsSource | None = None, poll_s: float = 1.0
    ) -> None:
        self._call = call
        self._stats_source = stats
        self.poll_s = poll_s
        self.live = LiveStats()
        self._baseline: dict[str, dict[str, int]] | None = None
        self._poller: asyncio.Task[None] | None = None

    async def __call__(self, row: RowRequest) -> LLMResponse:
        if self._stats_source is not None and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())
            await self.refresh()  # the baseline: the engines' counts before this job's calls
        live = self.live
        sent_to = live.providers.setdefault(_provider_of(row), ProviderTally())
        live.in_flight += 1
        sent_to.in_flight += 1
        try:
            response = await self._call(row)
        except Exception as error:
            provider = getattr(error, "provider", None)
            tally = live.providers.setdefault(provider, ProviderTally()) if provider else sent_to
            tally.failed += 1
            attempts = getattr(error, "attempts", None) or 1
            tally.retries += max(attempts - 1, 0)
            if type(error).__name__ == "RateLimitError":
                tally.rate_limited_rows += 1
            raise
        finally:
            live.in_flight -= 1
            sent_to.in_flight -= 1
        tally = live.providers.setdefault(response.provider, ProviderTally())
        tally.ok += 1
        tally.retries += max(response.attempts - 1, 0)
        tally.input_tokens += response.usage.input_tokens
        tally.cached_tokens += response.usage.cached_tokens
        if response.cost is not None:
            tally.cost += response.cost.total_cost
        return response

    # --- the engines' counters ----------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.refresh()

    async def refresh(self) -> None:
        """Read the engines' counters once (errors are logged and skipped)."""
        if self._stats_source is None:
            return
        try:
            stats = self._stats_source()
            if inspect.isawaitable(stats):
                stats = await stats
            self._absorb(list(stats))
        except Exception as error:  # a progress view never stops a job
            logger.debug("engine stats unavailable (%s)", type(error).__name__)

    def _absorb(self, stats: list[Any]) -> None:
        current: dict[str, dict[str, int]] = {}
        gauges: dict[str, EngineDelta] = {}
        for s in stats:
            counts = current.setdefault(s.provider, {"rate_limited": 0, "retries": 0})
            counts["rate_limited"] += s.rate_limited
            counts["retries"] += s.retries
            gauge = gauges.setdefault(s.provider, EngineDelta())
            gauge.waiting += s.waiting
            gauge.in_flight += s.in_flight
        if self._baseline is None:
            self._baseline = current
        for provider, counts in current.items():
            base = self._baseline.setdefault(provider, {"rate_limited": 0, "retries": 0})
            gauge = gauges[provider]
            gauge.rate_limited = max(counts["rate_limited"] - base["rate_limited"], 0)
            gauge.retries = max(counts["retries"] - base["retries"], 0)
        self.live.engines = gauges

    async def aclose(self) -> None:
        """Stop polling (after one last read)."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poller
            await self.refresh()

    def stop(self) -> None:
        """Stop polling without waiting (for sync callers)."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()


def engine_stats_source(executor: Any = None, runtime: Any = None) -> StatsSource | None:
    """The engines' stats of a batch run: in process or from the provider actors."""
    if executor is not None and callable(getattr(executor, "stats", None)):

        def local() -> Iterable[Any]:
            stats = executor.stats()
            return stats.values() if isinstance(stats, dict) else stats

        return local
    if runtime is not None and callable(getattr(runtime, "provider_handles", None)):

        async def from_actors() -> list[Any]:
            handles = runtime.provider_handles()
            return list(await asyncio.gather(*(h.stats.remote() for h in handles)))

        return from_actors
    return None


@dataclass(frozen=True)
class OpenBatch:
    """One provider batch a ``--mode batch`` run is waiting for, as last polled."""

    provider: str
    model: str
    batch_id: str
    #: ``submitted`` (not polled yet), ``in_progress``, ``canceling`` or ``ended``.
    state: str
    #: Rows sent in the batch.
    rows: int
    #: Rows the provider reports answered so far (succeeded + errored; 0 while unknown).
    answered: int = 0
    waited_s: float = 0.0


@dataclass
class BatchWait:
    """What a ``--mode batch`` run is waiting for, for the progress view."""

    open: list[OpenBatch] = field(default_factory=list)
    #: Batches whose rows are in the output already.
    collected: int = 0
    #: Rows held for a retry in this run, by path (``batch`` / ``online``).
    retried: dict[str, int] = field(default_factory=dict)

    @property
    def states(self) -> dict[str, int]:
        """Open batches by state."""
        out: dict[str, int] = {}
        for batch in self.open:
            out[batch.state] = out.get(batch.state, 0) + 1
        return out

    @property
    def rows(self) -> int:
        return sum(batch.rows for batch in self.open)

    @property
    def answered(self) -> int:
        return sum(batch.answered for batch in self.open)

    @property
    def eta_s(self) -> float | None:
        """Seconds until the open batches end, from the providers' counts so far (None while
        no open batch has reported progress: then only the 24-hour window is known)."""
        etas = [
            batch.waited_s * (batch.rows - batch.answered) / batch.answered
            for batch in self.open
            if 0 < batch.answered < batch.rows
        ]
        if not etas:
            return 0.0 if all(b.state == "ended" for b in self.open) else None
        return max(etas)
