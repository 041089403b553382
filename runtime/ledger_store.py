"""The cost ledger on disk: one row per request, in Parquet part files, never duplicated.

A ledger directory holds files named ``part-<UTC time>-<uuid>.parquet``; each flush writes
one new file and never touches an old one. Query the whole directory with DuckDB
(``SELECT sum(total_cost) FROM 'llm-ledger/part-*.parquet'``), pandas
(``pd.read_parquet("llm-ledger")``) or :func:`read_ledger`.

Columns (:data:`LEDGER_SCHEMA`). Token counts follow the convention of :mod:`llm.types`.

=======================  ======================  =============================================
column                   type                    meaning
=======================  ======================  =============================================
request_id               string, unique          the runtime's id of the request (dedup key)
job_id                   string                  the batch job or session that sent it
row_id                   string, nullable        the input row of a batch job
ts                       timestamp[us, UTC]      when the request finished
provider                 string                  ``anthropic`` / ``openai`` / ``google``
model                    string                  the canonical model name asked for
api_model                string, nullable        the model id the provider answered with
status                   string                  ``ok`` (only answered, billed calls are written:
                                                 :mod:`runtime.engine`; files from before that
                                                 rule may hold the error type name here)
error_type               string, nullable        null (an error type name in such old files)
input_tokens             int64                   all prompt tokens, cache reads/writes included
output_tokens            int64                   all generated tokens, reasoning included
cached_tokens            int64                   prompt tokens read from the cache
cache_write_tokens       int64                   prompt tokens written to the cache
cache_write_1h_tokens    int64                   the part of those written with a 1-hour TTL
reasoning_tokens         int64                   output tokens spent on reasoning
total_tokens             int64                   input_tokens + output_tokens
input_cost               decimal128(20, 10)      USD for uncached prompt tokens
output_cost              decimal128(20, 10)      USD for output tokens
cache_read_cost          decimal128(20, 10)      USD for cache reads
cache_write_cost         decimal128(20, 10)      USD for cache writes
total_cost               decimal128(20, 10)      USD, the sum of the four costs above
cache_savings            decimal128(20, 10)      USD saved by cache reads vs. the plain rate
latency_s                float64                 seconds from send to last byte (all attempts)
attempts                 int32                   how many attempts the request took
streamed                 bool                    whether the answer was streamed
price_effective_from     date32, nullable        date of the dated price change that priced
                                                 the row (null: the model's undated rates)
tier                     string, nullable        service tier the row was billed at:
                                                 ``standard`` (online) or ``batch`` (provider
                                                 batch API); null in files written before
                                                 the column existed = ``standard``
=======================  ======================  =============================================

The ledger never holds prompt or response text, nor any key.

Durability. :meth:`LedgerWriter.flush` writes a temporary file in the same directory,
fsyncs it, renames it into place with ``os.replace`` and fsyncs the directory, so a part file
is either complete or absent. A call's row is acknowledged to its caller earlier, once its
line in the ledger's journal is fsynced (:mod:`runtime.journal_log`); the LedgerActor turns
journaled rows into part files with this writer. ``append(..., durable=True)`` flushes before
returning (the provider-batch job writes its rows this way). On start, the writer reads
the ``request_id`` column of every part file, so a record appended again after a restart is
dropped rather than written twice (unless ``track_durable=False``: the LedgerActor dedups
against its on-disk index instead, :mod:`runtime.ledger_index`, and keeps no id set in
memory). One writer per directory at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llm.pricing import TOKEN_COLUMNS
from runtime.ledger_record import LedgerRecord
from runtime.parquet_files import (
    TEMP_PREFIX,
    cost_fields,
    new_part_path,
    token_fields,
    write_parquet_atomically,
)

_ZERO = Decimal(0)
_PART_GLOB = "part-*.parquet"
_TMP_PREFIX = TEMP_PREFIX
_TMP_SUFFIX = ".parquet"
_STALE_TMP_S = 3600.0

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("row_id", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("provider", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("api_model", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        *token_fields((*TOKEN_COLUMNS, "total_tokens")),
        *cost_fields(),
        pa.field("latency_s", pa.float64(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("streamed", pa.bool_(), nullable=False),
        pa.field("price_effective_from", pa.date32()),
        pa.field("tier", pa.string()),
    ]
)


class LedgerWriter:
    """Buffers records and writes them as new Parquet part files. See the module docstring.

    Not thread-safe; use from one event loop (the LedgerActor's). File writes are blocking;
    to write off the loop, :meth:`take_batch` on the loop, :meth:`write_batch` in a worker
    thread, then :meth:`settle_batch` on the loop (rows of a batch being written still count
    as known, so an append meanwhile does not duplicate them).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_rows: int = 1000,
        flush_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        track_durable: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._pending: dict[str, LedgerRecord] = {}
        self._writing: set[str] = set()
        self._pending_since: float | None = None
        self._closed = False
        _remove_stale_temp_files(self.directory)
        # With track_durable=False the caller dedups against its own on-disk index (the
        # LedgerActor's): no set of every id ever written is loaded or kept in memory.
        self._track_durable = track_durable
        self._paths: dict[int, Path] = {}  # id of a batch being written -> its part file
        self._durable: set[str] = _durable_ids(self.directory) if track_durable else set()
        self.files_written = 0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def pending_age_s(self) -> float:
        """Seconds the oldest pending record has waited to be written (0 when none)."""
        since = self._pending_since
        return 0.0 if since is None else max(self._clock() - since, 0.0)

    def is_durable(self, request_id: str) -> bool:
        """True once a flush (by this or an earlier writer) has put ``request_id`` on disk."""
        return request_id in self._durable

    def knows(self, request_id: str) -> bool:
        """True if ``request_id`` is on disk, being written, or pending."""
        return (
            request_id in self._durable
            or request_id in self._pending
            or request_id in self._writing
        )

    def append(self, records: Iterable[LedgerRecord], *, durable: bool = False) -> list[str]:
        """Buffer new records; return the ids accepted (duplicates are dropped).

        With ``durable=True`` the buffer is flushed before returning, so every accepted id
        (and any earlier pending one) is on disk when this returns.
        """
        if self._closed:
            raise RuntimeError("ledger writer is closed")
        accepted = []
        for record in records:
            rid = record.request_id
            if self.knows(rid):
                continue
            self._pending[rid] = record
            accepted.append(rid)
        if accepted and self._pending_since is None:
            self._pending_since = self._clock()
        if durable:
            self.flush()
        return accepted

    def flush(self) -> list[str]:
        """Write all buffered records as one new part file; return the ids made durable."""
        batch = self.take_batch()
        written = False
        try:
            self.write_batch(batch)
            written = True
        finally:
            self.settle_batch(batch, written=written)
        return list(batch)

    def take_batch(self) -> dict[str, LedgerRecord]:
        """Move every pending record into a batch to write (see the class docstring)."""
        batch, self._pending = self._pending, {}
        self._pending_since = None
        self._writing.update(batch)
        return batch

    def part_path(self, batch: dict[str, LedgerRecord]) -> Path:
        """The part file :meth:`write_batch` will write ``batch`` to (chosen on first ask)."""
        path = self._paths.get(id(batch))
        if path is None:
            path = self._paths[id(batch)] = new_part_path(self.directory)
        return path

    def write_batch(self, batch: dict[str, LedgerRecord]) -> None:
        """Write ``batch`` as one new part file (:meth:`part_path`); touches no state, so any
        thread may call it."""
        if not batch:
            return
        rows = [record.to_row() for record in batch.values()]
        table = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
        path = self._paths.get(id(batch)) or new_part_path(self.directory)
        write_parquet_atomically(table, path)

    def settle_batch(self, batch: dict[str, LedgerRecord], *, written: bool) -> None:
        """After :meth:`write_batch`: mark ``batch`` durable, or put it back in front of
        the pending records when the write failed."""
        self._writing.difference_update(batch)
        self._paths.pop(id(batch), None)
        if written:
            if self._track_durable:
                self._durable.update(batch)
            self.files_written += 1 if batch else 0
        elif batch:
            self._pending = {**batch, **self._pending}
            if self._pending_since is None:
                self._pending_since = self._clock()

    def maybe_flush(self) -> list[str]:
        """Flush if ``max_rows`` are buffered or the oldest has waited ``flush_interval_s``."""
        if not self._pending:
            return []
        now = self._clock()
        waited = now - (now if self._pending_since is None else self._pending_since)
        if len(self._pending) >= self.max_rows or waited >= self.flush_interval_s:
            return self.flush()
        return []

    def close(self) -> list[str]:
        """Flush what is left; later appends raise."""
        ids = self.flush() if not self._closed else []
        self._closed = True
        return ids

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _part_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(_PART_GLOB)) if directory.is_dir() else []


def _durable_ids(directory: Path) -> set[str]:
    ids: set[str] = set()
    for path in _part_files(directory):
        column = pq.read_table(path, columns=["request_id"]).column("request_id")
        ids.update(column.to_pylist())
    return ids


def _remove_stale_temp_files(directory: Path) -> None:
    cutoff = time.time() - _STALE_TMP_S
    for path in directory.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass


def read_ledger(directory: str | os.PathLike[str]) -> pa.Table:
    """Every row of every part file, in :data:`LEDGER_SCHEMA` (empty if there are none)."""
    tables = [_conform(pq.read_table(path)) for path in _part_files(Path(directory))]
    return pa.concat_tables(tables) if tables else LEDGER_SCHEMA.empty_table()


def part_names(directory: str | os.PathLike[str]) -> list[str]:
    """The names of the ledger's part files now."""
    return [path.name for path in _part_files(Path(directory))]


def scan_ledger(
    directory: str | os.PathLike[str],
    *,
    columns: Iterable[str] | None = None,
    job_id: str | None = None,
    since: datetime | None = None,
    skip: Collection[str] = (),
) -> Iterator[pa.Table]:
    """The ledger one part file at a time, only ``columns``, only rows of ``job_id`` and
    from ``since`` on: memory stays bounded by one part file however large the ledger.
    ``skip`` names part files not to read."""
    wanted = list(columns) if columns is not None else LEDGER_SCHEMA.names
    needed = sorted(set(wanted) | {name for name, v in (("job_id", job_id), ("ts", since)) if v})
    for path in _part_files(Path(directory)):
        if path.name in skip:
            continue
        present = set(pq.read_schema(path).names)
        table = _conform(pq.read_table(path, columns=[c for c in needed if c in present]), needed)
        if job_id is not None:
            table = table.filter(pc.equal(table["job_id"], job_id))
        if since is not None:
            table = table.filter(pc.greater_equal(table["ts"], pa.scalar(since, table["ts"].type)))
        if table.num_rows:
            yield table.select(wanted)


def _conform(table: pa.Table, names: Iterable[str] | None = None) -> pa.Table:
    """Fit a part file to the current schema (columns missing from older files read null)."""
    fields = [LEDGER_SCHEMA.field(name) for name in names] if names else list(LEDGER_SCHEMA)
    columns = []
    for field in fields:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def ledger_totals(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Request, error and token counts, total cost and cache savings (exact Decimals)."""
    table = read_ledger(directory)
    ok = pc.sum(pc.equal(table["status"], "ok")).as_py() or 0
    totals: dict[str, Any] = {"requests": table.num_rows, "errors": table.num_rows - ok}
    for name in ("input_tokens", "output_tokens", "cached_tokens", "total_tokens"):
        totals[name] = pc.sum(table[name]).as_py() or 0
    for name in ("total_cost", "cache_savings"):
        value = pc.sum(table[name]).as_py()
        totals[name] = value if value is not None else _ZERO
    return totals
