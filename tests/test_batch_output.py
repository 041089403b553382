"""Batch output: atomic part files, row groups, schema, resume scan, retiring retryable rows."""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import jobs.batch_output as out
from llm.exceptions import InvalidRequestError, RateLimitError
from llm.types import Cost, LLMResponse, Usage


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def response(text="answer", **extra):
    return LLMResponse(
        text=text,
        model="gpt-4.1",
        provider="openai",
        usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=40),
        cost=Cost(input_cost=Decimal("0.00012"), output_cost=Decimal("0.00016")),
        cache_savings=Decimal("0.00003"),
        attempts=2,
        **extra,
    )


def ok(row_id, **extra):
    return out.ok_row(
        row_id=row_id,
        job_id="job",
        request_id=f"r-{row_id}",
        response=response(**extra),
        latency_s=1.5,
    )


def failed(row_id, error):
    return out.error_row(row_id=row_id, job_id="job", request_id=f"r-{row_id}", error=error)


def test_flush_by_rows_writes_one_part_per_flush_with_one_row_group(tmp_path):
    writer = out.OutputWriter(tmp_path, run_id="run1", flush_rows=2)
    for index in range(5):
        writer.add(ok(f"id{index}"))
    assert writer.pending == 1
    writer.close()
    names = [p.name for p in out.part_files(tmp_path)]
    assert names == [
        "part-run1-000001.parquet",
        "part-run1-000002.parquet",
        "part-run1-000003.parquet",
    ]
    for path in out.part_files(tmp_path):
        assert pq.ParquetFile(path).metadata.num_row_groups == 1
    table = out.read_output(tmp_path)
    assert table.schema.equals(out.OUTPUT_SCHEMA)
    assert sorted(table["id"].to_pylist()) == [f"id{i}" for i in range(5)]


def test_flush_on_interval_uses_the_clock(tmp_path):
    clock = FakeClock()
    writer = out.OutputWriter(tmp_path, flush_rows=100, flush_interval_s=5.0, clock=clock)
    writer.add(ok("a"))
    clock.now = 4.9
    assert writer.maybe_flush() is None
    clock.now = 5.0
    assert writer.maybe_flush() is not None
    assert out.scan_done_ids(tmp_path) == {"a"}


def test_ok_row_columns():
    row = ok(
        "a", structured_output={"k": 1}, tool_calls=[{"id": "t", "name": "f", "arguments": {}}]
    )
    assert row["status"] == "ok" and row["retryable"] is False
    assert json.loads(row["structured_output"]) == {"k": 1}
    assert json.loads(row["tool_calls"])[0]["name"] == "f"
    assert row["total_cost"] == Decimal("0.00028") and row["cache_savings"] == Decimal("0.00003")
    assert row["cached_tokens"] == 40 and row["total_tokens"] == 120
    assert row["attempts"] == 2 and row["finish_reason"] == "stop"


def test_error_rows_record_type_message_and_retryability():
    limited = failed("a", RateLimitError("slow down", provider="openai", model="gpt-4.1"))
    invalid = failed("b", InvalidRequestError("max_tokens must be a positive integer"))
    foreign = failed("c", ValueError("prompt text that must not leak"))
    assert limited["error_type"] == "RateLimitError" and limited["retryable"] is True
    assert (
        limited["provider"] == "openai" and limited["error_message"] == "[openai/gpt-4.1] slow down"
    )
    assert invalid["retryable"] is False and invalid["status"] == "error"
    assert foreign["error_message"] == "unexpected ValueError"
    assert foreign["total_cost"] == Decimal(0)


def test_temp_files_are_ignored_by_readers_and_cleaned_by_the_next_writer(tmp_path):
    writer = out.OutputWriter(tmp_path, run_id="r")
    writer.add(ok("a"))
    writer.close()
    leftover = tmp_path / ".tmp-part-crashed-000001.parquet"
    leftover.write_bytes(b"PAR1 half a file")
    assert ds.dataset(str(tmp_path), format="parquet").to_table().num_rows == 1
    assert out.scan_done_ids(tmp_path) == {"a"}
    out.OutputWriter(tmp_path)
    assert not leftover.exists()


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    writer = out.OutputWriter(tmp_path, run_id="r")
    writer.add(ok("a"))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(out.pq, "write_table", boom)
    with pytest.raises(OSError):
        writer.flush()
    assert list(tmp_path.iterdir()) == []


def test_resume_scan_reads_only_the_id_column(tmp_path, monkeypatch):
    writer = out.OutputWriter(tmp_path, flush_rows=2)
    for row_id in "abc":
        writer.add(ok(row_id))
    writer.close()
    asked = []
    real = out.pq.read_table

    def spy(path, *args, columns=None, **kwargs):
        asked.append(columns)
        return real(path, *args, columns=columns, **kwargs)

    monkeypatch.setattr(out.pq, "read_table", spy)
    assert out.scan_done_ids(tmp_path) == {"a", "b", "c"}
    assert asked == [["id"], ["id"]]


def test_retire_retryable_moves_transient_failures_out_of_the_dataset(tmp_path):
    writer = out.OutputWriter(tmp_path, run_id="r1", flush_rows=10)
    writer.add(ok("a"))
    writer.add(failed("b", RateLimitError("429")))
    writer.add(failed("c", InvalidRequestError("bad")))
    writer.close()
    only_retryable = out.OutputWriter(tmp_path, run_id="r2")
    only_retryable.add(failed("d", RateLimitError("429")))
    only_retryable.close()

    assert out.retire_retryable(tmp_path) == 2
    assert out.scan_done_ids(tmp_path) == {"a", "c"}
    assert len(out.part_files(tmp_path)) == 1  # the all-retryable part is gone
    sidecar = ds.dataset(str(tmp_path / out.ERRORS_DIR), format="parquet").to_table()
    assert sorted(sidecar["id"].to_pylist()) == ["b", "d"]
    assert out.read_output(tmp_path).num_rows == 2
    assert out.retire_retryable(tmp_path) == 0


def test_output_spend_and_summary_file(tmp_path):
    writer = out.OutputWriter(tmp_path)
    writer.add(ok("a"))
    writer.add(ok("b"))
    writer.close()
    assert out.output_spend(tmp_path) == Decimal("0.00056")
    path = out.write_summary(tmp_path, {"ok": 2, "cost_usd": Decimal("0.5")})
    assert json.loads(path.read_text()) == {"ok": 2, "cost_usd": "0.5"}
    assert out.read_output(tmp_path).num_rows == 2  # _summary.json is not read as data


def test_each_committed_part_reports_its_request_ids_after_it_is_on_disk(tmp_path):
    seen: list[tuple[list[str], int]] = []

    def released(ids):
        seen.append((ids, len(out.part_files(tmp_path))))  # the part exists already
        raise RuntimeError("the ledger is away")  # never fails the output

    writer = out.OutputWriter(tmp_path, run_id="run1", flush_rows=2, on_flush=released)
    for index in range(3):
        writer.add(ok(f"id{index}"))
    writer.close()
    assert seen == [(["r-id0", "r-id1"], 1), (["r-id2"], 2)]
