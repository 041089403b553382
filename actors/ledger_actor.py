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
restart, so a rerun of a job gets its finished answers without paying the provider again.

Memory is flat in the number of rows: nothing is kept per row. The on-disk index
(:mod:`runtime.ledger_index`) knows every request id (dedup across segments and restarts:
first row wins), where each journaled result is (a lookup reads that one line back), and
which part file each row went to, recorded before the file is written, so that after a kill
exactly the rows whose part never appeared are written again, and none twice.

This class is plain Python; :mod:`actors.factory` turns it into a Ray actor.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from llm.executor import Executed
from runtime.journal_log import (
    JOURNAL_DIR,
    LEGACY_GLOB,
    SEGMENT_GLOB,
    GroupCommit,
    JournalEntry,
    JournalLog,
    JournalTail,
    lock_sealed,
    read_entry,
    remove_abandoned_openings,
)
from runtime.ledger_index import LedgerIndex, Located
from runtime.ledger_store import LedgerRecord, LedgerWriter
from runtime.ledger_view import scan_complete, summarize
from runtime.metrics import get_metrics
from runtime.parquet_files import fsync_directory

logger = logging.getLogger(__name__)

__all__ = ["JOURNAL_DIR", "LedgerActor", "ledger_summary"]

#: How much journal one read takes at most (a restart after a long outage reads in steps).
READ_CHUNK_BYTES = 16 << 20
#: Results not released by then (the job was abandoned, or never said it finished) go.
RESULT_TTL_S = 7 * 24 * 3600.0


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
        compact_interval_s: float = 10.0,
        result_ttl_s: float = RESULT_TTL_S,
    ) -> None:
        self.directory = Path(directory)
        self.journal_dir = self.directory / JOURNAL_DIR
        self.flush_interval_s = flush_interval_s
        self.poll_interval_s = poll_interval_s
        self.max_batch = max_batch
        self._writer = LedgerWriter(self.directory, max_rows=max_batch, track_durable=False)
        self._index = LedgerIndex(self.directory)
        self._log = JournalLog(self.journal_dir)
        self._commit = GroupCommit(
            self._log, commit_interval_s=commit_interval_s, max_batch=max_batch
        )
        self._tail = JournalTail(self.journal_dir, self._index.read_offsets())
        self._tail_lock: asyncio.Lock | None = None
        self._reads_started = 0
        self._writing: asyncio.Task[int] | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._poller: asyncio.Task[None] | None = None
        self._compact_log = JournalLog(self.journal_dir)
        self._compact_lock: asyncio.Lock | None = None
        self.compact_interval_s = compact_interval_s
        self.result_ttl_s = result_ttl_s
        self._heal_from_journal()
        atexit.register(self._final_flush)

    # ------------------------------------------------------------------ the journal

    def _journaled(self, entries: list[JournalEntry]) -> None:
        """Index journaled entries; rows new to the ledger go to the Parquet writer."""
        if not entries:
            return
        touched = {e.where[0] for e in entries if e.where is not None}
        offsets = {name: self._tail.offsets[name] for name in touched if name in self._tail.offsets}
        new = set(
            self._index.add(
                (
                    (e.request_id, e.record.job_id, *e.where, e.result_json is not None)
                    for e in entries
                    if e.where is not None
                ),
                offsets,
            )
        )
        self._writer.append(e.record for e in entries if e.request_id in new)

    def _records_at(self, located: Iterable[Located]) -> list[LedgerRecord]:
        records = []
        for where in located:
            try:
                records.append(read_entry(self.journal_dir, _where(where)).record)
            except (OSError, ValueError):
                logger.warning("a pending ledger row could not be read back from the journal")
        return records

    async def catch_up(self) -> int:
        """Read what the journal segments gained; return how many entries that was.

        Concurrent callers share reads: a read that began after this call did (while it
        waited for the lock) has seen everything durable when this call was made.
        """
        self._ensure_polling()
        if self._tail_lock is None:
            self._tail_lock = asyncio.Lock()
        asked_after = self._reads_started
        total = 0
        async with self._tail_lock:
            if self._reads_started > asked_after:
                return 0
            self._reads_started += 1
            while True:
                entries = await asyncio.to_thread(self._tail.read_new, max_bytes=READ_CHUNK_BYTES)
                if not entries:
                    break
                self._journaled(entries)
                total += len(entries)
                self._schedule_write()
        return total

    def _ensure_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        next_compaction = loop.time() + self.compact_interval_s
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.catch_up()
                if loop.time() >= next_compaction:
                    next_compaction = loop.time() + self.compact_interval_s
                    await self.compact()
            except Exception as error:  # e.g. a disk hiccup: tried again next round
                logger.warning("following the ledger journal failed (%s)", type(error).__name__)
            writer = self._writer
            get_metrics().ledger_state(
                pending_rows=writer.pending_count, lag_s=writer.pending_age_s
            )

    def _heal_from_journal(self) -> None:
        """At start: rows a kill left out of Parquet, then the journal not yet indexed."""
        self._writer.append(self._records_at(self._index.pending()))
        while True:
            if self._writer.pending_count >= self.max_batch:
                self._write_now()
            entries = self._tail.read_new(max_bytes=READ_CHUNK_BYTES)
            if not entries:
                break
            self._journaled(entries)
        self._write_now()

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
        known = self._index.known([row.request_id for row in rows])
        accepted = []
        for row in rows:
            rid = row.request_id
            if rid in known:
                continue
            if self._commit.add(JournalEntry.of_call(row, results.get(rid))):
                accepted.append(rid)
        await self._commit.commit([row.request_id for row in rows])
        await self.catch_up()  # index them now: a duplicate sent next is dropped
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

    def _begin_part(self) -> tuple[dict[str, LedgerRecord], Path]:
        """Take the pending rows and record, before writing, which part file gets them."""
        batch = self._writer.take_batch()
        path = self._writer.part_path(batch)
        if batch:
            try:
                self._index.assign_part(path.name, list(batch))
            except BaseException:
                self._writer.settle_batch(batch, written=False)
                raise
        return batch, path

    def _end_part(self, batch: dict[str, LedgerRecord], path: Path, written: bool) -> None:
        self._writer.settle_batch(batch, written=written)
        if batch:
            if written:
                self._index.part_written(path.name)
            else:
                self._index.part_failed(path.name)

    def _write_now(self) -> None:
        """Write what is pending, blocking (at start and at exit)."""
        batch, path = self._begin_part()
        written = False
        try:
            self._writer.write_batch(batch)
            written = True
            get_metrics().ledger_written(len(batch))
        finally:
            self._end_part(batch, path, written)

    async def _write_parquet(self) -> int:
        """Write the pending rows as one part file, in a worker thread."""
        written = False
        batch: dict[str, LedgerRecord] = {}
        try:
            batch, path = self._begin_part()
            try:
                await asyncio.to_thread(self._writer.write_batch, batch)
                written = True
                get_metrics().ledger_written(len(batch))
            except Exception as error:  # the rows stay pending (and journaled): retried later
                logger.warning("ledger part write failed (%s); will retry", type(error).__name__)
            self._end_part(batch, path, written)
        finally:
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
            while entries := self._tail.read_new(max_bytes=READ_CHUNK_BYTES):
                self._journaled(entries)
            if self._writing is None:
                self._write_now()
        except Exception:  # at interpreter exit there is no one left to tell
            pass

    # ------------------------------------------------------------------ reading

    def _results_of(self, request_ids: list[str]) -> dict[str, Executed]:
        found = {}
        for where in self._index.results(request_ids):
            try:
                entry = read_entry(self.journal_dir, _where(where))
            except (OSError, ValueError):
                continue
            if entry.result_json is not None:
                found[where.request_id] = Executed.model_validate_json(entry.result_json)
        return found

    async def lookup(self, request_ids: list[str]) -> dict[str, Executed]:
        """The journaled results of those ``request_ids`` that have one."""
        request_ids = list(request_ids)
        found = self._results_of(request_ids)
        if len(found) < len(request_ids):
            await self.catch_up()
            found = self._results_of(request_ids)
        return found

    async def release(self, request_ids: list[str]) -> int:
        """The job's output now holds these results: a rerun will not ask for them, so the
        journal may drop them. Returns how many were newly released."""
        await self.catch_up()  # their lines may not have been read yet
        return self._index.release(list(request_ids))

    async def finish_job(self, job_id: str) -> int:
        """Every result of ``job_id`` may go (the job is done). Returns how many."""
        await self.catch_up()
        return self._index.release_job(job_id)

    # ------------------------------------------------------------------ compaction

    async def compact(self) -> dict[str, int]:
        """Remove or shrink sealed journal segments whose rows are all in Parquet.

        A segment is *sealed* when no writer holds its lock (:func:`lock_sealed`); its lock
        is held here until it is dealt with. Its rows are written to Parquet first (a
        ``flush``). Then, if none of its results is still needed (each one released, i.e.
        in its job's output, of a finished job, or journaled more than ``result_ttl_s`` ago
        (7 days);
        rows of calls outside a job have none),
        it is deleted. If at most half its entries still are, those are copied to a
        segment of this actor's (fsynced), the index is pointed at the copies and then the
        segment is deleted. Otherwise it is kept for a later round. A kill between any two
        steps loses nothing: the index points at a file that exists, and a segment with no
        indexed entry left is simply deleted next time. Returns counts of what was done.
        """
        if self._compact_lock is None:
            self._compact_lock = asyncio.Lock()
        done = {"removed": 0, "rewritten": 0, "kept": 0, "busy": 0}
        async with self._compact_lock:
            remove_abandoned_openings(self.journal_dir)
            held: list[tuple[Path, BinaryIO | None]] = []
            try:
                for path in sorted(self.journal_dir.glob(LEGACY_GLOB)):
                    held.append((path, None))  # legacy parts have no writer
                for path in sorted(self.journal_dir.glob(SEGMENT_GLOB)):
                    handle = lock_sealed(path)
                    if handle is None:
                        done["busy"] += 1
                    else:
                        held.append((path, handle))
                if not held:
                    return done
                await self.flush()  # reads every sealed segment to its end, writes Parquet
                self._index.release_older_than(time.time() - self.result_ttl_s)
                for path, _ in held:
                    outcome = await self._compact_one(path)
                    done[outcome] += 1
            finally:
                for _, handle in held:
                    if handle is not None:
                        handle.close()
        return done

    async def _compact_one(self, path: Path) -> str:
        state = self._index.segment_state(path.name)
        if state.in_parquet < state.entries:
            return "kept"  # rows still on their way to Parquet: next round
        moved: list[tuple[str, str, int, int]] = []
        if state.live:
            if state.live * 2 > state.entries:
                return "kept"  # mostly live: copying would gain little
            live = [read_entry(self.journal_dir, _where(w)) for w in self._index.live_in(path.name)]
            lines = [JournalEntry(e.record, e.result_json).line() for e in live]
            segment, start = await asyncio.to_thread(self._compact_log.append, lines)
            for entry, line in zip(live, lines, strict=True):
                size = len(line.encode())
                moved.append((entry.request_id, segment, start, size))
                start += size
        # From here to the unlink nothing awaits: a lookup sees the old place or the new.
        self._index.move(moved, path.name)
        self._tail.offsets.pop(path.name, None)
        path.unlink(missing_ok=True)
        fsync_directory(self.journal_dir)
        return "rewritten" if moved else "removed"

    async def totals(self, job_id: str | None = None) -> dict[str, Any]:
        """Requests, errors, tokens, exact cost and per-model figures (of one job, or all)."""
        await self.flush()
        tables = scan_complete(self.directory, job_id=job_id)
        return await asyncio.to_thread(summarize, tables)

    def pending_count(self) -> int:
        """Rows given to :meth:`record` and not yet acknowledged (waiting for the journal)."""
        return self._commit.pending_count

    async def aclose(self) -> None:
        """Write what is pending and stop following the journal."""
        await self.flush()
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._log.close()
        self._compact_log.close()


def _where(located: Located) -> tuple[str, int, int]:
    return located.segment, located.start, located.length


def ledger_summary(table: pa.Table, *, job_id: str | None = None) -> dict[str, Any]:
    """Totals of a ledger table, optionally of one job; costs are exact Decimals."""
    if job_id is not None:
        table = table.filter(pc.equal(table["job_id"], job_id))
    return summarize([table])
