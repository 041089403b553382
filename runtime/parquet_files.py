"""Crash-safe Parquet part files: the one writer the ledger, its journal and batch output share.

A part file is written to a hidden temporary name in the same directory, fsynced, renamed
into place with ``os.replace`` (atomic on POSIX) and the directory is fsynced, so a reader
sees either the complete file or no file: a killed process never leaves a half-written part
that a later run would read.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llm.pricing import COST_COLUMNS

#: Temporary files start with this (hidden from pyarrow datasets and from part globs).
TEMP_PREFIX = ".tmp-"
#: Money in every Parquet table (ledger, batch output): exact, ten decimal places.
COST_TYPE = pa.decimal128(20, 10)


def cost_fields() -> list[pa.Field]:
    """The money columns (:data:`llm.pricing.COST_COLUMNS`) of a Parquet cost table."""
    return [pa.field(name, COST_TYPE, nullable=False) for name in COST_COLUMNS]


def token_fields(names: Iterable[str]) -> list[pa.Field]:
    """Token-count columns ``names`` (from :data:`llm.pricing.TOKEN_COLUMNS`, ``total_tokens``)."""
    return [pa.field(name, pa.int64(), nullable=False) for name in names]


def new_part_path(directory: Path) -> Path:
    """A fresh ``part-<UTC time>-<uuid>.parquet`` path in ``directory`` (sortable by time)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return directory / f"part-{stamp}-{uuid.uuid4().hex}.parquet"


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_parquet_atomically(
    table: pa.Table, final: Path, *, row_group_size: int | None = None
) -> Path:
    """Write ``table`` to ``final`` through a hidden temp file, fsync, rename, fsync the dir."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f"{TEMP_PREFIX}{final.name}")
    try:
        with temp.open("wb") as handle:
            pq.write_table(table, handle, row_group_size=row_group_size)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(final.parent)
    return final
