"""Where the engine writes ledger rows and journals results: the :class:`LedgerSink` seam.

The :class:`~runtime.engine.ProviderEngine` awaits :meth:`LedgerSink.record` before it
returns a result, so a sink must not return until the row is durable (a provider actor's
:class:`~runtime.journal_sink.JournalLedgerSink` returns once the row's line in its journal
segment is fsynced; see :mod:`runtime.journal_log`). For calls of a batch job the engine also passes the
:class:`~llm.executor.Executed` result, which the sink journals so that a rerun of the same
``request_id`` is answered by :meth:`LedgerSink.lookup` instead of a second, billed call.

:class:`MemoryLedger` keeps both in memory, for tests and the in-process runtime; it dedups by
``request_id`` the way :class:`~runtime.ledger_store.LedgerWriter` does (first row wins).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol, runtime_checkable

from llm.executor import Executed
from runtime.ledger_record import LedgerRecord


@runtime_checkable
class LedgerSink(Protocol):
    """Durable cost rows plus a result journal, keyed by request id."""

    async def record(self, record: LedgerRecord, result: Executed | None = None) -> None:
        """Store ``record`` (and journal ``result`` when given); return once durable."""
        ...

    async def lookup(self, request_ids: list[str]) -> dict[str, Executed]:
        """Journaled results of those ``request_ids`` that have one."""
        ...


class MemoryLedger:
    """An in-memory :class:`LedgerSink`: one row per request id, results journaled."""

    def __init__(self) -> None:
        self._records: dict[str, LedgerRecord] = {}
        self._results: dict[str, Executed] = {}
        self.duplicates = 0

    async def record(self, record: LedgerRecord, result: Executed | None = None) -> None:
        """Keep the first row of each request id; later ones are counted and dropped."""
        if record.request_id in self._records:
            self.duplicates += 1
            return
        self._records[record.request_id] = record
        if result is not None:
            self._results[record.request_id] = result

    async def lookup(self, request_ids: list[str]) -> dict[str, Executed]:
        """The journaled results among ``request_ids``."""
        return {rid: self._results[rid] for rid in request_ids if rid in self._results}

    @property
    def records(self) -> list[LedgerRecord]:
        """Every stored row, in arrival order."""
        return list(self._records.values())

    def billed(self) -> list[LedgerRecord]:
        """The rows of calls that were answered (status ``ok``)."""
        return [record for record in self._records.values() if record.status == "ok"]

    def total_cost(self) -> Decimal:
        """Sum of ``total_cost`` over all rows."""
        return sum((record.total_cost for record in self._records.values()), Decimal(0))
