"""jobs.costs: grouping, totals, --since, the HTML chart, and the CLI, over a real ledger dir."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from jobs import costs
from jobs.cost_chart import chart_data
from runtime.ledger_store import LedgerRecord, LedgerWriter


def _record(i: int, model: str, provider: str, job: str, day: int, cost: str, cached: int = 0):
    return LedgerRecord(
        request_id=f"r{i}",
        job_id=job,
        ts=dt.datetime(2026, 11, day, 12, 0, tzinfo=dt.UTC),
        provider=provider,
        model=model,
        input_tokens=100,
        output_tokens=10,
        cached_tokens=cached,
        input_cost=Decimal(cost),
        cache_savings=Decimal("0.0001") if cached else Decimal(0),
    )


@pytest.fixture
def ledger_dir(tmp_path):
    writer = LedgerWriter(tmp_path)
    writer.append(
        [
            _record(1, "claude-haiku-4.5", "anthropic", "job-a", 20, "0.0010", cached=50),
            _record(2, "claude-haiku-4.5", "anthropic", "job-a", 21, "0.0020"),
            _record(3, "gpt-4.1", "openai", "job-b", 21, "0.0040"),
        ],
        durable=True,
    )
    writer.close()
    return tmp_path


def test_summarize_by_model_sums_exactly(ledger_dir):
    rows = costs.summarize(costs.load(ledger_dir), "model")
    assert [r["group"] for r in rows] == ["gpt-4.1", "claude-haiku-4.5"]  # most expensive first
    haiku = rows[1]
    assert haiku["requests"] == 2
    assert haiku["total_cost"] == Decimal("0.0030")
    assert haiku["avg_cost"] == Decimal("0.0015")
    assert haiku["input_tokens"] == 200 and haiku["cached_tokens"] == 50
    assert haiku["cache_savings"] == Decimal("0.0001")


def test_group_by_day_and_job_and_since(ledger_dir):
    by_day = {r["group"]: r["requests"] for r in costs.summarize(costs.load(ledger_dir), "day")}
    assert by_day == {"2026-11-20": 1, "2026-11-21": 2}
    by_job = {r["group"]: r["total_cost"] for r in costs.summarize(costs.load(ledger_dir), "job")}
    assert by_job == {"job-a": Decimal("0.0030"), "job-b": Decimal("0.0040")}
    recent = costs.load(ledger_dir, since=dt.date(2026, 11, 21))
    assert costs.totals(recent)["requests"] == 2
    assert costs.totals(recent)["total_cost"] == Decimal("0.0060")


def test_unknown_group_rejected(ledger_dir):
    with pytest.raises(ValueError):
        costs.summarize(costs.load(ledger_dir), "color")


def test_chart_data_sums_cost_per_model_and_day(ledger_dir):
    data = chart_data(costs.scan(ledger_dir))
    assert data.days == ["2026-11-20", "2026-11-21"]
    assert data.cost["claude-haiku-4.5"] == {
        "2026-11-20": Decimal("0.0010"),
        "2026-11-21": Decimal("0.0020"),
    }
    assert data.cost["gpt-4.1"] == {"2026-11-21": Decimal("0.0040")}
    assert data.models == ["gpt-4.1", "claude-haiku-4.5"]  # most expensive at the bottom
    assert data.savings == {"2026-11-20": Decimal("0.0001"), "2026-11-21": Decimal(0)}
    assert data.total_cost == Decimal("0.0070")


def test_cli_prints_report_and_writes_plot(ledger_dir, tmp_path, capsys):
    plot = tmp_path / "chart.html"
    assert costs.main([str(ledger_dir), "--by", "provider", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "Requests: 3" in out and "Cost: $0.0070" in out
    assert "anthropic" in out and "openai" in out
    page = plot.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "gpt-4.1" in page


@pytest.mark.parametrize("name", ["chart.png", "chart.svg"])
def test_cli_plot_format_follows_the_extension(ledger_dir, tmp_path, name):
    plot = tmp_path / name
    assert costs.main([str(ledger_dir), "--plot", str(plot)]) == 0
    head = plot.read_bytes()[:200]
    if name.endswith(".png"):
        assert head.startswith(b"\x89PNG\r\n")
    else:
        assert b"<svg" in plot.read_bytes() and b"claude-haiku-4.5" in plot.read_bytes()


def test_cli_rejects_an_unknown_plot_format(ledger_dir, tmp_path, capsys):
    assert costs.main([str(ledger_dir), "--plot", str(tmp_path / "chart.gif")]) == 2
    assert ".png, .svg or .html" in capsys.readouterr().err
    assert not (tmp_path / "chart.gif").exists()


def test_empty_or_missing_ledger(tmp_path, capsys):
    assert costs.main([str(tmp_path)]) == 0
    assert "Requests: 0" in capsys.readouterr().out
    assert costs.main([str(tmp_path / "nope")]) == 2


def test_scan_streams_part_files_and_filters_by_job(ledger_dir):
    parts = list(costs.scan(ledger_dir, job_id="job-a"))
    assert sum(t.num_rows for t in parts) == 2
    assert all(set(t.column("job_id").to_pylist()) == {"job-a"} for t in parts)
    report = costs.format_report(costs.scan(ledger_dir, job_id="job-b"), by="model")
    assert "Requests: 1" in report and "gpt-4.1" in report and "claude" not in report
