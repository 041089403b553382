"""``--mode batch`` of the batch job: rows through the providers' batch APIs at batch prices.

:class:`ProviderBatchRun` owns one run: intake, submission, polling, collection. It validates
every new row exactly as the online path does (:func:`jobs.batch_dryrun.build_request`;
invalid rows become error rows) and plans the rest into batches by provider and model within
each provider's size limits (:mod:`jobs.batch_plan`). Before a batch is submitted the budget
cap reserves its estimated cost at batch prices (every row using its whole output budget;
:meth:`ProviderBatchRun.fits`); a batch that would pass the cap is not submitted and its rows
count as not started. A row too large for its provider's batch is an error row, or, in
``auto`` mode (``leave_uncarried``), left for the online path. The batch id is journaled
(:class:`runtime.batch_journal.BatchJournal`, fsynced) the moment the provider accepts it.

The run then polls every open batch and shows their states, rows answered and an ETA in the
job's progress view (:class:`~jobs.batch_progress.ProgressBar`: rich on a terminal, plain
lines otherwise, e.g. under ``ray job submit``). As each batch ends it checks structured
output against the row's schema (a batch cannot re-ask: a reply that does not validate is a
``StructuredOutputError`` row, billed), writes the batch's rows to the same Parquet output at
once (:class:`jobs.batch_core.RowResults`; and the same ledger, ``tier = "batch"``,
deduplicated by request id, :mod:`jobs.batch_ledger`) as the online path, then journals it
collected.

A rerun (same ``--output``) re-attaches to the batches journaled but not collected instead of
sending their rows again, skips rows already in the output, and sends the rest. Rows that
expired, or failed with a retryable error, are sent again within the same run (a new batch,
or online once the deadline no longer allows a batch: :mod:`jobs.batch_retry` decides which
rows and which path, and sends the online ones), within the budget; rows of a canceled
batch, and rows still failing after their retry, are written as retryable errors, so the
next run sends them again.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

from jobs.batch_core import BatchSummary, RowResults, row_request_id
from jobs.batch_dryrun import build_request
from jobs.batch_input import InputItem, InvalidRow, RowRequest, parse_row
from jobs.batch_ledger import ActorLedger, record_durably
from jobs.batch_live import BatchWait, OpenBatch
from jobs.batch_plan import PlannedBatch, batch_cache_ttl, plan_batches
from jobs.batch_progress import ProgressBar
from jobs.batch_retry import OnlineCall, RowRetries, send_online
from llm.config import Settings
from llm.exceptions import InvalidRequestError, LLMError, StructuredOutputError
from llm.executor import Executed
from llm.pricing import compute_cost
from llm.providers.base import ProviderRequest
from llm.providers.batch_base import BatchAdapter, BatchRow, BatchStatus
from llm.providers.factory import make_batch_adapter
from llm.registry import resolve_model
from llm.service_response import call_response
from llm.structured import parse_structured
from llm.types import LLMResponse
from runtime.batch_journal import BatchJournal, JournaledBatch
from runtime.ledger_store import LedgerRecord, LedgerWriter

AdapterFactory = Callable[[str, Settings], BatchAdapter]
_ZERO = Decimal(0)


@dataclass
class _Open:
    journaled: JournaledBatch
    submitted_at: float
    status: BatchStatus | None = None
    reserved: Decimal = _ZERO


class ProviderBatchRun:
    """One run of ``--mode batch`` (see the module docstring)."""

    def __init__(
        self,
        *,
        job_id: str,
        output_dir: Any,
        writer: Any,
        done_ids: set[str],
        settings: Settings,
        budget_usd: Decimal | None = None,
        spent_before: Decimal = _ZERO,
        poll_s: float = 30.0,
        adapter_factory: AdapterFactory | None = None,
        ledger: LedgerWriter | ActorLedger | None = None,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        leave_uncarried: bool = False,
        progress: ProgressBar | None = None,
        deadline_s: float | None = None,
        online_call: OnlineCall | None = None,
        max_retries: int = 1,
    ) -> None:
        self.job_id = job_id
        self.writer = writer
        self.done_ids = done_ids
        self.settings = settings
        self.budget_usd = budget_usd
        self.poll_s = poll_s
        self.journal = BatchJournal(output_dir)
        self.ledger = ledger
        self.out = out or sys.stderr
        self.clock = clock
        self._factory = adapter_factory or (lambda p, s: make_batch_adapter(p, s))
        self._adapters: dict[str, BatchAdapter] = {}
        self.summary = BatchSummary(spent_before=spent_before, budget_usd=budget_usd)
        self.results = RowResults(writer, self.summary, job_id)
        self.reserved = _ZERO
        self.open: list[_Open] = []
        self.submitted = 0
        self.reattached = 0
        self.collected = 0
        self.progress = progress or ProgressBar(self.out, clock=clock)
        #: What the rows answered in this run would have cost online, minus their cost.
        self.batch_savings = _ZERO
        #: Structured-output schemas by row id (checked when results arrive).
        self.schemas: dict[str, dict[str, Any]] = {}
        #: Rows too large for their provider's batch: left for the online path (``auto``)
        #: when ``leave_uncarried``, else written as errors.
        self.leave_uncarried = leave_uncarried
        self.uncarried = 0
        #: Every row this run may send (again): row id -> (row, request).
        self.known: dict[str, tuple[RowRequest, ProviderRequest]] = {}
        self.online_call = online_call
        self.retries = RowRetries(
            deadline_s=deadline_s,
            max_retries=max_retries,
            clock=clock,
            can_go_online=online_call is not None,
        )

    def adapter(self, provider: str) -> BatchAdapter:
        if provider not in self._adapters:
            self._adapters[provider] = self._factory(provider, self.settings)
        return self._adapters[provider]

    def _limits(self, provider: str) -> tuple[int, int]:
        adapter = type(self.adapter(provider))
        return adapter.max_requests, adapter.max_bytes

    def _body_size(self, provider: str, row: BatchRow) -> int:
        body = type(self.adapter(provider)).request_body(row)
        return len(json.dumps(body, separators=(",", ":"), default=str).encode()) + 1

    # ------------------------------------------------------------------ intake
    def _valid_rows(self, rows: Iterable[InputItem | dict[str, Any]], skip: set[str]) -> list:
        seen: set[str] = set()
        valid: list[tuple[RowRequest, ProviderRequest]] = []
        for line, item in enumerate(rows, start=1):
            if isinstance(item, dict):
                item = parse_row(item, line)
            self.summary.rows_seen += 1
            schema = getattr(item, "options", {}).get("structured_output_schema")
            if isinstance(schema, dict):
                self.schemas[item.row_id] = schema
            if item.row_id in self.done_ids:
                self.summary.skipped_done += 1
                continue
            if item.row_id in skip:  # in a batch re-attached to: known, for a retry
                self.summary.skipped_done += 1
                if not isinstance(item, InvalidRow):
                    self._remember(item)
                continue
            if item.row_id in seen:
                self.summary.duplicates += 1
                continue
            seen.add(item.row_id)
            request_id = row_request_id(self.job_id, item.row_id)
            if isinstance(item, InvalidRow):
                self.results.error(item.row_id, request_id, item.error, item.model)
                continue
            row = item.for_job(self.job_id, request_id)
            try:
                request = build_request(
                    row,
                    default_model=self.settings.default_model,
                    caching_default=self.settings.enable_caching,
                )
            except LLMError as error:
                self.results.error(row.row_id, request_id, error, row.model)
                continue
            self.known[row.row_id] = (row, request)
            provider = request.model.provider
            size = self._body_size(provider, BatchRow(custom_id=request_id, request=request))
            if size > self._limits(provider)[1]:
                if self.leave_uncarried:
                    self.uncarried += 1
                else:
                    too_large = InvalidRequestError(
                        f"the row ({size} bytes) exceeds the {provider} batch limit",
                        provider=provider,
                        model=request.model.name,
                    )
                    self.results.error(row.row_id, request_id, too_large, request.model.name)
                continue
            valid.append((row, request))
        return valid

    def _remember(self, item: RowRequest) -> None:
        row = item.for_job(self.job_id, row_request_id(self.job_id, item.row_id))
        try:
            request = build_request(
                row,
                default_model=self.settings.default_model,
                caching_default=self.settings.enable_caching,
            )
        except LLMError:
            return
        self.known[row.row_id] = (row, request)

    def fits(self, estimate: Decimal, rows: int) -> bool:
        """Whether ``rows`` rows estimated at ``estimate`` fit in the budget cap (spend so far
        plus open reservations); if not, they count as not started and the run stops
        starting rows."""
        if self.budget_usd is None:
            return True
        if self.summary.spend + self.reserved + estimate <= self.budget_usd:
            return True
        self.summary.not_started += rows
        self.summary.budget_stopped = True
        return False

    # ------------------------------------------------------------------ submit
    async def _submit(self, batch: PlannedBatch, index: int) -> None:
        estimate = batch.estimate()
        if not self.fits(estimate, len(batch.rows)):
            return
        self.reserved += estimate
        pairs = [(row.request_id, row.row_id) for row in batch.rows]
        self.journal.append(
            "submitting", provider=batch.provider, model=batch.model.name, rows=pairs
        )
        requests = batch_cache_ttl(batch.requests)
        rows = [
            BatchRow(custom_id=row.request_id, request=request)
            for row, request in zip(batch.rows, requests, strict=True)
        ]
        try:
            batch_id = await self.adapter(batch.provider).submit(
                rows, display_name=f"{self.job_id}-{index}"
            )
        except LLMError as error:
            self.reserved -= estimate
            for row in batch.rows:
                self.results.error(row.row_id, row.request_id, error, batch.model.name)
            return
        self.journal.append(
            "submitted",
            batch_id=batch_id,
            provider=batch.provider,
            model=batch.model.name,
            rows=pairs,
            estimate_usd=str(estimate),
        )
        self.submitted += 1
        journaled = JournaledBatch(batch_id, batch.provider, batch.model.name, pairs)
        self.open.append(_Open(journaled, self.clock(), reserved=estimate))

    # ------------------------------------------------------------------ collect
    async def _collect(self, item: _Open) -> None:
        batch = item.journaled
        model = resolve_model(batch.model)
        custom_ids = [cid for cid, _ in batch.rows]
        results = await self.adapter(batch.provider).results(batch.batch_id, model.name, custom_ids)
        row_ids = dict(batch.rows)
        now = datetime.now(UTC)
        latency = max(0.0, self.clock() - item.submitted_at)
        records: list[LedgerRecord] = []
        actual = _ZERO
        for row in results:
            row_id = row_ids[row.custom_id]
            if row_id in self.done_ids:  # written before a crash, collected again
                continue
            if row.result is None:
                error = row.error or LLMError("no result")
                if row_id in self.known and self.retries.wants(row_id, error):
                    continue  # sent again in this run (see _retry)
                self.results.error(row_id, row.custom_id, error, model.name)
                continue
            response = call_response(
                model,
                Executed(result=row.result),
                call_id=row.custom_id,
                metadata={"job_id": self.job_id, "row_id": row_id},
                latency_s=latency,
                at=now,
                service_tier="batch",
            )
            cost = response.cost.total_cost if response.cost else _ZERO
            response, problem = _structured(response, self.schemas.get(row_id))
            if problem is not None:  # answered (and billed), but not what the schema asks
                self.results.error(row_id, row.custom_id, problem, model.name)
                self.summary.cost += cost
            else:
                self.results.ok(row_id, row.custom_id, response, latency)
            actual += cost
            online = compute_cost(model, row.result.usage, at=now).total_cost
            self.batch_savings += online - cost
            records.append(
                LedgerRecord.from_response(
                    response,
                    job_id=self.job_id,
                    row_id=row_id,
                    request_id=row.custom_id,
                    ts=now,
                )
            )
        self.writer.flush()
        await record_durably(self.ledger, records)
        self.journal.append("collected", batch_id=batch.batch_id)
        self.reserved -= item.reserved
        self.collected += 1

    # ------------------------------------------------------------------ progress
    def _report(self, *, force: bool = False) -> None:
        """Redraw the progress view with the batches waited for (states, counts, ETA)."""
        self._snapshot()
        self.progress.update(self.summary, force=force)

    def _snapshot(self) -> None:
        now = self.clock()
        self.progress.batches = BatchWait(
            open=[
                OpenBatch(
                    provider=item.journaled.provider,
                    model=item.journaled.model,
                    batch_id=item.journaled.batch_id,
                    state=item.status.state if item.status else "submitted",
                    rows=len(item.journaled.rows),
                    answered=item.status.succeeded + item.status.errored if item.status else 0,
                    waited_s=max(0.0, now - item.submitted_at),
                )
                for item in self.open
            ],
            collected=self.collected,
            retried={path: n for path, n in self.retries.sent.items() if n},
        )

    async def _poll(self) -> None:
        while self.open:
            for item in list(self.open):
                batch = item.journaled
                try:
                    item.status = await self.adapter(batch.provider).status(batch.batch_id)
                except LLMError as error:
                    if not error.retryable:
                        raise
                    print(f"poll of {batch.batch_id} failed ({error.error_type}); retrying",
                          file=self.out)  # fmt: skip
                    continue
                if item.status.ended:
                    await self._collect(item)
                    self.open.remove(item)
                    if self.open:  # its rows are in the output now (the end draws itself)
                        self._report(force=True)
            await self._retry()
            if self.open:
                self._report()
                await asyncio.sleep(self.poll_s)

    # ------------------------------------------------------------------ retry
    async def _retry(self) -> None:
        """Send the rows held by :attr:`retries` again: a new batch, or online."""
        row_ids = self.retries.take()
        if not row_ids:
            return
        items = [self.known[row_id] for row_id in row_ids]
        path = self.retries.path()
        self.retries.sent[path] = self.retries.sent.get(path, 0) + len(items)
        print(f"retrying {len(items)} row(s) that a batch did not answer: {path}", file=self.out)
        if path == "batch":
            for batch in plan_batches(items, self._limits, self._body_size):
                await self._submit(batch, self.submitted)
            return
        assert self.online_call is not None
        await send_online(
            items,
            call=self.online_call,
            fits=self.fits,
            results=self.results,
            ledger=self.ledger,
        )
        self.writer.flush()

    # ------------------------------------------------------------------ run
    async def run(self, rows: Iterable[InputItem | dict[str, Any]]) -> BatchSummary:
        started = self.clock()
        in_flight = self.journal.in_flight()
        skip = {row_id for batch in in_flight for _, row_id in batch.rows}
        for batch in in_flight:
            self.open.append(_Open(batch, self.clock(), reserved=Decimal(batch.estimate_usd)))
            self.reserved += Decimal(batch.estimate_usd)
            self.reattached += 1
        if in_flight:
            print(f"re-attached to {len(in_flight)} batch(es) in flight", file=self.out)
        valid = self._valid_rows(rows, skip)
        self.writer.flush()
        for index, batch in enumerate(
            plan_batches(valid, self._limits, self._body_size), start=self.submitted
        ):
            await self._submit(batch, index)
        try:
            await self._poll()
        finally:
            self.summary.wall_s = self.clock() - started
            self._snapshot()
            self.progress.close(self.summary)
            for adapter in self._adapters.values():
                await adapter.aclose()  # type: ignore[attr-defined]
        return self.summary


def _structured(
    response: LLMResponse, schema: dict[str, Any] | None
) -> tuple[LLMResponse, StructuredOutputError | None]:
    """The response with its parsed ``structured_output``, or the validation error (a batch
    cannot re-ask inside the batch; the online path re-asks)."""
    if schema is None:
        return response, None
    value, problem = parse_structured(response.text, schema)
    if problem is not None:
        error = StructuredOutputError(
            f"the batch answer does not match the schema: {problem}",
            raw_text=response.text,
            validation_error=problem,
            provider=response.provider,
            model=response.model,
        )
        return response, error
    return response.model_copy(update={"structured_output": value}), None
