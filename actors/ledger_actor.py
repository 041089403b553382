"""The ledger actor: one writer of the cost ledger per cluster, with group commit and a journal.

Every provider actor sends its finished calls here (:meth:`LedgerActor.record`). A call is
acknowledged only once its row is durable, but rows are not written one file each: the
first ``record`` after a commit arms a timer (``commit_interval_s``, 100 ms by default);
every record that arrives before it fires joins the same commit, which writes one ledger
part file (and one journal part file) and then wakes all those callers together. A batch
of ``max_batch`` pending rows commits at once without waiting for the timer. Because no
row ever waits longer than the interval, nothing is left unwritten for long if the actor
dies without a clean shutdown; :meth:`flush` and process exit commit what is pending.

The result journal. For calls that carry a job id the engine also passes the finished
:class:`~llm.executor.Executed`; the journal keeps ``request_id -> (ledger row, result)``
as Parquet part files under ``<directory>/_journal/`` (written atomically, before the
ledger part of the same commit). It is read back when the actor starts, so
:meth:`lookup` still answers after a restart and a rerun of a job gets its finished
answers without paying the provider again. A journal entry whose ledger row never made it
to disk (a crash between the two files) has its row re-appended at start.

Deduplication by request id, also across restarts, is :class:`LedgerWriter`'s.
This class is plain Python; :mod:`actors.factory` turns it into a Ray actor.
"""

from __future__ import annotations

import asyncio
import atexit
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm.executor import Executed
from runtime.ledger_store import LedgerRecord, LedgerWriter, read_ledger
from runtime.parquet_files import new_part_path, write_parquet_atomically

JOURNAL_DIR = "_journal"
_JOURNAL_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
        pa.field("result", pa.string(), nullable=False),
    ]
)
_ZERO = Decimal(0)


class LedgerActor:
    """Hosts the :class:`LedgerWriter` of ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        commit_interval_s: float = 0.1,
        max_batch: int = 500,
    ) -> None:
        self.directory = Path(directory)
        self.commit_interval_s = commit_interval_s
        self.max_batch = max_batch
        self._writer = LedgerWriter(self.directory, max_rows=max_batch)
        self._journal_dir = self.directory / JOURNAL_DIR
        self._journal: dict[str, str] = {}
        self._journal_pending: list[dict[str, str]] = []
        self._commit: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._heal_from_journal()
        atexit.register(self._final_flush)

    # ------------------------------------------------------------------ writing

    async def record(
        self,
        records: Iterable[LedgerRecord | Mapping[str, Any]],
        results: Mapping[str, Executed] | None = None,
    ) -> list[str]:
        """Append ``records`` (and journal ``results`` by request id); return once durable.

        Returns the ids newly accepted; ids already in the ledger are dropped silently.
        """
        rows = [
            r if isinstance(r, LedgerRecord) else LedgerRecord.model_validate(r) for r in records
        ]
        accepted = self._writer.append(rows)
        self._add_journal(rows, accepted, results or {})
        if all(self._writer.is_durable(row.request_id) for row in rows):
            return accepted
        commit = self._next_commit()
        if self._writer.pending_count >= self.max_batch:
            self._commit_now()
        await asyncio.shield(commit)
        return accepted

    async def flush(self) -> int:
        """Commit whatever is pending now; return how many ledger rows that wrote."""
        pending = self._writer.pending_count
        if pending or self._journal_pending:
            commit = self._next_commit()
            self._commit_now()
            await asyncio.shield(commit)
        return pending

    def _add_journal(
        self, rows: list[LedgerRecord], accepted: list[str], results: Mapping[str, Executed]
    ) -> None:
        fresh = set(accepted)
        for row in rows:
            result = results.get(row.request_id)
            if result is None or row.request_id not in fresh or row.request_id in self._journal:
                continue
            self._journal_pending.append(
                {
                    "request_id": row.request_id,
                    "job_id": row.job_id,
                    "record": row.model_dump_json(round_trip=True),
                    "result": Executed.model_validate(result).model_dump_json(round_trip=True),
                }
            )

    def _next_commit(self) -> asyncio.Future[None]:
        if self._commit is None:
            loop = asyncio.get_running_loop()
            self._commit = loop.create_future()
            self._timer = loop.call_later(self.commit_interval_s, self._commit_now)
        return self._commit

    def _commit_now(self) -> None:
        commit, self._commit = self._commit, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self._write_pending()
        except Exception as error:  # the rows stay pending and go with the next commit
            if commit is not None and not commit.done():
                commit.set_exception(error)
            return
        if commit is not None and not commit.done():
            commit.set_result(None)

    def _write_pending(self) -> None:
        entries, self._journal_pending = self._journal_pending, []
        if entries:
            try:
                table = pa.Table.from_pylist(entries, schema=_JOURNAL_SCHEMA)
                write_parquet_atomically(table, new_part_path(self._journal_dir))
            except BaseException:
                self._journal_pending = entries + self._journal_pending
                raise
            self._journal.update({e["request_id"]: e["result"] for e in entries})
        self._writer.flush()

    def _final_flush(self) -> None:
        try:
            self._write_pending()
        except Exception:  # at interpreter exit there is no one left to tell
            pass

    def _heal_from_journal(self) -> None:
        missing: list[LedgerRecord] = []
        for path in sorted(self._journal_dir.glob("part-*.parquet")):
            for entry in pq.read_table(path).to_pylist():
                self._journal[entry["request_id"]] = entry["result"]
                if not self._writer.is_durable(entry["request_id"]):
                    missing.append(LedgerRecord.model_validate_json(entry["record"]))
        if missing:
            self._writer.append(missing, durable=True)

    # ------------------------------------------------------------------ reading

    async def lookup(self, request_ids: list[str]) -> dict[str, Executed]:
        """The journaled results of those ``request_ids`` that have one."""
        found = {rid: self._journal[rid] for rid in request_ids if rid in self._journal}
        return {rid: Executed.model_validate_json(payload) for rid, payload in found.items()}

    async def totals(self, job_id: str | None = None) -> dict[str, Any]:
        """Requests, errors, tokens, exact cost and per-model figures (of one job, or all)."""
        await self.flush()
        return ledger_summary(read_ledger(self.directory), job_id=job_id)

    def durable_count(self) -> int:
        """How many distinct request ids the ledger holds on disk."""
        return len(read_ledger(self.directory).column("request_id").unique())

    def pending_count(self) -> int:
        return self._writer.pending_count

    async def shutdown(self) -> None:
        """Commit what is pending; call before killing the actor."""
        await self.flush()


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
