"""Smoke tests of the real-regime bench scenario with tiny numbers (no Ray, no timing asserts)."""

from __future__ import annotations

import json

import pytest

import bench.__main__ as bench_main
from bench import realregime, report
from bench.common import Figure
from bench.workload import rate_workload
from llm.emulator.__main__ import parse_args
from llm.emulator.server import start_in_thread


def test_plans_and_emulator_flags():
    assert [a.rpm for a in realregime.plan_for(True)] == [3000]
    assert [a.rpm for a in realregime.plan_for(False)] == [3000, 10_000]
    config = parse_args(realregime.emulator_args(3000))
    assert (config.rpm, config.latency_ms, config.latency_dist, config.latency_sigma) == (
        3000,
        4000.0,
        "lognormal",
        0.6,
    )
    assert config.burst_s == 1.0  # the providers' short window, not a minute


def test_rows_are_batch_job_input(tmp_path):
    calls = rate_workload(3, min_words=5, max_words=8, max_tokens=16)
    path = tmp_path / "rows.jsonl"
    realregime.write_rows(path, calls, start=10)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["r10", "r11", "r12"]
    assert rows[0] == {
        "id": "r10",
        "model": realregime.MODEL,
        "prompt": calls[0].prompt,
        "max_tokens": 16,
    }


def _raw(share, after, failed=0, unfinished=0):
    timeline = {"share_of_rate": share, "throttled": 3, "throttled_after_first_s": after}
    return {"timeline": timeline, "failed": failed, "unfinished": unfinished, "ok": 10}


def test_targets_apply_to_this_projects_rows_only():
    account = realregime.Account(3000, 10, 5.0)
    ours = realregime.to_figure("jobs.batch", account, _raw(0.97, 0))
    assert ours.contender == "jobs.batch @ 3,000 RPM" and ours.passed is True
    assert realregime.to_figure("LLMService gather", account, _raw(0.97, 1)).passed is False
    assert realregime.to_figure("jobs.batch", account, _raw(0.97, 0, unfinished=1)).passed is False
    assert realregime.to_figure("jobs.batch", account, _raw(0.5, 0)).passed is False
    peer = realregime.to_figure("gather+semaphore", account, _raw(0.99, 40))
    assert peer.target is None and peer.passed is None
    missing = realregime.to_figure("jobs.batch", account, {"error": "boom"})
    assert missing.status == "n/a" and missing.reason == "boom"
    assert "429s: 3 (0 after 1 s)" in report.detail(ours)


def test_measure_reads_the_emulators_timeline():
    emulator = start_in_thread(realregime_config())
    try:
        account = realregime.Account(600, 6, 30.0)
        calls = rate_workload(6, min_words=5, max_words=8, max_tokens=8)
        figure = realregime.measure("gather+semaphore", emulator.base_url, account, calls)
    finally:
        emulator.stop()
    raw = figure.raw
    assert (raw["ok"], raw["failed"], raw["unfinished"], raw["rows"]) == (6, 0, 0, 6)
    timeline = raw["timeline"]
    assert timeline["admitted"] == 6 and timeline["in_flight"] == 0
    assert 1 <= timeline["max_in_flight"] <= 6
    assert figure.ratio == timeline["share_of_rate"] and figure.ratio > 0


def realregime_config():
    from llm.emulator.server import EmulatorConfig

    return EmulatorConfig(rpm=600, latency_ms=50, latency_dist="lognormal", seed=1)


def test_partial_write_replaces_only_its_scenarios(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    saved = {
        "mode": "full",
        "generated_at": "2026-11-24T00:00:00+00:00",
        "duration_s": 1000.0,
        "machine": {},
        "figures": [
            Figure("rate", "runtime", 0.99).as_dict(),
            Figure("realregime", "old", 0.1).as_dict(),
            Figure("cache", "runtime", 1.0).as_dict(),
        ],
    }
    (tmp_path / "bench" / "results.json").write_text(json.dumps(saved))
    monkeypatch.setattr(report, "ROOT", tmp_path)
    new = {
        "mode": "quick",
        "generated_at": "2026-11-27T10:00:00+00:00",
        "duration_s": 300.0,
        "machine": {"git_commit": "abc"},
        "figures": [Figure("realregime", "new", 0.5).as_dict()],
    }
    merged = bench_main.merge_into_saved(new, ["realregime"])
    assert [(f["scenario"], f["contender"]) for f in merged["figures"]] == [
        ("rate", "runtime"),
        ("realregime", "new"),
        ("cache", "runtime"),
    ]
    assert merged["mode"] == "full" and merged["updated"]["realregime"]["mode"] == "quick"
    text = report._updated_text(merged)
    assert "`realregime` from a `quick` run" in text and "commit abc" in text


@pytest.mark.parametrize("name", list(realregime.CONTENDERS))
def test_every_contender_has_a_docstring(name):
    assert realregime.CONTENDERS[name].__doc__
