"""``python -m jobs.batch --mode batch`` against the emulator's batch APIs: output, ledger
tier and prices, per-row errors, budget reservation, dry run, Ctrl-C and SIGKILL between
submit and results (the rerun re-attaches and creates no second batch)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from jobs.batch import build_parser, main, resolve_mode, run_job
from jobs.batch_dryrun import batch_cost_estimates
from jobs.batch_input import read_rows
from jobs.batch_output import OutputWriter, read_output, scan_done_ids
from jobs.costs import format_report, scan
from jobs.provider_batch import ProviderBatchRun
from llm.emulator.batch_store import batch_service
from llm.emulator.server import settings_for, start_in_thread
from llm.pricing import compute_cost
from llm.registry import resolve_model
from llm.types import Usage
from runtime.batch_journal import BatchJournal
from runtime.ledger_store import LedgerWriter, read_ledger

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["claude-haiku-5.5", "gpt-6.1-terra", "gemini-3.8-flash"]


@pytest.fixture
def emu():
    thread = start_in_thread()
    service = batch_service(thread.engine)
    service.settings.processing_s = 0.5
    yield thread
    thread.stop()


def _input(tmp_path: Path, count: int = 9) -> Path:
    rows = [
        {"id": f"r{i}", "model": MODELS[i % 3], "prompt": f"Question {i}?", "max_tokens": 4000}
        for i in range(count)
    ]
    rows.append({"id": "boom", "model": MODELS[0], "prompt": "x [[emu:fault=500]]"})
    rows.append({"id": "bad", "model": "gpt-9-ultra", "prompt": "x"})
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _submitted_twice(out: Path) -> set[str]:
    """Rows sent in more than one batch (the journal's ``submitted`` events)."""
    seen: dict[str, int] = {}
    for event in BatchJournal(out).events():
        if event["event"] == "submitted":
            for _, row_id in event["rows"]:
                seen[row_id] = seen.get(row_id, 0) + 1
    return {row_id for row_id, count in seen.items() if count > 1}


def _settings(emu, tmp_path):
    return settings_for(emu.base_url).with_overrides(ledger_dir=str(tmp_path / "ledger"))


def _args(source, out, *extra):
    return build_parser().parse_args(
        [
            str(source),
            "--output",
            str(out),
            "--mode",
            "batch",
            "--poll-s",
            "0.1",
            "--runtime",
            "local",
            *extra,
        ]  # fmt: skip
    )


def test_modes_and_deadlines():
    assert resolve_mode("online", "1h") == "online"
    assert resolve_mode("auto", "36h") == "batch"
    assert resolve_mode("auto", "2d") == "batch"
    assert resolve_mode("auto", "90m") == "online"
    with pytest.raises(ValueError):
        resolve_mode("auto", "soon")


def test_batch_mode_output_ledger_and_errors(emu, tmp_path, capsys):
    source, out = _input(tmp_path), tmp_path / "out"
    settings = _settings(emu, tmp_path)
    assert asyncio.run(run_job(_args(source, out), settings)) == 0
    rows = {r["id"]: r for r in read_output(out).to_pylist()}
    assert len(rows) == 11
    assert rows["bad"]["error_type"] == "ModelNotFoundError"
    assert rows["boom"]["status"] == "error" and rows["boom"]["retryable"]
    assert all(rows[f"r{i}"]["status"] == "ok" and rows[f"r{i}"]["text"] for i in range(9))
    # one batch per provider/model, plus the retry of the 500 row within the run
    assert batch_service(emu.engine).created == 4
    assert _submitted_twice(out) == {"boom"}

    ledger = {r["row_id"]: r for r in read_ledger(tmp_path / "ledger").to_pylist()}
    assert set(ledger) == {f"r{i}" for i in range(9)}
    for row_id, record in ledger.items():
        assert record["tier"] == "batch"
        usage = Usage(
            input_tokens=record["input_tokens"],
            output_tokens=record["output_tokens"],
            cached_tokens=record["cached_tokens"],
            cache_write_tokens=record["cache_write_tokens"],
        )
        model = resolve_model(record["model"])
        batch = compute_cost(model, usage, at=record["ts"], service_tier="batch").total_cost
        assert record["total_cost"] == batch.quantize(Decimal("1e-10"))
        assert rows[row_id]["total_cost"] == record["total_cost"]
    text = capsys.readouterr().out
    assert "batches submitted: 4" in text
    assert "rows retried in this run: 1 in a new batch, 0 online" in text
    online = sum(
        compute_cost(
            resolve_model(r["model"]),
            Usage(
                input_tokens=r["input_tokens"],
                output_tokens=r["output_tokens"],
                cached_tokens=r["cached_tokens"],
                cache_write_tokens=r["cache_write_tokens"],
            ),
            at=r["ts"],
        ).total_cost.quantize(Decimal("1e-10"))
        for r in ledger.values()
    )
    saved = online - sum(r["total_cost"] for r in ledger.values())
    assert saved > 0
    summary = json.loads((out / "_summary.json").read_text())
    assert Decimal(summary["batch_savings_usd"]).quantize(Decimal("1e-4")) == saved.quantize(
        Decimal("1e-4")
    )
    report = format_report(scan(tmp_path / "ledger"), by="tier")
    assert f"batch pricing ${saved:.4f}" in report
    assert "batch" in report.split("tier")[1]

    # A rerun retries only the transient failure, in a new batch (and once more in it).
    assert asyncio.run(run_job(_args(source, out), settings)) == 0
    assert batch_service(emu.engine).created == 6
    assert len(read_output(out)) == 11


def test_size_limits_split_batches(emu, tmp_path):
    source, out = _input(tmp_path, 9), tmp_path / "out"
    run = ProviderBatchRun(
        job_id="j",
        output_dir=out,
        writer=OutputWriter(out),
        done_ids=set(),
        settings=_settings(emu, tmp_path),
        poll_s=0.1,
    )
    from llm.providers.anthropic_batch import AnthropicBatchAdapter

    original = AnthropicBatchAdapter.max_requests
    AnthropicBatchAdapter.max_requests = 2
    try:
        asyncio.run(run.run(read_rows(source)))
    finally:
        AnthropicBatchAdapter.max_requests = original
    # claude rows: r0, r3, r6, boom -> 2 batches; gpt and gemini: one each; boom's retry
    assert run.submitted == 5 and _submitted_twice(out) == {"boom"}


def test_budget_reserves_a_batch_before_submitting(emu, tmp_path):
    source, out = _input(tmp_path), tmp_path / "out"
    estimates = batch_cost_estimates(read_rows(source), default_model="claude-haiku-5.5")
    cheapest = min(batch for _, batch in estimates.values())
    cap = cheapest * Decimal("1.01")
    code = asyncio.run(
        run_job(_args(source, out, "--budget-usd", str(cap)), _settings(emu, tmp_path))
    )
    assert code == 3
    batches = [e["rows"] for e in BatchJournal(out).events() if e["event"] == "submitted"]
    first_round = [rows for rows in batches if [r for _, r in rows] != ["boom"]]
    assert len(first_round) == 1  # then, within the cap, boom's retry (when in that batch)
    assert batch_service(emu.engine).created == len(batches)
    assert sum(r["total_cost"] for r in read_output(out).to_pylist()) <= cap


def test_dry_run_shows_online_and_batch_costs(tmp_path, capsys):
    source = _input(tmp_path)
    assert main([str(source), "--dry-run", "--mode", "batch"]) == 0
    text = capsys.readouterr().out
    assert "Online vs batch (mode batch)" in text
    costs = batch_cost_estimates(read_rows(source), default_model="claude-haiku-5.5")
    for online, batch in costs.values():
        assert batch == online / 2  # no caching in the estimate: exactly half
        assert f"{online:.4f}" in text and f"{batch:.4f}" in text


def test_ctrl_c_after_submit_reattaches(emu, tmp_path):
    source, out = _input(tmp_path), tmp_path / "out"
    service = batch_service(emu.engine)
    service.settings.processing_s = 3600.0

    async def interrupted() -> None:
        run = ProviderBatchRun(
            job_id="j", output_dir=out, writer=OutputWriter(out), done_ids=set(),
            settings=_settings(emu, tmp_path), poll_s=0.05,
        )  # fmt: skip
        task = asyncio.create_task(run.run(read_rows(source)))
        while len(BatchJournal(out).in_flight()) < 3:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    assert service.created == 3
    service.settings.processing_s = 0.0
    rerun = ProviderBatchRun(
        job_id="j", output_dir=out, writer=OutputWriter(out), done_ids=scan_done_ids(out),
        settings=_settings(emu, tmp_path), poll_s=0.05,
        ledger=LedgerWriter(tmp_path / "ledger"),
    )  # fmt: skip
    summary = asyncio.run(rerun.run(read_rows(source)))
    # re-attached; the only new batch is the in-run retry of the 500 row
    assert service.created == 4 and rerun.reattached == 3 and rerun.submitted == 1
    assert _submitted_twice(out) == {"boom"}
    ids = [r["id"] for r in read_output(out).to_pylist()]
    assert sorted(ids) == sorted({*ids}) and len(ids) == 11
    assert summary.ok == 9
    assert BatchJournal(out).in_flight() == []


def test_sigkill_between_submit_and_results_creates_no_second_batch(emu, tmp_path):
    source, out = _input(tmp_path), tmp_path / "out"
    service = batch_service(emu.engine)
    service.settings.processing_s = 3600.0
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": emu.base_url,
        "OPENAI_BASE_URL": emu.base_url + "/v1",
        "GOOGLE_GEMINI_BASE_URL": emu.base_url,
        "ANTHROPIC_API_KEY": "k",
        "OPENAI_API_KEY": "k",
        "GOOGLE_API_KEY": "k",
        "LLM_LEDGER_DIR": str(tmp_path / "ledger"),
    }
    argv = [sys.executable, "-m", "jobs.batch", str(source), "--output", str(out),
            "--mode", "batch", "--poll-s", "0.1", "--runtime", "local"]  # fmt: skip
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(BatchJournal(out).in_flight()) < 3:
            assert child.poll() is None, "the job ended before submitting"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert service.created == 3
    service.settings.processing_s = 0.0
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "re-attached to 3 batch(es)" in done.stderr
    assert service.created == 4  # no second batch of the same rows: only boom's retry
    assert _submitted_twice(out) == {"boom"}
    output = read_output(out).to_pylist()
    assert len(output) == 11 and sum(r["status"] == "ok" for r in output) == 9
    assert len(read_ledger(tmp_path / "ledger")) == 9


def test_structured_output_is_checked_when_results_arrive(emu, tmp_path):
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    rows = [
        {
            "id": "good",
            "model": MODELS[0],
            "prompt": "Label this.",
            "structured_output_schema": schema,
        },
        {
            "id": "broken",
            "model": MODELS[0],
            "prompt": "Label this. [[emu:invalid_json]]",
            "structured_output_schema": schema,
        },
    ]
    source, out = tmp_path / "s.jsonl", tmp_path / "out"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    writer = OutputWriter(out)
    run = ProviderBatchRun(
        job_id="j", output_dir=out, writer=writer, done_ids=set(),
        settings=_settings(emu, tmp_path), poll_s=0.1,
    )  # fmt: skip
    summary = asyncio.run(run.run(read_rows(source)))
    writer.close()
    output = {r["id"]: r for r in read_output(out).to_pylist()}
    assert json.loads(output["good"]["structured_output"])["label"]
    assert output["broken"]["error_type"] == "StructuredOutputError"
    assert summary.ok == 1 and summary.cost > 0


def test_rows_sharing_a_prefix_cache_it_for_an_hour_inside_the_batch(emu, tmp_path):
    system = "You label support tickets. " + "Policy clause text. " * 900
    rows = [
        {"id": f"c{i}", "model": MODELS[0], "system": system, "prompt": f"Ticket {i}",
         "enable_caching": True, "max_tokens": 50}
        for i in range(4)
    ]  # fmt: skip
    source, out = tmp_path / "c.jsonl", tmp_path / "out"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert asyncio.run(run_job(_args(source, out), _settings(emu, tmp_path))) == 0
    ledger = sorted(read_ledger(tmp_path / "ledger").to_pylist(), key=lambda r: r["row_id"])
    assert ledger[0]["cache_write_1h_tokens"] > 0
    assert all(r["cached_tokens"] > 0 for r in ledger[1:])
    assert all(r["tier"] == "batch" for r in ledger)


def test_auto_sends_rows_a_batch_cannot_carry_online(emu, tmp_path, monkeypatch):
    from llm.providers.anthropic_batch import AnthropicBatchAdapter

    monkeypatch.setattr(AnthropicBatchAdapter, "max_bytes", 10)  # no Claude row fits
    source, out = _input(tmp_path), tmp_path / "out"
    args = build_parser().parse_args(
        [str(source), "--output", str(out), "--mode", "auto", "--deadline", "48h",
         "--poll-s", "0.1", "--runtime", "local"]
    )  # fmt: skip
    assert asyncio.run(run_job(args, _settings(emu, tmp_path))) == 0
    assert batch_service(emu.engine).created == 2  # OpenAI and Gemini only
    rows = {r["id"]: r for r in read_output(out).to_pylist()}
    assert len(rows) == 11
    assert all(rows[f"r{i}"]["status"] == "ok" for i in range(9))
    tiers = {r["row_id"]: r["tier"] for r in read_ledger(tmp_path / "ledger").to_pylist()}
    assert {tiers[f"r{i}"] for i in (1, 2, 4, 5)} == {"batch"}
    assert "r0" not in tiers or tiers["r0"] == "standard"


def test_batch_mode_writes_rows_too_large_for_a_batch_as_errors(emu, tmp_path, monkeypatch):
    from llm.providers.anthropic_batch import AnthropicBatchAdapter

    monkeypatch.setattr(AnthropicBatchAdapter, "max_bytes", 10)
    source, out = _input(tmp_path), tmp_path / "out"
    assert asyncio.run(run_job(_args(source, out), _settings(emu, tmp_path))) == 0
    rows = {r["id"]: r for r in read_output(out).to_pylist()}
    assert rows["r0"]["error_type"] == "InvalidRequestError"
    assert "batch limit" in rows["r0"]["error_message"]


def test_a_transient_poll_failure_is_retried(emu, tmp_path):
    from llm.exceptions import ProviderConnectionError
    from llm.providers.factory import make_batch_adapter

    failures = {"left": 2}

    def factory(provider, settings):
        adapter = make_batch_adapter(provider, settings)
        real = adapter.status

        async def flaky(batch_id):
            if failures["left"]:
                failures["left"] -= 1
                raise ProviderConnectionError("reset", provider=provider)
            return await real(batch_id)

        adapter.status = flaky
        return adapter

    source, out = _input(tmp_path, 3), tmp_path / "out"
    writer = OutputWriter(out)
    run = ProviderBatchRun(
        job_id="j", output_dir=out, writer=writer, done_ids=set(),
        settings=_settings(emu, tmp_path), poll_s=0.05, adapter_factory=factory,
    )  # fmt: skip
    summary = asyncio.run(run.run(read_rows(source)))
    assert failures["left"] == 0 and summary.ok == 3


def test_dry_run_and_ledger_agree_on_batch_prices(emu, tmp_path):
    from jobs.batch_dryrun import build_request as dry_request
    from llm.pricing import estimate_cost
    from llm.providers.common import estimate_prompt_tokens

    source, out = _input(tmp_path), tmp_path / "out"
    assert asyncio.run(run_job(_args(source, out), _settings(emu, tmp_path))) == 0
    ledger = {r["row_id"]: r for r in read_ledger(tmp_path / "ledger").to_pylist()}
    checked = 0
    for row in read_rows(source):
        record = ledger.get(row.row_id)
        if record is None or record["reasoning_tokens"]:
            continue  # reasoning models: the dry run bounds output, the answer decides it
        request = dry_request(row, default_model="claude-haiku-5.5")
        assert estimate_prompt_tokens(request) == record["input_tokens"]
        priced = estimate_cost(
            request.model, record["input_tokens"], record["output_tokens"],
            at=record["ts"], service_tier="batch",
        )  # fmt: skip
        assert priced.total_cost.quantize(Decimal("1e-10")) == record["total_cost"]
        checked += 1
    assert checked >= 3


def test_gemini_rows_past_the_inline_limit_go_as_a_file(emu, tmp_path, monkeypatch):
    from llm.providers.google_batch import GoogleBatchAdapter

    monkeypatch.setattr(GoogleBatchAdapter, "inline_max_bytes", 10)
    source, out = _input(tmp_path), tmp_path / "out"
    assert asyncio.run(run_job(_args(source, out), _settings(emu, tmp_path))) == 0
    service = batch_service(emu.engine)
    [gemini] = [job for job in service.jobs.values() if job.provider == "google"]
    assert gemini.meta["file_input"] and "responses_file" in gemini.meta
    rows = {r["id"]: r for r in read_output(out).to_pylist()}
    assert all(rows[f"r{i}"]["status"] == "ok" for i in (2, 5, 8))  # the Gemini rows
    tiers = {r["row_id"]: r["tier"] for r in read_ledger(tmp_path / "ledger").to_pylist()}
    assert {tiers[f"r{i}"] for i in (2, 5, 8)} == {"batch"}
