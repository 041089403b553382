"""The production :class:`~runtime.ledger_sink.LedgerSink`: a journal segment, fsynced.

A provider actor's engine writes its ledger rows through :class:`JournalLedgerSink`: each
row (and, for a batch job's call, its result) is appended to this process's own segment of
the ledger's journal (:mod:`runtime.journal_log`) and acknowledged once fsynced; the
LedgerActor reads the segments and writes the rows to Parquet. It lives with the ledger
(journal, store, sink) rather than with the actor that hosts it; the actor only builds one.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llm.executor import Executed
from runtime.journal_log import GroupCommit, JournalEntry, JournalLog
from runtime.ledger_record import LedgerRecord


class JournalLedgerSink:
    """The engine's :class:`~runtime.ledger_sink.LedgerSink` in a provider actor.

    :meth:`record` appends the row (and the result to journal) to this actor's own segment
    of the ledger's journal and returns once it is fsynced; concurrent calls share one write.
    The LedgerActor reads the segment and writes the rows to Parquet. :meth:`lookup` asks the
    LedgerActor, which reads the journal first, so a row acknowledged here is always found.
    """

    def __init__(
        self, journal_dir: str | os.PathLike[str], name: str, namespace: str, **commit: Any
    ) -> None:
        self.name = name
        self.namespace = namespace
        self._commit = GroupCommit(JournalLog(journal_dir), **commit)
        self._handle: Any = None
        self._queued: list[tuple[list[str], asyncio.Future[dict[str, Executed]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def _actor(self) -> Any:
        if self._handle is None:
            import ray

            self._handle = ray.get_actor(self.name, namespace=self.namespace)
        return self._handle

    async def record(self, record: LedgerRecord, result: Executed | None = None) -> None:
        """Journal one ledger row (and the result); return once it is on disk."""
        self._commit.add(JournalEntry.of_call(record, result))
        await self._commit.commit([record.request_id])

    async def lookup(self, request_ids: list[str]) -> dict[str, Executed]:
        """Journaled results of ``request_ids`` (asked together with concurrent lookups)."""
        ids = list(request_ids)
        if not ids:
            return {}
        future: asyncio.Future[dict[str, Executed]] = asyncio.get_running_loop().create_future()
        self._queued.append((ids, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._send_lookups())
        return await future

    async def _send_lookups(self) -> None:
        """Send the queued lookups, one Ray call at a time, until none is left."""
        await asyncio.sleep(0)  # the lookups of this turn of the loop go together
        while self._queued:
            batch, self._queued = self._queued, []
            wanted = sorted({rid for ids, _ in batch for rid in ids})
            try:
                found = await self._actor().lookup.remote(wanted)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as error:  # every waiter of this round trip gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for ids, future in batch:
                if not future.done():
                    future.set_result({rid: found[rid] for rid in ids if rid in found})

    @property
    def pending_count(self) -> int:
        """Rows not yet on disk (their calls are not answered yet)."""
        return self._commit.pending_count

    async def aclose(self) -> None:
        """Write what is queued and close the segment (a later row opens a new one)."""
        await self._commit.commit()
        self._commit.log.close()
