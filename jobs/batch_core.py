"""The batch engine, independent of Ray: stream rows in, call, write results out.

:func:`run_batch` reads input items one at a time into a read-ahead window (default
``4 x`` the calls in flight), orders them with the
:class:`~jobs.batch_schedule.CacheAwareScheduler`, keeps calls in flight and hands each
result to the output writer, so memory does not grow with the input (apart from the set of
ids seen, needed to write each id once).

How many calls are in flight is the runtime's decision, not a fixed number: the runtime
governs each provider account by its budget (:mod:`runtime.inflight`: rate x latency) and
reports the total through ``BatchConfig.capacity``; the job keeps that many (plus
:data:`SPARE`, at least :data:`MIN_IN_FLIGHT`, at most :data:`MAX_IN_FLIGHT`; before it
reports, :data:`UNKNOWN_IN_FLIGHT`) in flight, so the runtime always has the next calls at
hand. ``concurrency`` (``--concurrency``) is an
optional upper bound; without a capacity it is the number in flight.

* Ids already in the output (``done_ids``) are skipped and nothing is called for them;
  a repeated id in the same input is skipped too and counted in ``duplicates``.
* A row that is invalid, or whose call raises, becomes an error row; the job goes on.
* Each row is sent with ``request_id = sha256(f"{job_id}/{row_id}")[:32]``
  (:func:`row_request_id`), the idempotency key under which the runtime's ledger journals
  the billed answer, so a rerun after a crash is not billed twice.
* With a :class:`BudgetGuard`, a row is admitted only if the spend so far (ledger total
  at start + rows finished + upper estimates of rows in flight) plus its own upper
  estimate stays within the cap; the first row that does not fit stops admission, rows in
  flight finish, and the rest is counted in ``not_started`` and not written, so a rerun
  with a higher cap continues with them.
* On cancellation (Ctrl-C, SIGTERM) rows already finished are flushed before the
  cancellation propagates; calls still in flight are cancelled and redone on a rerun.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from jobs.batch_input import DEFAULT_MODEL, InputItem, InvalidRow, RowRequest, parse_row
from jobs.batch_output import error_row, is_retryable_on_rerun, ok_row
from jobs.batch_schedule import CacheAwareScheduler, prefix_key
from llm.exceptions import BudgetExceededError
from llm.types import LLMResponse

Call = Callable[[RowRequest], Awaitable[LLMResponse]]
Clock = Callable[[], float]
RowSource = Iterable[InputItem | dict[str, Any]] | AsyncIterable[InputItem | dict[str, Any]]
_ZERO = Decimal(0)

#: Calls kept in flight before the runtime reports a capacity (its engines pace and queue
#: them). The report reaches the driver seconds after the first answer (the router polls
#: each second, the driver's route table every two), so this must already cover a large
#: account: 10,000 RPM x 5 s is over 800 (256 measured 0.755 of such an account, three
#: seconds at 256 / 5 s = 51 calls/s).
UNKNOWN_IN_FLIGHT = 1024
#: The fewest calls kept in flight once it does (at 3,000 RPM and 5 s latency this is
#: already what the account needs).
MIN_IN_FLIGHT = 256
#: Added to the runtime's capacity so its queues never run dry between polls.
SPARE = 32
#: Never more calls in flight than this (the default connection pool is 2,048 per account).
MAX_IN_FLIGHT = 8192


def row_request_id(job_id: str, row_id: str) -> str:
    """The idempotency key of one row of one job (see docs/contracts.md)."""
    return hashlib.sha256(f"{job_id}/{row_id}".encode()).hexdigest()[:32]


class RowWriter(Protocol):
    """Where output rows go (:class:`jobs.batch_output.OutputWriter`)."""

    def add(self, row: dict[str, Any]) -> None: ...

    def maybe_flush(self) -> Any: ...

    def flush(self) -> Any: ...


class Progress(Protocol):
    """Progress display (:class:`jobs.batch_progress.ProgressBar`)."""

    def update(self, summary: BatchSummary) -> None: ...

    def close(self, summary: BatchSummary) -> None: ...


@dataclass
class BatchConfig:
    """Knobs of one run. ``lookahead`` defaults to ``4 *`` :meth:`in_flight_limit`.

    ``concurrency`` bounds the calls in flight (None: no bound but the runtime's);
    ``capacity`` reports the calls the runtime wants in flight (None: unknown yet).
    """

    job_id: str
    concurrency: int | None = None
    lookahead: int | None = None
    follower_hold_s: float = 10.0
    caching_default: bool = False
    default_model: str = DEFAULT_MODEL
    tick_s: float = 0.25
    capacity: Callable[[], int | None] | None = None

    def in_flight_limit(self) -> int:
        """Calls to keep in flight now (see the module docstring)."""
        hint = self.capacity() if self.capacity is not None else None
        if hint is None:
            return self.concurrency or UNKNOWN_IN_FLIGHT
        wanted = min(MAX_IN_FLIGHT, max(MIN_IN_FLIGHT, hint + SPARE))
        return wanted if self.concurrency is None else min(self.concurrency, wanted)

    def window(self, limit: int | None = None) -> int:
        limit = self.in_flight_limit() if limit is None else limit
        return max(self.lookahead or 4 * limit, limit)


@dataclass
class BatchSummary:
    """Counters of one run; money in exact Decimal USD."""

    rows_seen: int = 0
    ok: int = 0
    failed: int = 0
    failures_by_type: Counter[str] = field(default_factory=Counter)
    retryable_failed: int = 0
    skipped_done: int = 0
    duplicates: int = 0
    not_started: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal = _ZERO
    cache_savings: Decimal = _ZERO
    spent_before: Decimal = _ZERO
    budget_usd: Decimal | None = None
    budget_stopped: bool = False
    interrupted: bool = False
    wall_s: float = 0.0

    @property
    def done(self) -> int:
        """Rows finished in this run (ok or failed)."""
        return self.ok + self.failed

    @property
    def spend(self) -> Decimal:
        """Spend of this job: before this run plus this run's finished rows."""
        return self.spent_before + self.cost

    def record_ok(self, response: LLMResponse) -> None:
        self.ok += 1
        self.input_tokens += response.usage.input_tokens
        self.output_tokens += response.usage.output_tokens
        self.cached_tokens += response.usage.cached_tokens
        self.cost += response.cost.total_cost if response.cost is not None else _ZERO
        self.cache_savings += response.cache_savings or _ZERO

    def record_error(self, error: BaseException) -> None:
        self.failed += 1
        self.failures_by_type[type(error).__name__] += 1
        self.retryable_failed += int(is_retryable_on_rerun(error))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (Decimals as strings)."""
        return {
            "rows_seen": self.rows_seen,
            "ok": self.ok,
            "failed": self.failed,
            "failures_by_type": dict(sorted(self.failures_by_type.items())),
            "retryable_failed": self.retryable_failed,
            "skipped_done": self.skipped_done,
            "duplicates": self.duplicates,
            "not_started": self.not_started,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": str(self.cost),
            "cache_savings_usd": str(self.cache_savings),
            "spent_before_usd": str(self.spent_before),
            "budget_usd": None if self.budget_usd is None else str(self.budget_usd),
            "budget_stopped": self.budget_stopped,
            "interrupted": self.interrupted,
            "wall_s": round(self.wall_s, 3),
        }


@dataclass
class RowResults:
    """The one place a finished row becomes an output row: it writes the row
    (:func:`~jobs.batch_output.ok_row` / :func:`~jobs.batch_output.error_row`) and counts it
    in the run's :class:`BatchSummary`. Used by :func:`run_batch` and by ``--mode batch``
    (:mod:`jobs.provider_batch`, :mod:`jobs.batch_retry`)."""

    writer: RowWriter
    summary: BatchSummary
    job_id: str

    def ok(self, row_id: str, request_id: str, response: LLMResponse, latency_s: float) -> None:
        """Write an answered row at the price its call was metered at."""
        self.writer.add(
            ok_row(
                row_id=row_id,
                job_id=self.job_id,
                request_id=request_id,
                response=response,
                latency_s=latency_s,
            )
        )
        self.summary.record_ok(response)

    def error(
        self,
        row_id: str,
        request_id: str,
        error: BaseException,
        model: str | None,
        latency_s: float = 0.0,
    ) -> None:
        """Write a failed row (its error type and message, zero cost)."""
        self.writer.add(
            error_row(
                row_id=row_id,
                job_id=self.job_id,
                request_id=request_id,
                error=error,
                model=model,
                latency_s=latency_s,
            )
        )
        self.summary.record_error(error)


class BudgetGuard:
    """Admits rows while the job's spend plus upper estimates stays within ``limit_usd``."""

    def __init__(
        self,
        limit_usd: Decimal,
        *,
        estimate: Callable[[RowRequest], Decimal],
        spent_before: Decimal = _ZERO,
    ) -> None:
        self.limit_usd = Decimal(limit_usd)
        self.spent = Decimal(spent_before)
        self.spent_before = Decimal(spent_before)
        self.reserved = _ZERO
        self._estimate = estimate

    def admit(self, row: RowRequest) -> Decimal:
        """Reserve the row's upper estimate and return it; raise
        :class:`~llm.exceptions.BudgetExceededError` if it would pass the cap (the job then
        stops starting rows: see the module docstring)."""
        estimate = self._estimate(row)
        committed = self.spent + self.reserved
        if committed + estimate > self.limit_usd:
            raise BudgetExceededError(
                f"the row's upper estimate ${estimate} would pass the ${self.limit_usd} budget",
                budget_usd=float(self.limit_usd),
                spent_usd=float(committed),
            )
        self.reserved += estimate
        return estimate

    def settle(self, reserved: Decimal, actual: Decimal) -> None:
        """Replace a row's reservation by what it actually cost."""
        self.reserved -= reserved
        self.spent += actual


async def _aiter(rows: RowSource) -> AsyncIterator[InputItem | dict[str, Any]]:
    if isinstance(rows, AsyncIterable):
        async for item in rows:
            yield item
    else:
        for item in rows:
            yield item


@dataclass
class _Outcome:
    response: LLMResponse | None
    error: BaseException | None
    latency_s: float


class _BatchRun:
    """The state of one :func:`run_batch` call."""

    def __init__(
        self,
        *,
        call: Call,
        writer: RowWriter,
        done_ids: set[str],
        config: BatchConfig,
        budget: BudgetGuard | None,
        progress: Progress | None,
        clock: Clock,
    ) -> None:
        self.call, self.writer, self.done_ids = call, writer, done_ids
        self.config, self.budget, self.progress, self.clock = config, budget, progress, clock
        self.sched = CacheAwareScheduler(hold_s=config.follower_hold_s, clock=clock)
        self.summary = BatchSummary()
        if budget is not None:
            self.summary.budget_usd = budget.limit_usd
            self.summary.spent_before = budget.spent_before
        self.results = RowResults(writer, self.summary, config.job_id)
        self.in_flight: dict[asyncio.Task[_Outcome], tuple[RowRequest, Decimal]] = {}
        self.seen: set[str] = set()
        self.lines = 0
        self.exhausted = False
        self.stopping = False

    async def run(self, rows: RowSource) -> BatchSummary:
        started = self.clock()
        source = _aiter(rows)
        try:
            await self._main(source)
        except BaseException:
            self.summary.interrupted = True
            await self._abort()
            raise
        finally:
            self.writer.flush()
            self.summary.wall_s = self.clock() - started
            if self.progress is not None:
                self.progress.close(self.summary)
        return self.summary

    async def _main(self, source: AsyncIterator[Any]) -> None:
        while True:
            await self._fill(source)
            self._dispatch()
            if not self.in_flight:
                if self.stopping or (self.exhausted and not len(self.sched)):
                    break
                self.sched.release_all()  # only held rows left: nothing else can free them
                continue
            done, _ = await asyncio.wait(
                self.in_flight, timeout=self._wait_s(), return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                self._finish(task)
            self.writer.maybe_flush()
            if self.progress is not None:
                self.progress.update(self.summary)
        if self.stopping:
            self.summary.not_started += self.sched.drain() + await self._count_rest(source)

    def _wait_s(self) -> float:
        deadline = self.sched.next_deadline()
        if deadline is None:
            return self.config.tick_s
        return max(0.0, min(self.config.tick_s, deadline - self.clock()))

    async def _fill(self, source: AsyncIterator[Any]) -> None:
        window = self.config.window()
        while not (self.exhausted or self.stopping) and len(self.sched) < window:
            try:
                item = await anext(source)
            except StopAsyncIteration:
                self.exhausted = True
                return
            row = self._admit_item(item)
            if isinstance(row, RowRequest):
                key = prefix_key(
                    row,
                    caching_default=self.config.caching_default,
                    default_model=self.config.default_model,
                )
                self.sched.add(row, key)

    def _admit_item(self, item: Any) -> RowRequest | None:
        """Count the item; write it at once if invalid; None if it needs no call."""
        self.lines += 1
        if isinstance(item, dict):
            item = parse_row(item, self.lines)
        self.summary.rows_seen += 1
        if item.row_id in self.done_ids:
            self.summary.skipped_done += 1
            return None
        if item.row_id in self.seen:
            self.summary.duplicates += 1
            return None
        self.seen.add(item.row_id)
        request_id = row_request_id(self.config.job_id, item.row_id)
        if isinstance(item, InvalidRow):
            self.results.error(item.row_id, request_id, item.error, item.model)
            return None
        return item.for_job(self.config.job_id, request_id)

    def _dispatch(self) -> None:
        limit = self.config.in_flight_limit()
        while not self.stopping and len(self.in_flight) < limit:
            row = self.sched.next_ready()
            if row is None:
                return
            reserved = _ZERO
            if self.budget is not None:
                try:
                    reserved = self.budget.admit(row)
                except BudgetExceededError:
                    self.stopping = self.summary.budget_stopped = True
                    self.summary.not_started += 1
                    return
            task = asyncio.create_task(self._call(row))
            self.in_flight[task] = (row, reserved)

    async def _call(self, row: RowRequest) -> _Outcome:
        started = self.clock()
        try:
            response = await self.call(row)
        except Exception as error:  # every failure becomes an error row
            return _Outcome(None, error, self.clock() - started)
        return _Outcome(response, None, self.clock() - started)

    def _finish(self, task: asyncio.Task[_Outcome]) -> None:
        row, reserved = self.in_flight.pop(task)
        outcome = task.result()
        self.sched.finished(row, ok=outcome.response is not None)
        actual = _ZERO
        if outcome.response is not None:
            response = outcome.response
            self.results.ok(row.row_id, row.request_id, response, outcome.latency_s)
            actual = response.cost.total_cost if response.cost is not None else _ZERO
        else:
            assert outcome.error is not None
            self.results.error(
                row.row_id, row.request_id, outcome.error, row.model, outcome.latency_s
            )
        if self.budget is not None:
            self.budget.settle(reserved, actual)

    async def _count_rest(self, source: AsyncIterator[Any]) -> int:
        rest = 0
        async for item in source:
            row_id = parse_row(item, 0).row_id if isinstance(item, dict) else item.row_id
            self.summary.rows_seen += 1
            if row_id in self.done_ids or row_id in self.seen:
                continue
            self.seen.add(row_id)
            rest += 1
        return rest

    async def _abort(self) -> None:
        """Keep the results that are in; cancel the calls that are not."""
        pending = []
        for task in list(self.in_flight):
            if task.done() and not task.cancelled():
                self._finish(task)
            else:
                task.cancel()
                pending.append(task)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.in_flight.clear()


async def run_batch(
    rows: RowSource,
    *,
    call: Call,
    writer: RowWriter,
    done_ids: set[str],
    config: BatchConfig,
    budget: BudgetGuard | None = None,
    progress: Progress | None = None,
    clock: Clock = time.monotonic,
) -> BatchSummary:
    """Run every row through ``call`` and write one output row per new id.

    ``rows`` yields :class:`~jobs.batch_input.RowRequest`/``InvalidRow`` items (or raw row
    dicts, parsed here). Returns the run's summary; raises ``CancelledError`` (after
    flushing) if cancelled.
    """
    if config.concurrency is not None and config.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    run = _BatchRun(
        call=call,
        writer=writer,
        done_ids=done_ids,
        config=config,
        budget=budget,
        progress=progress,
        clock=clock,
    )
    return await run.run(rows)
