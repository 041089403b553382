"""What a reader of the ledger sees: the Parquet part files plus rows journaled but not yet there.

A ledger row is acknowledged once its line is in the journal (:mod:`runtime.journal_log`);
the LedgerActor copies journaled rows to Parquet about a second later, at every
``flush()``, and before a program that used the runtime ends. In between, a plain Parquet
reader (DuckDB, pandas) sees the ledger a little short. :func:`scan_complete` does not: it
yields the part files and then the journaled rows that no part file holds yet, each
request id once. Every reader this project ships (``python -m jobs.costs``, the batch job's
end-of-job report, :meth:`LedgerActor.totals`) goes through it.

Order matters under a running LedgerActor, which may write a part file and then remove the
journal segment it came from at any moment: the journal is read first, the part files
after, so a row is always found in at least one of the two. Memory is one part file plus the
journaled rows not yet compacted away (the work in flight), never the whole ledger.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from runtime.journal_log import JOURNAL_DIR, LEGACY_GLOB, SEGMENT_GLOB
from runtime.ledger_store import LEDGER_SCHEMA, LedgerRecord, part_names, scan_ledger

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_TOKEN_SUMS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "total_tokens")


def journal_records(journal_dir: str | os.PathLike[str]) -> Iterator[LedgerRecord]:
    """Every readable ledger row of the journal, oldest segment first, streamed line by line
    (results are not parsed). A torn last line (no newline) is skipped."""
    for record, _ in _journal_rows(Path(journal_dir)):
        yield record


def _journal_rows(directory: Path) -> Iterator[tuple[LedgerRecord, tuple[str, int] | bytes]]:
    """Each journaled row, parsed, with where to read it again: (segment name, byte offset)
    of its line, or for a legacy Parquet journal part its JSON text."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(LEGACY_GLOB)):
        try:
            texts = pq.read_table(path, columns=["record"]).column("record").to_pylist()
        except OSError:
            continue  # compacted away meanwhile
        for text in texts:
            try:
                yield LedgerRecord.model_validate_json(text), text.encode()
            except ValidationError:
                continue
    for path in sorted(directory.glob(SEGMENT_GLOB)):
        record = _segment_rows(path)
        yield from record


def _segment_rows(path: Path) -> Iterator[tuple[LedgerRecord, tuple[str, int]]]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return  # compacted away since the listing: its rows are in Parquet
    offset = 0
    with handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                return  # a line still being written, or torn by a kill
            text, sep, _ = raw.partition(b"\t")
            if sep:
                try:
                    yield LedgerRecord.model_validate_json(text), (path.name, offset)
                except ValidationError:
                    logger.warning("skipping an unreadable line of journal %s", path.name)
            offset += len(raw)


def _reread(directory: Path, where: tuple[str, int] | bytes) -> LedgerRecord | None:
    """The row at ``where`` again; None if its segment has been compacted away since."""
    if isinstance(where, bytes):
        return LedgerRecord.model_validate_json(where)
    name, offset = where
    try:
        with (directory / name).open("rb") as handle:
            handle.seek(offset)
            text = handle.readline().partition(b"\t")[0]
    except FileNotFoundError:
        return None
    return LedgerRecord.model_validate_json(text)


def scan_complete(
    directory: str | os.PathLike[str],
    *,
    columns: Iterable[str] | None = None,
    job_id: str | None = None,
    since: datetime | None = None,
) -> Iterator[pa.Table]:
    """Like :func:`runtime.ledger_store.scan_ledger` (one part file at a time, only
    ``columns``, only ``job_id``, from ``since`` on), followed by the journaled rows that no
    part file holds yet; each request id once. See the module docstring.

    Memory: a request id and a line position per journaled row, one part file at a time.
    A row whose segment is compacted away while this runs was written to a part file
    first; part files that appeared during the scan are then read for such rows.
    """
    wanted = list(columns) if columns is not None else LEDGER_SCHEMA.names
    journal = Path(directory) / JOURNAL_DIR
    pending: dict[str, tuple[str, int] | bytes] = {}
    for record, where in _journal_rows(journal):  # the journal first, then the parts
        if job_id is not None and record.job_id != job_id:
            continue
        if since is not None and record.ts < since:
            continue
        pending.setdefault(record.request_id, where)
    with_id = wanted if "request_id" in wanted else [*wanted, "request_id"]
    seen_parts = set(part_names(directory))
    for table in scan_ledger(directory, columns=with_id, job_id=job_id, since=since):
        if pending:
            for rid in table.column("request_id").to_pylist():
                pending.pop(rid, None)
        yield table.select(wanted)
    rows, gone = [], set()
    for rid, where in pending.items():
        record = _reread(journal, where)
        if record is None:
            gone.add(rid)
        else:
            rows.append(record.to_row())
    if rows:
        yield pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA).select(wanted)
    if gone:  # compacted meanwhile: their part file is newer than the scan's listing
        for table in scan_ledger(
            directory, columns=with_id, job_id=job_id, since=since, skip=seen_parts
        ):
            mask = pc.is_in(table["request_id"], pa.array(sorted(gone), pa.string()))
            found = table.filter(mask)
            if found.num_rows:
                gone.difference_update(found.column("request_id").to_pylist())
                yield found.select(wanted)


def read_complete(directory: str | os.PathLike[str], *, job_id: str | None = None) -> pa.Table:
    """The whole ledger as one table, journaled rows included (for small ledgers and tests)."""
    tables = list(scan_complete(directory, job_id=job_id))
    return pa.concat_tables(tables) if tables else LEDGER_SCHEMA.empty_table()


def summarize(tables: Iterable[pa.Table]) -> dict[str, Any]:
    """Requests, errors, token sums, exact cost and per-model figures of ``tables``,
    accumulated table by table (memory: one table)."""
    counts = dict.fromkeys(("requests", "errors", *_TOKEN_SUMS), 0)
    money = dict.fromkeys(("total_cost", "cache_savings"), _ZERO)
    by_model: dict[str, dict[str, Any]] = {}
    for table in tables:
        if not table.num_rows:
            continue
        ok = pc.sum(pc.equal(table["status"], "ok")).as_py() or 0
        counts["requests"] += table.num_rows
        counts["errors"] += table.num_rows - ok
        for name in _TOKEN_SUMS:
            counts[name] += pc.sum(table[name]).as_py() or 0
        for name in money:
            money[name] += pc.sum(table[name]).as_py() or _ZERO
        grouped = table.group_by("model").aggregate(
            [("model", "count"), ("total_tokens", "sum"), ("total_cost", "sum")]
        )
        for row in grouped.to_pylist():
            entry = by_model.setdefault(
                row["model"], {"requests": 0, "total_tokens": 0, "total_cost": _ZERO}
            )
            entry["requests"] += row["model_count"]
            entry["total_tokens"] += row["total_tokens_sum"] or 0
            entry["total_cost"] += row["total_cost_sum"] or _ZERO
    return {**counts, **money, "by_model": by_model}
