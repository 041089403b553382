"""The ledger's write-ahead journal: append-only, fsynced segment files of (row, result) pairs.

A ledger row is acknowledged once its journal line is on disk; Parquet part files are
written later, in large batches, by the LedgerActor from rows already journaled. So
acknowledging a row costs one ``fsync`` shared by every row committed with it (well under
a millisecond here), no Ray call and no Parquet file, and the ledger itself stays a few large
part files however fast rows arrive.

Layout: ``<ledger>/_journal/wal-<UTC time>-<uuid>.jsonl``. Every writer (each provider
actor, the LedgerActor, each start of either) appends to a segment of its own; the
LedgerActor follows all of them (:class:`JournalTail`). One line per request::

    <LedgerRecord JSON> TAB <Executed JSON, or empty>

JSON text never holds a raw tab or newline, so the split is unambiguous. A process killed in
the middle of a write can leave a torn last line in its segment; that line was never
acknowledged (the ``fsync`` comes after it) and readers skip it. Lines are never rewritten,
so a torn line can only be the last of a segment whose writer is gone.

Segments are sealed and compacted. A writer holds an exclusive ``flock`` on the segment it
appends to and closes it (seals it) at ``SEGMENT_MAX_BYTES`` (8 MiB), on ``close()`` or by
dying; it never reopens one. The LedgerActor removes a sealed segment once its rows are in
Parquet and its results are no longer needed, copying the few still needed elsewhere first
(:meth:`actors.ledger_actor.LedgerActor.compact`), so the journal holds the work in flight
rather than the ledger's history. It compacts every 10 s and when a driver's
:meth:`~actors.runtime.Runtime.shutdown` ends a job (right after the final flush, so it costs
an index query and an unlink per segment), so what a job leaves does not depend on the
timer: the provider actors' open segments (each sealed at 8 MiB, on close or when its actor
ends, and compacted in a later round) and the results a rerun may still ask for.

:class:`GroupCommit` batches concurrent appends: rows that arrive while a write is under
way go together in the next one (each waits for at most two ``fsync``).

Earlier versions wrote the journal as Parquet part files (``_journal/part-*.parquet`` with
``record`` and ``result`` columns); :class:`JournalTail` still reads those.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq
from pydantic import ValidationError

from llm.executor import Executed
from runtime.ledger_store import LedgerRecord
from runtime.parquet_files import fsync_directory

logger = logging.getLogger(__name__)

JOURNAL_DIR = "_journal"
SEGMENT_GLOB = "wal-*.jsonl"
LEGACY_GLOB = "part-*.parquet"
#: A writer closes its segment (seals it) once it holds this many bytes.
SEGMENT_MAX_BYTES = 8 << 20
_OPENING_PREFIX = ".opening-"


@dataclass(frozen=True)
class JournalEntry:
    """One journaled request: its ledger row and, for calls of a job, its result as JSON."""

    record: LedgerRecord
    result_json: str | None = None
    #: Where the line was read: (segment file name, byte offset, byte length); for a legacy
    #: Parquet journal part, (file name, row number, -1). None for an entry not read back.
    where: tuple[str, int, int] | None = field(default=None, compare=False)

    @classmethod
    def of_call(cls, record: LedgerRecord, result: Executed | None = None) -> JournalEntry:
        """The entry of one finished call: its row, and its result when it has one."""
        if result is None:
            return cls(record)
        return cls(record, Executed.model_validate(result).model_dump_json(round_trip=True))

    @property
    def request_id(self) -> str:
        return self.record.request_id

    def line(self) -> str:
        """The entry as one journal line (newline included)."""
        record = self.record.model_dump_json(round_trip=True)
        return f"{record}\t{self.result_json or ''}\n"

    @classmethod
    def parse(cls, line: str, where: tuple[str, int, int] | None = None) -> JournalEntry:
        """Read back a line written by :meth:`line`; raises ``ValueError`` on a torn one."""
        record, sep, result = line.rstrip("\n").partition("\t")
        if not sep:
            raise ValueError("journal line without a tab")
        try:
            parsed = LedgerRecord.model_validate_json(record)
        except ValidationError as error:
            raise ValueError(f"unreadable journal record: {error.error_count()} errors") from None
        return cls(parsed, result or None, where)


class JournalLog:
    """Appends lines to this writer's own segment under ``directory`` (created on first use).

    :meth:`append` is blocking (write, flush, fsync); call it from one thread at a time. The
    writer holds an exclusive ``flock`` on its open segment; a segment nobody holds locked is
    *sealed* (its writer closed it or died, and writers never reopen a segment), which is
    what lets the LedgerActor compact it (:func:`lock_sealed`). A segment is closed, and the
    next append opens a new one, once it has ``max_bytes``: every segment gets sealed in
    time, so the journal can shrink to the work in flight.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int = SEGMENT_MAX_BYTES
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._handle: BinaryIO | None = None
        self._size = 0
        self.path: Path | None = None
        self.lines_written = 0

    def _open(self) -> BinaryIO:
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            final = self.directory / f"wal-{stamp}-{uuid.uuid4().hex}.jsonl"
            # Locked under a hidden name first, so no compactor ever sees it unlocked.
            temp = self.directory / f"{_OPENING_PREFIX}{final.name}"
            handle = temp.open("ab")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                os.replace(temp, final)
            except BaseException:
                handle.close()
                temp.unlink(missing_ok=True)
                raise
            fsync_directory(self.directory)  # the new segment's name is durable too
            self.path, self._handle, self._size = final, handle, 0
        return self._handle

    def append(self, lines: Sequence[str]) -> tuple[str, int] | None:
        """Append ``lines`` and fsync; they are durable when this returns. Returns the
        segment's name and the byte offset the first line starts at (None for no lines).

        A failed append may have left part of a line in the segment. The segment is then
        given up (it ends in that torn line, which readers never return) and the next append
        opens a new one, so a retried line is never glued to the torn one.
        """
        if not lines:
            return None
        handle = self._open()
        assert self.path is not None
        where = (self.path.name, self._size)
        data = "".join(lines).encode()
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            self._handle = None
            with contextlib.suppress(OSError):
                handle.close()
            raise
        self.lines_written += len(lines)
        self._size += len(data)
        if self._size >= self.max_bytes:
            self.close()  # sealed: the next append starts a new segment
        return where

    def close(self) -> None:
        """Close (and so seal) the current segment."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


def lock_sealed(path: Path) -> BinaryIO | None:
    """An open handle holding ``path``'s lock if the segment is sealed (no writer has it
    open), else None. Keep the handle open while acting on the segment."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def remove_abandoned_openings(directory: Path) -> int:
    """Remove segments a kill left under their hidden opening name (empty, never used)."""
    removed = 0
    for path in directory.glob(f"{_OPENING_PREFIX}*"):
        handle = lock_sealed(path)
        if handle is not None:
            with handle:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


class JournalTail:
    """Reads what every segment under ``directory`` gained since the last :meth:`read_new`.

    Only whole lines are consumed: a line still being written is read on a later call, and a
    torn last line of a dead writer's segment is never returned. Call from one thread at a
    time. ``skip`` names a segment not to read (a writer's own, whose rows it already has).
    ``offsets`` (segment name -> bytes already read) resumes where an earlier tail stopped;
    :attr:`offsets` is kept current, and forgets segments that were removed.
    """

    def __init__(
        self, directory: str | os.PathLike[str], offsets: dict[str, int] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.offsets: dict[str, int] = dict(offsets or {})
        self._legacy_read: set[str] = set()

    def read_new(
        self, skip: Path | None = None, *, max_bytes: int | None = None
    ) -> list[JournalEntry]:
        """Entries appended since the previous call, oldest segment first; with
        ``max_bytes``, stop after about that much (call again for the rest)."""
        if not self.directory.is_dir():
            return []
        entries: list[JournalEntry] = []
        for path in sorted(self.directory.glob(LEGACY_GLOB)):
            if path.name not in self._legacy_read:
                self._legacy_read.add(path.name)
                entries.extend(_read_legacy_part(path))
        budget = max_bytes
        present = set()
        for path in sorted(self.directory.glob(SEGMENT_GLOB)):
            present.add(path.name)
            if path != skip and (budget is None or budget > 0):
                got, used = self._read_segment(path, budget)
                entries.extend(got)
                budget = None if budget is None else budget - used
        for name in set(self.offsets) - present:
            del self.offsets[name]
        return entries

    def _read_segment(self, path: Path, budget: int | None) -> tuple[list[JournalEntry], int]:
        offset = self.offsets.get(path.name, 0)
        try:
            if path.stat().st_size <= offset:
                return [], 0
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read() if budget is None else handle.read(max(budget, 1 << 20))
                if budget is not None and b"\n" not in data:
                    data += handle.read()  # one line longer than the budget: read it whole
        except FileNotFoundError:
            return [], 0
        whole = data.rfind(b"\n") + 1
        self.offsets[path.name] = offset + whole
        entries = []
        start = offset
        for raw in data[:whole].splitlines(keepends=True):
            try:
                entries.append(JournalEntry.parse(raw.decode(), (path.name, start, len(raw))))
            except (UnicodeDecodeError, ValueError):
                # Only whole lines are read and segments are never reopened, so a torn
                # write is never seen here: this line is damaged. Skip it, say so.
                logger.warning("skipping an unreadable line of journal %s", path.name)
            start += len(raw)
        return entries, whole


def read_entry(directory: str | os.PathLike[str], where: tuple[str, int, int]) -> JournalEntry:
    """The entry at ``where`` (see :attr:`JournalEntry.where`) under ``directory``."""
    name, start, length = where
    path = Path(directory) / name
    if length < 0:  # a row of a legacy Parquet journal part
        row = pq.read_table(path).slice(start, 1).to_pylist()[0]
        return JournalEntry(LedgerRecord.model_validate_json(row["record"]), row["result"], where)
    with path.open("rb") as handle:
        handle.seek(start)
        return JournalEntry.parse(handle.read(length).decode(), where)


def read_journal(directory: str | os.PathLike[str]) -> list[JournalEntry]:
    """Every readable entry under ``directory``, oldest segment first."""
    return JournalTail(directory).read_new()


def _read_legacy_part(path: Path) -> Iterator[JournalEntry]:
    for number, row in enumerate(pq.read_table(path).to_pylist()):
        record = LedgerRecord.model_validate_json(row["record"])
        yield JournalEntry(record, row["result"], (path.name, number, -1))


class GroupCommit:
    """Appends entries to a :class:`JournalLog` in groups; :meth:`commit` returns once durable.

    Entries added while a write is under way go in the next write. With
    ``commit_interval_s`` > 0 each write first waits that long for company (cut short once
    ``max_batch`` entries are waiting). ``on_durable`` is called, on the event loop, with each
    group once it is on disk. Writes run in a worker thread; use from one event loop.
    """

    def __init__(
        self,
        log: JournalLog,
        *,
        commit_interval_s: float = 0.0,
        max_batch: int = 2000,
        on_durable: Callable[[list[JournalEntry]], None] | None = None,
    ) -> None:
        self.log = log
        self.commit_interval_s = commit_interval_s
        self.max_batch = max_batch
        self._on_durable = on_durable
        self._waiting: dict[str, JournalEntry] = {}
        self._in_flight: set[str] = set()
        self._writing: asyncio.Task[None] | None = None
        self._full = asyncio.Event()

    @property
    def pending_count(self) -> int:
        """Entries added and not yet on disk."""
        return len(self._waiting) + len(self._in_flight)

    def is_pending(self, request_id: str) -> bool:
        return request_id in self._waiting or request_id in self._in_flight

    def add(self, entry: JournalEntry) -> bool:
        """Queue ``entry``; False if an entry of its request id is already waiting."""
        if self.is_pending(entry.request_id):
            return False
        self._waiting[entry.request_id] = entry
        if len(self._waiting) >= self.max_batch:
            self._full.set()
        return True

    async def commit(self, request_ids: Sequence[str] = ()) -> None:
        """Return once ``request_ids`` (default: everything queued now) are on disk."""
        wanted = list(request_ids) or [*self._waiting, *self._in_flight]
        while True:
            if any(rid in self._waiting for rid in wanted):
                if self._writing is None:
                    loop = asyncio.get_running_loop()
                    self._writing = loop.create_task(self._write_once())
            elif not any(rid in self._in_flight for rid in wanted):
                return
            assert self._writing is not None
            await asyncio.shield(self._writing)

    async def _write_once(self) -> None:
        try:
            if self.commit_interval_s > 0 and len(self._waiting) < self.max_batch:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.commit_interval_s)
            group, self._waiting = self._waiting, {}
            self._in_flight = set(group)
            if not group:
                return
            try:
                await asyncio.to_thread(self.log.append, [e.line() for e in group.values()])
            except BaseException:
                self._waiting = {**group, **self._waiting}
                raise
            if self._on_durable is not None:
                self._on_durable(list(group.values()))
        finally:
            self._in_flight = set()
            self._writing = None

    def commit_now(self) -> None:
        """Write what is queued, blocking (for process exit, when no loop may be running)."""
        group, self._waiting = self._waiting, {}
        self.log.append([entry.line() for entry in group.values()])
        if self._on_durable is not None:
            self._on_durable(list(group.values()))
