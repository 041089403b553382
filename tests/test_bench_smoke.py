"""Smoke tests of the benchmark harness with tiny numbers (no timing assertions, no Ray)."""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from bench import rate, report
from bench.cache import billed_cost, minimum_cost
from bench.chart import render_svg
from bench.common import API_KEY, Figure, Progress, ThreadEmulator, bench_settings, not_measured
from bench.contenders import RateContext, run_gather
from bench.cookbook import CookbookProcessor, estimate_tokens
from bench.scale import tree_rss_kib, write_rows
from bench.workload import Call, rate_workload
from llm.emulator.server import EmulatorConfig
from llm.pricing import compute_cost
from llm.registry import resolve_model
from llm.types import LLMResponse, Usage


@pytest.fixture
def limited_emulator():
    emulator = ThreadEmulator(EmulatorConfig(rpm=600, itpm=9000, latency_ms=0))
    yield emulator
    emulator.stop()


def _context(emulator: ThreadEmulator, tmp_path, tpm: int) -> RateContext:
    settings = bench_settings(emulator.base_url, tmp_path)
    return RateContext(emulator.base_url, API_KEY, settings, "gpt-6-luna", 600, tpm, 4)


async def test_rate_run_counts_add_up_and_ratio_is_the_binding_share(limited_emulator, tmp_path):
    calls = rate_workload(6, min_words=5, max_words=10, max_tokens=8)
    ctx = _context(limited_emulator, tmp_path, tpm=9000)

    raw = await rate.measure("gather", run_gather, calls, limited_emulator, ctx, cap_s=30)
    figure = rate.to_figure("gather", raw)

    assert raw["error"] is None and not raw["timed_out"]
    assert raw["ok"] + raw["failed"] + raw["unfinished"] == raw["requests"] == 6
    assert (
        raw["rate_limited_warmup"] + raw["rate_limited_after_warmup"] == raw["rate_limited_total"]
    )
    assert raw["rate_limited_total"] == limited_emulator.rate_limited()
    window = raw["admission_window_s"]
    assert raw["request_limit_used"] == pytest.approx(raw["ok"] / (600 / 60 * window), rel=1e-2)
    used = max(raw["request_limit_used"], raw["token_limit_used"])
    assert figure.ratio == round(used, 3)
    assert figure.target is None  # targets are this project's, not the peers'


def test_utilization_is_admitted_share_of_each_limit():
    by_requests, by_tokens = rate.utilization(10, 1500, 2.0, rpm=600, tpm=60_000)
    assert by_requests == pytest.approx(0.5)  # 10 of the 10/s x 2 s allowed
    assert by_tokens == pytest.approx(0.75)  # 1500 of the 1000/s x 2 s allowed


def test_runtime_row_fails_when_429s_continue_after_warm_up():
    raw = {
        "ok": 10,
        "failed": 0,
        "unfinished": 0,
        "request_limit_used": 0.99,
        "token_limit_used": 0.5,
        "rate_limited_total": 3,
        "rate_limited_after_warmup": 1,
        "requests": 10,
    }
    assert rate.to_figure("runtime", raw).passed is False
    assert rate.to_figure("runtime", {**raw, "rate_limited_after_warmup": 0}).passed is True


def test_progress_reads_the_429_count_once_warm_up_is_done():
    reads = iter([7, 99])
    progress = Progress(20, lambda: next(reads), clock=lambda: 0.0)
    progress.done(True, 5)
    assert progress.warmup_429 is None
    progress.done(False)  # 2 of 20 finished = 10 %
    progress.done(True, 5)
    assert progress.warmup_429 == 7
    assert (len(progress.ok_times), progress.failed, progress.ok_tokens) == (2, 1, 10)


def test_cookbook_estimate_is_prompt_plus_max_tokens():
    call = Call("alfa beta gamma", 10)
    # 4 per message + "user" (1) + "alfa beta gamma" (4 tokens: alfa, beta, gamm, a) + 2 + 10
    assert estimate_tokens(call, "gpt-4.1") == 4 + 1 + 4 + 2 + 10


async def test_cookbook_pauses_every_send_after_a_429(tmp_path):
    emulator = ThreadEmulator(EmulatorConfig())
    finished: list[bool] = []
    try:
        processor = CookbookProcessor(
            emulator.base_url + "/v1/chat/completions",
            API_KEY,
            "gpt-6-luna",
            max_requests_per_minute=6000,
            max_tokens_per_minute=1_000_000,
            pause_s=0.2,
            on_done=lambda ok, tokens: finished.append(ok),
        )
        stats = await processor.run([Call("hello [[emu:fault=429,times=1]]", 8), Call("hi", 8)])
        assert emulator.rate_limited() == 1
    finally:
        emulator.stop()
    assert stats.rate_limit_errors == 1 and stats.pauses >= 1
    assert finished == [True, True]  # the 429 was retried from the retry queue


def _response(usage: Usage) -> LLMResponse:
    cost = compute_cost(resolve_model("claude-sonnet-4.6"), usage)
    return LLMResponse(model="claude-sonnet-4.6", provider="anthropic", usage=usage, cost=cost)


def test_cache_minimum_is_one_write_then_reads():
    write = Usage(input_tokens=5020, output_tokens=30, cache_write_tokens=5000)
    read = Usage(input_tokens=5020, output_tokens=30, cached_tokens=5000)
    ideal = [_response(write), _response(read), _response(read)]
    minimum, prefix = minimum_cost(ideal)
    assert prefix == 5000 and minimum == billed_cost(ideal)

    wasteful = [_response(write), _response(write), _response(read)]
    minimum, _ = minimum_cost(wasteful)
    assert billed_cost(wasteful) / minimum > Decimal("1.05")


def _figures() -> list[Figure]:
    ok = Figure("cache", "runtime", ratio=1.0, target="<= 1.05", passed=True)
    ok.raw = {
        "cache_writes": 1,
        "cache_reads": 3,
        "prefix_tokens": 5000,
        "billed_usd": "0.01",
        "minimum_usd": "0.01",
    }
    missing = not_measured("rate", "litellm-router", "litellm does not import here")
    return [ok, missing]


def test_report_writes_json_markdown_and_svg_and_keeps_the_intro(tmp_path):
    (tmp_path / "bench").mkdir()
    figures = _figures()
    machine = {"cores": 2, "platform": "x", "python": "3.11", "packages": {}, "git_commit": None}
    document = report.results_document(
        figures, mode="quick", machine=machine, started="now", seconds=1.0
    )
    report.write_all(figures, document, "notes", root=tmp_path)
    markdown = tmp_path / "docs" / "benchmarks.md"
    markdown.write_text(
        "# Mine\nhand-written\n" + report.MARKER + "\nold table\n", encoding="utf-8"
    )

    report.write_all(figures, document, "notes", root=tmp_path)

    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("# Mine\nhand-written\n") and "old table" not in text
    assert "not measured (litellm does not import here)" in text
    saved = json.loads((tmp_path / "bench" / "results.json").read_text(encoding="utf-8"))
    assert [f["status"] for f in saved["figures"]] == ["ok", "n/a"]
    ET.fromstring((tmp_path / "docs" / "benchmarks.svg").read_text(encoding="utf-8"))


def test_chart_draws_a_bar_per_measured_figure_and_a_target_line():
    svg = render_svg(_figures(), {"cache": "Cache", "rate": "Rate"})
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}rect")) == 2  # background + the one measured bar
    assert len(root.findall(f"{ns}line")) == 2  # a target line per panel
    assert "n/a (not measured)" in svg


def test_scale_rows_are_valid_batch_rows(tmp_path):
    from jobs.batch_input import RowRequest, read_rows

    path = tmp_path / "rows.jsonl"
    write_rows(path, 5)
    items = list(read_rows(path))
    assert len(items) == 5 and all(isinstance(item, RowRequest) for item in items)
    assert tree_rss_kib(os.getpid()) > 0
    assert math.isfinite(tree_rss_kib(os.getpid()))


def test_overhead_ratio_pairs_rounds_so_drift_cancels():
    from bench.overhead import paired_ratio

    # The machine slows down by half over the run; each round both paths slow alike.
    in_process = [400.0, 300.0, 200.0]
    actors = [200.0, 150.0, 100.0]
    assert paired_ratio(actors, in_process) == 0.5
    assert paired_ratio([100.0, 300.0], [400.0, 0.0]) == 0.25  # a zero base round is left out
    assert paired_ratio([], in_process) is None


def test_scale_figures_give_each_process_its_ratio_slope_and_million_row_peak():
    from bench.scale import process_figure

    small = {"rows": 10_000, "ledger_actor_peak_mib": 100.0, "tree_peak_mib": 1000.0}
    large = {"rows": 100_000, "ledger_actor_peak_mib": 109.0, "tree_peak_mib": 1100.0}
    figure = process_figure("ledger actor", "ledger_actor_peak_mib", small, large)
    assert figure.ratio == 1.09 and figure.passed
    assert figure.raw["kib_per_row"] == 0.1024  # 9 MiB over 90,000 rows
    assert figure.raw["million_rows_mib"] == 199.0  # 109 MiB + 0.1024 KiB x 900,000 rows
    missing = process_figure("provider actor", "provider_actor_peak_mib", small, large)
    assert missing.status == "n/a" and "provider_actor_peak_mib" in missing.reason
