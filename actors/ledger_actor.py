"""The ledger actor: one writer of the cost ledger per cluster, fed by the journal.

Rows reach the ledger through the write-ahead journal (:mod:`runtime.journal_log`). Each
provider actor appends the rows of its finished calls to its own journal segment and
acknowledges a call once its line is fsynced, so no Ray call per request and no wait for
Parquet. This actor follows every segment under ``<ledger>/_journal/`` and writes the rows
to Parquet part files in bulk: when ``max_batch`` rows are waiting, or ``flush_interval_s``
(1 s) after the first one, in a worker thread. It reads the segments every
``poll_interval_s`` (0.5 s), and before it answers :meth:`lookup`, :meth:`flush` or
:meth:`totals`, so an acknowledged row is always visible to them. :meth:`record` remains for
callers without a journal of their own: it appends to this actor's segment (group commit)
and returns once durable.

The journal also answers reruns. For calls that carry a job id the journal line holds the
finished :class:`~llm.executor.Executed` too; :meth:`lookup` returns it, also after a
restart (the journal is read back when the actor starts), so a rerun of a job gets its
finished answers without paying the provider again. At start, every journaled row missing
from the Parquet ledger (a kill before it was written) is written to it, so the ledger is
exactly the acknowledged rows, each once: dedup by request id, across segments and
restarts, is :class:`LedgerWriter`'s (first row wins).

This class is plain Python; :mod:`actors.factory` turns it into a Ray actor.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from llm.executor import Executed
from runtime.journal_log import JOURNAL_DIR, GroupCommit, JournalEntry, JournalLog, JournalTail
from runtime.ledger_store import LedgerRecord, LedgerWriter, read_ledger
from runtime.metrics import get_metrics

logger = logging.getLogger(__name__)

__all__ = ["JOURNAL_DIR", "LedgerActor", "ledger_summary"]

_ZERO = Decimal(0)


class LedgerActor:
    """Hosts the :class:`LedgerWriter` of ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        commit_interval_s: float = 0.0,
        flush_interval_s: float = 1.0,
        poll_interval_s: float = 0.5,
        max_batch: int = 2000,
    ) -> None:
        self.directory = Path(directory)
        self.flush_interval_s = flush_interval_s
        self.poll_interval_s = poll_interval_s
        self.max_batch = max_batch
        self._writer = LedgerWriter(self.directory, max_rows=max_batch)
        self._log = JournalLog(self.directory / JOURNAL_DIR)
        self._commit = GroupCommit(
            self._log,
            commit_interval_s=commit_interval_s,
            max_batch=max_batch,
            on_durable=self._journaled,
        )
        self._tail = JournalTail(self.directory / JOURNAL_DIR)
        self._tail_lock: asyncio.Lock | None = None
        self._results: dict[str, str] = {}  # request id -> journaled Executed JSON
        self._writing: asyncio.Task[int] | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._poller: asyncio.Task[None] | None = None
        self._heal_from_journal()
        atexit.register(self._final_flush)

    # ------------------------------------------------------------------ the journal

    def _journaled(self, entries: Iterable[JournalEntry]) -> None:
        """Journaled rows go to the Parquet writer; results become lookups."""
        records = []
        for entry in entries:
            records.append(entry.record)
            if entry.result_json is not None:
                self._results.setdefault(entry.request_id, entry.result_json)
        self._writer.append(records)

    async def catch_up(self) -> int:
        """Read what the journal segments gained; return how many entries that was."""
        self._ensure_polling()
        if self._tail_lock is None:
            self._tail_lock = asyncio.Lock()
        async with self._tail_lock:
            entries = await asyncio.to_thread(self._tail.read_new, self._log.path)
        if entries:
            self._journaled(entries)
            self._schedule_write()
        return len(entries)

    def _ensure_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.catch_up()
            except Exception as error:  # e.g. a disk hiccup: tried again next round
                logger.warning("reading the ledger journal failed (%s)", type(error).__name__)
            writer = self._writer
            get_metrics().ledger_state(
                pending_rows=writer.pending_count, lag_s=writer.pending_age_s
            )

    def _heal_from_journal(self) -> None:
        entries = self._tail.read_new()
        self._journaled(entries)
        if self._writer.pending_count:
            self._writer.flush()

    # ------------------------------------------------------------------ writing

    async def start(self) -> None:
        """Begin following the journal (any other call does too)."""
        self._ensure_polling()

    async def record(
        self,
        records: Iterable[LedgerRecord | Mapping[str, Any]],
        results: Mapping[str, Executed] | None = None,
    ) -> list[str]:
        """Journal ``records`` (with ``results`` by request id); return once durable.

        Returns the ids newly accepted; ids already in the ledger are dropped silently.
        """
        self._ensure_polling()
        rows = [
            r if isinstance(r, LedgerRecord) else LedgerRecord.model_validate(r) for r in records
        ]
        results = results or {}
        accepted = []
        for row in rows:
            rid = row.request_id
            if self._writer.knows(rid):
                continue
            if self._commit.add(JournalEntry.of_call(row, results.get(rid))):
                accepted.append(rid)
        await self._commit.commit([row.request_id for row in rows])
        self._schedule_write()
        return accepted

    def _schedule_write(self) -> None:
        """Start a Parquet write now (``max_batch`` waiting) or arm the interval timer."""
        if self._writing is not None or not self._writer.pending_count:
            return
        if self._writer.pending_count >= self.max_batch:
            self._start_write()
        else:
            self._arm_write_timer()

    def _arm_write_timer(self) -> None:
        if self._write_timer is None:
            loop = asyncio.get_running_loop()
            self._write_timer = loop.call_later(self.flush_interval_s, self._start_write)

    def _start_write(self) -> asyncio.Task[int]:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write_parquet())
            # A write the timer started has no one awaiting it; its failure is logged already.
            self._writing.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._writing

    async def _write_parquet(self) -> int:
        """Write the pending rows as one part file, in a worker thread."""
        batch = self._writer.take_batch()
        written = False
        try:
            await asyncio.to_thread(self._writer.write_batch, batch)
            written = True
            get_metrics().ledger_written(len(batch))
        except Exception as error:  # the rows stay pending (and journaled): retried later
            logger.warning("ledger part write failed (%s); will retry", type(error).__name__)
        finally:
            self._writer.settle_batch(batch, written=written)
            self._writing = None
            if written:
                self._schedule_write()
            else:  # retry after the interval, not at once (a full disk stays full)
                self._arm_write_timer()
        if not written:
            raise OSError("the ledger part file could not be written")
        return len(batch)

    async def flush(self) -> int:
        """Journal, read the journal and write to Parquet all that is pending; return the
        rows written."""
        await self._commit.commit()
        await self.catch_up()
        written = 0
        if self._writing is not None:
            written += await asyncio.shield(self._writing)
        if self._writer.pending_count:
            written += await asyncio.shield(self._start_write())
        return written

    def _final_flush(self) -> None:
        try:
            self._commit.commit_now()
            self._journaled(self._tail.read_new(self._log.path))
            self._writer.flush()
        except Exception:  # at interpreter exit there is no one left to tell
            pass

    # ------------------------------------------------------------------ reading

    async def lookup(self, request_ids: list[str]) -> dict[str, Executed]:
        """The journaled results of those ``request_ids`` that have one."""
        if any(rid not in self._results for rid in request_ids):
            await self.catch_up()
        found = {rid: self._results[rid] for rid in request_ids if rid in self._results}
        return {rid: Executed.model_validate_json(payload) for rid, payload in found.items()}

    async def totals(self, job_id: str | None = None) -> dict[str, Any]:
        """Requests, errors, tokens, exact cost and per-model figures (of one job, or all)."""
        await self.flush()
        return ledger_summary(read_ledger(self.directory), job_id=job_id)

    def pending_count(self) -> int:
        """Rows given to :meth:`record` and not yet acknowledged (waiting for the journal)."""
        return self._commit.pending_count

    async def shutdown(self) -> None:
        """Commit what is pending; call before killing the actor."""
        await self.flush()

    async def aclose(self) -> None:
        """Write what is pending and stop following the journal."""
        await self.flush()
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None


def ledger_summary(table: pa.Table, *, job_id: str | None = None) -> dict[str, Any]:
    """Totals of a ledger table, optionally of one job; costs are exact Decimals."""
    if job_id is not None:
        table = table.filter(pc.equal(table["job_id"], job_id))
    ok = pc.sum(pc.equal(table["status"], "ok")).as_py() or 0
    totals: dict[str, Any] = {"requests": table.num_rows, "errors": table.num_rows - ok}
    for name in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
        totals[name] = pc.sum(table[name]).as_py() or 0
    totals["total_tokens"] = pc.sum(table["total_tokens"]).as_py() or 0
    totals["total_cost"] = pc.sum(table["total_cost"]).as_py() or _ZERO
    totals["cache_savings"] = pc.sum(table["cache_savings"]).as_py() or _ZERO
    totals["by_model"] = _by_model(table)
    return totals


def _by_model(table: pa.Table) -> dict[str, dict[str, Any]]:
    by_model: dict[str, dict[str, Any]] = {}
    columns = table.select(["model", "total_tokens", "total_cost"]).to_pylist()
    for row in columns:
        entry = by_model.setdefault(
            row["model"], {"requests": 0, "total_tokens": 0, "total_cost": _ZERO}
        )
        entry["requests"] += 1
        entry["total_tokens"] += row["total_tokens"]
        entry["total_cost"] += row["total_cost"]
    return by_model
