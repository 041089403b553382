"""The ledger's on-disk index: which request ids it holds, where each one's journal line is,
which Parquet part file it went to, and whether its job still needs its result.

The LedgerActor keeps nothing per row in memory: dedup, replay lookups and journal
compaction ask this index, an SQLite database at ``<ledger>/_index/ledger.sqlite3``
(``WAL`` mode, one writer: the LedgerActor). Memory stays SQLite's page cache (a few MiB)
however many rows the ledger has seen; on disk it costs about 150 bytes a row.

Tables::

    entries(request_id PK, job_id, segment, start, length, has_result, part, released)
    parts(name PK, done)                -- Parquet part files being or having been written
    segments(name PK, read_to)          -- how far each journal segment has been indexed

* ``segment/start/length`` locate the entry's journal line (NULL once the line was compacted
  away: the row is then in Parquet and its result no longer needed);
* ``part`` is the Parquet part file the row was given to. It is set, and the part recorded
  with ``done = 0``, *before* the file is written; ``done`` is set after. At start, a part not
  done whose file exists is marked done, and one whose file is missing (killed mid-write:
  part files appear atomically) gives its rows back as pending. So a row is in Parquet
  exactly when its part is done, without reading Parquet;
* ``released``: the job's own output holds the result (or the job finished, or the row is
  older than the LedgerActor's ``result_ttl_s``), so a rerun will not ask for it;
  compaction may drop its journal line.

A ledger written before this index existed is indexed on first start: the ``request_id``
column of every part file (one file at a time), then the whole journal.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

INDEX_DIR = "_index"
INDEX_FILE = "ledger.sqlite3"
_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    request_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    segment TEXT,
    start INTEGER,
    length INTEGER,
    has_result INTEGER NOT NULL,
    part TEXT,
    released INTEGER NOT NULL DEFAULT 0,
    ts REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_segment ON entries (segment) WHERE segment IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_pending ON entries (part) WHERE part IS NULL;
CREATE INDEX IF NOT EXISTS entries_job ON entries (job_id) WHERE released = 0;
CREATE INDEX IF NOT EXISTS entries_unreleased ON entries (ts) WHERE released = 0;
CREATE TABLE IF NOT EXISTS parts (name TEXT PRIMARY KEY, done INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (name TEXT PRIMARY KEY, read_to INTEGER NOT NULL)
    WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Located:
    """Where one entry's journal line is."""

    request_id: str
    segment: str
    start: int
    length: int


@dataclass(frozen=True)
class SegmentState:
    """What the index knows of one journal segment's entries."""

    entries: int
    in_parquet: int
    live: int  # results still needed: in the segment, with a result, not released


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class LedgerIndex:
    """See the module docstring. Not thread-safe: use from one thread at a time."""

    def __init__(self, ledger_dir: str | os.PathLike[str]) -> None:
        self.ledger_dir = Path(ledger_dir)
        (self.ledger_dir / INDEX_DIR).mkdir(parents=True, exist_ok=True)
        path = self.ledger_dir / INDEX_DIR / INDEX_FILE
        fresh = not path.exists()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a part assigned survives power loss
        self._db.execute("PRAGMA cache_size=-4096")  # 4 MiB
        self._db.executescript(_SCHEMA)
        if fresh:
            self._import_parts()
        self._settle_parts()

    # ------------------------------------------------------------------ start

    def _import_parts(self) -> None:
        """Index the request ids of every existing part file (a ledger from before)."""
        for path in sorted(self.ledger_dir.glob("part-*.parquet")):
            ids = pq.read_table(path, columns=["request_id"]).column("request_id").to_pylist()
            with self.transaction():
                self._db.execute("INSERT OR IGNORE INTO parts VALUES (?, 1)", (path.name,))
                self._db.executemany(
                    "INSERT OR IGNORE INTO entries (request_id, job_id, has_result, part,"
                    " released) VALUES (?, '', 0, ?, 1)",
                    ((rid, path.name) for rid in ids),
                )

    def _settle_parts(self) -> None:
        """Parts left unfinished by a kill: done if the file exists, else rows pending again."""
        rows = self._db.execute("SELECT name FROM parts WHERE done = 0").fetchall()
        for (name,) in rows:
            with self.transaction():
                if (self.ledger_dir / name).exists():
                    self._db.execute("UPDATE parts SET done = 1 WHERE name = ?", (name,))
                else:
                    self._db.execute("UPDATE entries SET part = NULL WHERE part = ?", (name,))
                    self._db.execute("DELETE FROM parts WHERE name = ?", (name,))

    def transaction(self) -> sqlite3.Connection:
        """``with index.transaction():`` groups statements into one atomic commit."""
        return _Transaction(self._db)  # type: ignore[return-value]

    # ------------------------------------------------------------------ the journal

    def read_offsets(self) -> dict[str, int]:
        """How far each segment has been indexed."""
        return dict(self._db.execute("SELECT name, read_to FROM segments").fetchall())

    def add(
        self,
        entries: Iterable[tuple[str, str, str, int, int, bool]],
        offsets: dict[str, int],
    ) -> list[str]:
        """Index journal entries ``(request_id, job_id, segment, start, length, has_result)``
        and the new read offsets of their segments, in one transaction (stamped with the
        time now, for ``release_older_than``). Returns the ids that were new (a request id
        seen before keeps its first entry)."""
        new: list[str] = []
        ts = time.time()
        with self.transaction():
            for rid, job_id, segment, start, length, has_result in entries:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO entries (request_id, job_id, segment, start, length,"
                    " has_result, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rid, job_id, segment, start, length, int(has_result), ts),
                )
                if cursor.rowcount:
                    new.append(rid)
                elif has_result:  # known only from a part file of before the index: link it
                    self._db.execute(
                        "UPDATE entries SET job_id = ?, segment = ?, start = ?, length = ?,"
                        " has_result = 1, released = 0"
                        " WHERE request_id = ? AND job_id = '' AND segment IS NULL",
                        (job_id, segment, start, length, rid),
                    )
            self._db.executemany(
                "INSERT INTO segments VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET read_to = excluded.read_to",
                offsets.items(),
            )
        return new

    def known(self, request_ids: Sequence[str]) -> set[str]:
        """Those of ``request_ids`` the ledger holds (journaled, in Parquet, or both)."""
        found: set[str] = set()
        for chunk in _chunks(request_ids):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT request_id FROM entries WHERE request_id IN ({marks})", chunk
            )
            found.update(rid for (rid,) in rows)
        return found

    def results(self, request_ids: Sequence[str]) -> list[Located]:
        """Where the journaled results of those of ``request_ids`` that have one are."""
        found: list[Located] = []
        for chunk in _chunks(request_ids):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT request_id, segment, start, length FROM entries WHERE request_id IN"
                f" ({marks}) AND has_result = 1 AND segment IS NOT NULL",
                chunk,
            )
            found.extend(Located(*row) for row in rows)
        return found

    def pending(self) -> list[Located]:
        """Entries not given to any part file yet (at start: what a kill left unwritten)."""
        rows = self._db.execute(
            "SELECT request_id, segment, start, length FROM entries"
            " WHERE part IS NULL AND segment IS NOT NULL"
        )
        return [Located(*row) for row in rows]

    # ------------------------------------------------------------------ Parquet

    def assign_part(self, name: str, request_ids: Sequence[str]) -> None:
        """Before writing part ``name``: it will hold ``request_ids``."""
        with self.transaction():
            self._db.execute("INSERT INTO parts VALUES (?, 0)", (name,))
            self._db.executemany(
                "UPDATE entries SET part = ? WHERE request_id = ?",
                ((name, rid) for rid in request_ids),
            )

    def part_written(self, name: str) -> None:
        self._db.execute("UPDATE parts SET done = 1 WHERE name = ?", (name,))

    def part_failed(self, name: str) -> None:
        """The write of ``name`` failed (no file): its rows are pending again."""
        with self.transaction():
            self._db.execute("UPDATE entries SET part = NULL WHERE part = ?", (name,))
            self._db.execute("DELETE FROM parts WHERE name = ?", (name,))

    # ------------------------------------------------------------------ releases, compaction

    def release(self, request_ids: Sequence[str]) -> int:
        """The job's output holds these results: a rerun will not ask for them."""
        changed = 0
        with self.transaction():
            for chunk in _chunks(request_ids):
                marks = ",".join("?" * len(chunk))
                cursor = self._db.execute(
                    f"UPDATE entries SET released = 1 WHERE request_id IN ({marks})"
                    " AND released = 0",
                    chunk,
                )
                changed += cursor.rowcount
        return changed

    def release_job(self, job_id: str) -> int:
        """The job is finished: none of its results will be asked for again."""
        cursor = self._db.execute(
            "UPDATE entries SET released = 1 WHERE job_id = ? AND released = 0", (job_id,)
        )
        return cursor.rowcount

    def release_older_than(self, ts: float) -> int:
        """Results indexed before ``ts`` (epoch seconds) are no longer kept: a job not rerun
        by then is taken as abandoned (or finished by a version that never said)."""
        cursor = self._db.execute(
            "UPDATE entries SET released = 1 WHERE released = 0 AND ts < ?", (ts,)
        )
        return cursor.rowcount

    def segment_state(self, segment: str) -> SegmentState:
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(p.done), 0),"
            " coalesce(sum(e.has_result = 1 AND e.released = 0), 0)"
            " FROM entries e LEFT JOIN parts p ON p.name = e.part WHERE e.segment = ?",
            (segment,),
        ).fetchone()
        return SegmentState(*row)

    def live_in(self, segment: str) -> list[Located]:
        """The entries of ``segment`` whose results are still needed."""
        rows = self._db.execute(
            "SELECT request_id, segment, start, length FROM entries WHERE segment = ?"
            " AND has_result = 1 AND released = 0",
            (segment,),
        )
        return [Located(*row) for row in rows]

    def move(self, moved: Iterable[tuple[str, str, int, int]], dropped_segment: str) -> None:
        """After a compaction: the live entries now live at ``moved`` (request_id, segment,
        start, length); every other entry of ``dropped_segment`` has no line any more."""
        with self.transaction():
            self._db.executemany(
                "UPDATE entries SET segment = ?, start = ?, length = ? WHERE request_id = ?",
                ((seg, start, length, rid) for rid, seg, start, length in moved),
            )
            self._db.execute(
                "UPDATE entries SET segment = NULL, start = NULL, length = NULL WHERE segment = ?",
                (dropped_segment,),
            )
            self._db.execute("DELETE FROM segments WHERE name = ?", (dropped_segment,))

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
