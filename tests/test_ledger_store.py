"""Tests for runtime.ledger_store: atomic part files, dedup across writers, exact decimals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from llm.types import Cost, LLMResponse, Usage
from runtime.ledger_store import (
    LEDGER_SCHEMA,
    LedgerRecord,
    LedgerWriter,
    ledger_totals,
    read_ledger,
)

TS = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET_TEXT = "the prompt text must never reach the ledger"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(request_id: str, cost: str = "0.0000030000", **extra) -> LedgerRecord:
    fields = {
        "request_id": request_id,
        "job_id": "job-1",
        "ts": TS,
        "provider": "anthropic",
        "model": "claude-haiku-4.5",
        "input_tokens": 10,
        "output_tokens": 5,
        "input_cost": Decimal(cost),
        **extra,
    }
    return LedgerRecord(**fields)


def response(**extra) -> LLMResponse:
    fields = {
        "text": SECRET_TEXT,
        "model": "claude-sonnet-4.5",
        "provider": "anthropic",
        "usage": Usage(
            input_tokens=1200,
            output_tokens=300,
            cached_tokens=1000,
            cache_write_tokens=100,
            cache_write_1h_tokens=40,
            reasoning_tokens=120,
        ),
        "cost": Cost(
            input_cost=Decimal("0.0003"),
            output_cost=Decimal("0.0045"),
            cache_read_cost=Decimal("0.0003"),
            cache_write_cost=Decimal("0.000375"),
        ),
        "latency_s": 1.25,
        "request_id": "req_abc",
        "attempts": 2,
        "metadata": {"api_model": "claude-sonnet-4-5-20250929"},
        **extra,
    }
    return LLMResponse(**fields)


def part_files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_from_response_copies_usage_cost_and_no_text():
    rec = LedgerRecord.from_response(response(), job_id="j", row_id=7, ts=TS, streamed=True)
    assert rec.request_id == "req_abc"
    assert rec.row_id == "7"
    assert (rec.input_tokens, rec.output_tokens, rec.total_tokens) == (1200, 300, 1500)
    assert (rec.cached_tokens, rec.cache_write_tokens, rec.cache_write_1h_tokens) == (1000, 100, 40)
    assert rec.reasoning_tokens == 120
    assert rec.total_cost == Decimal("0.005475")
    assert rec.api_model == "claude-sonnet-4-5-20250929"
    assert (rec.attempts, rec.streamed, rec.status) == (2, True, "ok")
    assert SECRET_TEXT not in repr(rec.to_row())


def test_from_response_without_cost_or_request_id():
    rec = LedgerRecord.from_response(response(cost=None, request_id=None), job_id="j")
    assert rec.total_cost == Decimal(0)
    assert len(rec.request_id) == 32
    assert rec.ts.tzinfo is not None


def test_naive_and_offset_timestamps_become_utc():
    naive = record("a", ts=datetime(2026, 1, 1, 10, 0))
    shifted = record("b", ts=datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    assert naive.ts == shifted.ts == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def test_write_and_read_round_trip_schema_and_decimals(tmp_path):
    writer = LedgerWriter(tmp_path)
    rec = record("r1", cost="0.0000000001", row_id="row-9", cache_savings=Decimal("1.2345678901"))
    assert writer.append([rec]) == ["r1"]
    assert writer.flush() == ["r1"]
    table = read_ledger(tmp_path)
    assert table.schema == LEDGER_SCHEMA
    row = table.to_pylist()[0]
    assert row["input_cost"] == Decimal("0.0000000001")
    assert row["total_cost"] == Decimal("0.0000000001")
    assert row["cache_savings"] == Decimal("1.2345678901")
    assert row["ts"] == TS
    assert row["row_id"] == "row-9"
    assert row == rec.to_row()


def test_costs_quantized_to_ten_places():
    rec = record("r", cost="0.00000000004999")
    assert rec.input_cost == Decimal("0.0000000000")


def test_part_file_names_and_no_temp_files_left(tmp_path):
    writer = LedgerWriter(tmp_path)
    writer.append([record("a")])
    writer.flush()
    writer.append([record("b")])
    writer.flush()
    names = part_files(tmp_path)
    assert len(names) == 2
    assert all(n.startswith("part-") and n.endswith(".parquet") for n in names)


def test_reopened_writer_drops_ids_already_on_disk(tmp_path):
    first = LedgerWriter(tmp_path)
    first.append([record("a"), record("b")], durable=True)
    first.close()

    second = LedgerWriter(tmp_path)
    assert second.is_durable("a")
    assert second.append([record("a"), record("b"), record("c")]) == ["c"]
    second.close()
    ids = read_ledger(tmp_path).column("request_id").to_pylist()
    assert sorted(ids) == ["a", "b", "c"]


def test_duplicates_within_buffer_and_batch_dropped(tmp_path):
    writer = LedgerWriter(tmp_path)
    assert writer.append([record("a"), record("a")]) == ["a"]
    assert writer.append([record("a")]) == []
    writer.close()
    assert read_ledger(tmp_path).num_rows == 1


def test_durable_append_is_on_disk_before_returning(tmp_path):
    writer = LedgerWriter(tmp_path)
    assert writer.append([record("a")], durable=True) == ["a"]
    assert writer.pending_count == 0
    assert read_ledger(tmp_path).column("request_id").to_pylist() == ["a"]


def test_maybe_flush_by_size_and_interval(tmp_path):
    clock = Clock()
    writer = LedgerWriter(tmp_path, max_rows=3, flush_interval_s=5.0, clock=clock)
    writer.append([record("a"), record("b")])
    assert writer.maybe_flush() == []
    writer.append([record("c")])
    assert writer.maybe_flush() == ["a", "b", "c"]

    writer.append([record("d")])
    clock.now += 4.0
    assert writer.maybe_flush() == []
    clock.now += 1.0
    assert writer.maybe_flush() == ["d"]
    assert writer.files_written == 2


def test_flush_with_nothing_pending_writes_no_file(tmp_path):
    writer = LedgerWriter(tmp_path)
    assert writer.flush() == []
    assert part_files(tmp_path) == []


def test_closed_writer_rejects_appends(tmp_path):
    writer = LedgerWriter(tmp_path)
    writer.append([record("a")])
    assert writer.close() == ["a"]
    with pytest.raises(RuntimeError):
        writer.append([record("b")])


def test_failed_write_keeps_records_pending_and_leaves_no_temp(tmp_path, monkeypatch):
    writer = LedgerWriter(tmp_path)
    writer.append([record("a")])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError):
        writer.flush()
    assert part_files(tmp_path) == []
    assert writer.pending_count == 1
    assert not writer.is_durable("a")
    monkeypatch.undo()
    assert writer.flush() == ["a"]


def test_read_and_totals_of_empty_or_missing_dir(tmp_path):
    assert read_ledger(tmp_path).num_rows == 0
    assert read_ledger(tmp_path / "missing").schema == LEDGER_SCHEMA
    totals = ledger_totals(tmp_path)
    assert totals["requests"] == 0
    assert totals["total_cost"] == Decimal(0)


def test_totals_are_exact_sums(tmp_path):
    writer = LedgerWriter(tmp_path)
    writer.append([record(f"r{i}", cost="0.1") for i in range(3)])
    writer.flush()
    # an error row, as files written before failed calls stopped writing rows may hold
    error = LedgerRecord(
        request_id="e1",
        job_id="j",
        ts=TS,
        provider="openai",
        model="m",
        status="ProviderOverloadedError",
        error_type="ProviderOverloadedError",
    )
    writer.append([error], durable=True)
    totals = ledger_totals(tmp_path)
    assert totals["requests"] == 4
    assert totals["errors"] == 1
    assert totals["input_tokens"] == 30
    assert totals["total_tokens"] == 45
    assert totals["total_cost"] == Decimal("0.3")  # exact, unlike 0.1 + 0.1 + 0.1 in floats
