"""Output of the batch job: a Parquet dataset written part by part, each id exactly once.

Layout of the output directory ``DIR``::

    DIR/part-<runid>-<seq>.parquet     the dataset: one row per input id
    DIR/_errors/part-….parquet         retryable failures of earlier runs (history only)
    DIR/_summary.json                  the last run's summary
    DIR/.tmp-part-….parquet            a part being written (deleted on the next start)

Read it with ``pyarrow.dataset.dataset(DIR)``, ``pandas.read_parquet(DIR)`` or DuckDB
(``SELECT * FROM 'DIR/part-*.parquet'``): files and folders starting with ``_`` or ``.`` are
ignored by all three.

Columns (:data:`OUTPUT_SCHEMA`; token counts follow :mod:`llm.types`):

====================  ===================  ===============================================
column                type                 meaning
====================  ===================  ===============================================
id                    string               the input row's id (``line-<n>`` if it had none)
job_id                string               the batch job
request_id            string               idempotency key: sha256(job_id/id)[:32]
model                 string, nullable     canonical model name (or what the row asked for)
provider              string, nullable     ``anthropic`` / ``openai`` / ``google``
status                string               ``ok`` or ``error``
text                  string, nullable     the answer text
structured_output     string, nullable     the parsed structured output, as JSON text
tool_calls            string, nullable     the tool calls ``[{id, name, arguments}]``, JSON
finish_reason         string, nullable     ``stop``, ``length``, ``tool_calls``, …
input_tokens …        int64                input, output, cached, cache_write, reasoning,
total_tokens                               total
input_cost …          decimal128(20, 10)   input, output, cache_read, cache_write, total
total_cost                                 cost in USD
cache_savings         decimal128(20, 10)   USD saved by prompt caching (pricing.cache_savings)
error_type            string, nullable     the error class name (``llm.exceptions``)
error_message         string, nullable     ``str(error)``: never a key, never prompt text
retryable             bool                 the error is transient: a rerun retries the row
attempts              int32                provider attempts (retries and re-asks included)
latency_s             float64              seconds for the whole row
completed_at          timestamp[us, UTC]   when the row finished
====================  ===================  ===============================================

Durability. Results are buffered and flushed every ``flush_rows`` rows or
``flush_interval_s`` seconds; each flush writes one new part file (one row group) to a
hidden temporary name, fsyncs it and renames it into place, so a part file is complete or
absent. A killed job loses at most the unflushed buffer; those rows are redone on a rerun
(through the runtime, the ledger's journal hands back the already-billed answers).

Each id once. A rerun skips the ids found in the part files' ``id`` column
(:func:`scan_done_ids` reads only that column). Rows that failed with a transient error
(:data:`RETRY_ON_RERUN`) are still written, so a finished run's dataset holds every input
row; when the next run starts, :func:`retire_retryable` moves them out of the dataset into
``_errors/`` (sidecar first, then the rewritten part replaces the old one atomically), and
the run retries them. At every moment each id is in the dataset at most once, and after a
run that was not stopped early, exactly once. One job writes to one directory at a time.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from llm.exceptions import (
    BudgetExceededError,
    LLMError,
)
from llm.pricing import COST_COLUMNS, cost_columns
from llm.pricing import TOKEN_COLUMNS as USAGE_TOKEN_COLUMNS
from llm.retry import RETRYABLE_ERRORS
from llm.types import LLMResponse
from runtime.parquet_files import TEMP_PREFIX as PARQUET_TEMP_PREFIX
from runtime.parquet_files import (
    cost_fields,
    fsync_directory,
    token_fields,
    write_parquet_atomically,
)

_QUANTUM = Decimal("1e-10")
PART_GLOB = "part-*.parquet"
TEMP_PREFIX = PARQUET_TEMP_PREFIX
ERRORS_DIR = "_errors"
SUMMARY_FILE = "_summary.json"

#: The output's token columns: the usage columns but the 1-hour cache writes, and the total.
TOKEN_COLUMNS = (
    *(name for name in USAGE_TOKEN_COLUMNS if name != "cache_write_1h_tokens"),
    "total_tokens",
)

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("structured_output", pa.string()),
        pa.field("tool_calls", pa.string()),
        pa.field("finish_reason", pa.string()),
        *token_fields(TOKEN_COLUMNS),
        *cost_fields(),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("retryable", pa.bool_(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("latency_s", pa.float64(), nullable=False),
        pa.field("completed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

#: Errors that say nothing about the row itself: the row is retried on the next run.
#: The retry policy's retryable errors (:data:`llm.retry.RETRYABLE_ERRORS`) and a budget stop.
RETRY_ON_RERUN: tuple[type[LLMError], ...] = (*RETRYABLE_ERRORS, BudgetExceededError)


# ---------------------------------------------------------------------- rows


def _money(value: Decimal | int | float) -> Decimal:
    return Decimal(value).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def _json_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _now() -> datetime:
    return datetime.now(UTC)


def _base_row(row_id: str, job_id: str, request_id: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": row_id, "job_id": job_id, "request_id": request_id}
    row.update(dict.fromkeys(TOKEN_COLUMNS, 0))
    row.update(dict.fromkeys(COST_COLUMNS, _money(0)))
    return row


def ok_row(
    *,
    row_id: str,
    job_id: str,
    request_id: str,
    response: LLMResponse,
    latency_s: float,
    completed_at: datetime | None = None,
) -> dict[str, Any]:
    """The output row of a successful call, at the price the call was metered at (the
    response's ``cost`` and ``cache_savings``: nothing is priced here)."""
    row = _base_row(row_id, job_id, request_id)
    usage = response.usage
    row.update(
        model=response.model,
        provider=response.provider,
        status="ok",
        text=response.text,
        structured_output=_json_or_none(response.structured_output),
        tool_calls=_json_or_none(response.tool_calls) if response.tool_calls else None,
        finish_reason=response.finish_reason,
        **{name: int(getattr(usage, name)) for name in TOKEN_COLUMNS},
        retryable=False,
        attempts=response.attempts,
        latency_s=float(latency_s),
        completed_at=completed_at or _now(),
    )
    money = cost_columns(response.cost, response.cache_savings)
    row.update({name: _money(value) for name, value in money.items()})
    return row


def is_retryable_on_rerun(error: BaseException) -> bool:
    """True for transient errors (and unexpected non-LLM errors): retry on the next run."""
    return isinstance(error, RETRY_ON_RERUN) or not isinstance(error, LLMError)


def error_row(
    *,
    row_id: str,
    job_id: str,
    request_id: str,
    error: BaseException,
    model: str | None = None,
    latency_s: float = 0.0,
    completed_at: datetime | None = None,
) -> dict[str, Any]:
    """The output row of a failed row: error type and message, no text, zero cost."""
    row = _base_row(row_id, job_id, request_id)
    if isinstance(error, LLMError):
        message, attempts = str(error), error.attempts or (1 if error.provider else 0)
        model, provider = error.model or model, error.provider
    else:  # never str() a foreign exception: it could quote the prompt
        message, attempts, provider = f"unexpected {type(error).__name__}", 0, None
    row.update(
        model=model,
        provider=provider,
        status="error",
        error_type=type(error).__name__,
        error_message=message,
        retryable=is_retryable_on_rerun(error),
        attempts=attempts,
        latency_s=float(latency_s),
        completed_at=completed_at or _now(),
    )
    return row


# ---------------------------------------------------------------------- files


def write_atomically(table: pa.Table, final: Path) -> Path:
    """Write ``table`` to ``final`` through a hidden temp file, fsync and rename (one row group)."""
    return write_parquet_atomically(table, final, row_group_size=max(table.num_rows, 1))


def part_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The dataset's committed part files, oldest run first."""
    root = Path(directory)
    return sorted(root.glob(PART_GLOB)) if root.is_dir() else []


def remove_temp_files(directory: str | os.PathLike[str]) -> int:
    """Delete the temp files a killed run left behind; returns how many."""
    root = Path(directory)
    removed = 0
    for folder in (root, root / ERRORS_DIR):
        for path in folder.glob(f"{TEMP_PREFIX}*") if folder.is_dir() else ():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def scan_done_ids(directory: str | os.PathLike[str]) -> set[str]:
    """Every id already in the dataset (reads only the ``id`` column of each part)."""
    done: set[str] = set()
    for path in part_files(directory):
        done.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return done


def retire_retryable(directory: str | os.PathLike[str]) -> int:
    """Move rows with transient errors out of the dataset into ``_errors/``; how many."""
    retired = 0
    for path in part_files(directory):
        flags = pq.read_table(path, columns=["retryable"]).column("retryable")
        if not pc.any(flags).as_py():
            continue
        table = pq.read_table(path)
        mask = pc.fill_null(table["retryable"], False)
        sidecar = Path(directory) / ERRORS_DIR
        sidecar.mkdir(exist_ok=True)
        write_atomically(table.filter(mask), sidecar / path.name)
        kept = table.filter(pc.invert(mask))
        if kept.num_rows:
            write_atomically(kept, path)
        else:
            path.unlink()
            fsync_directory(path.parent)
        retired += table.num_rows - kept.num_rows
    return retired


def output_spend(directory: str | os.PathLike[str]) -> Decimal:
    """Total cost of the rows in the dataset (reads only ``total_cost``)."""
    total = Decimal(0)
    for path in part_files(directory):
        value = pc.sum(pq.read_table(path, columns=["total_cost"]).column("total_cost")).as_py()
        total += value or 0
    return total


def read_output(directory: str | os.PathLike[str]) -> pa.Table:
    """The whole dataset as one table, as a reader sees it (hidden files ignored)."""
    if not part_files(directory):
        return OUTPUT_SCHEMA.empty_table()
    return ds.dataset(str(directory), format="parquet", schema=OUTPUT_SCHEMA).to_table()


def write_summary(directory: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Write ``_summary.json`` atomically."""
    final = Path(directory) / SUMMARY_FILE
    temp = final.with_name(f"{TEMP_PREFIX}{final.name}")
    temp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temp, final)
    return final


# ---------------------------------------------------------------------- writer


def new_run_id() -> str:
    """A run id that sorts by start time: ``<UTC stamp>-<random>``."""
    return f"{_now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


class OutputWriter:
    """Buffers output rows and commits them as part files (one row group per flush).

    ``add`` flushes when ``flush_rows`` rows are buffered; call ``maybe_flush`` now and then
    to flush on time; ``close`` flushes the rest. Memory is bounded by ``flush_rows``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        flush_rows: int = 500,
        flush_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_flush: Callable[[list[str]], object] | None = None,
    ) -> None:
        if flush_rows < 1:
            raise ValueError("flush_rows must be at least 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_temp_files(self.directory)
        self.run_id = run_id or new_run_id()
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = clock()
        self._seq = 0
        self.rows_written = 0
        #: Called with the request ids of each committed part's rows (the ledger then
        #: releases their journaled results: the output holds them now).
        self.on_flush = on_flush

    @property
    def pending(self) -> int:
        """Rows buffered, not yet committed."""
        return len(self._buffer)

    def add(self, row: dict[str, Any]) -> None:
        """Buffer one output row (see :func:`ok_row`, :func:`error_row`)."""
        self._buffer.append(row)
        if len(self._buffer) >= self.flush_rows:
            self.flush()

    def maybe_flush(self) -> Path | None:
        """Flush if rows are buffered and ``flush_interval_s`` has passed since the last."""
        if self._buffer and self._clock() - self._last_flush >= self.flush_interval_s:
            return self.flush()
        return None

    def flush(self) -> Path | None:
        """Commit the buffered rows as one new part file; None if there were none."""
        self._last_flush = self._clock()
        if not self._buffer:
            return None
        table = pa.Table.from_pylist(self._buffer, schema=OUTPUT_SCHEMA)
        self._seq += 1
        path = self.directory / f"part-{self.run_id}-{self._seq:06d}.parquet"
        write_atomically(table, path)
        self.rows_written += len(self._buffer)
        committed, self._buffer = self._buffer, []
        if self.on_flush is not None:
            try:
                self.on_flush([row["request_id"] for row in committed])
            except Exception:  # only an optimisation of the ledger's journal size
                pass
        return path

    def close(self) -> None:
        """Flush the rest."""
        self.flush()
