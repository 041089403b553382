"""The batch job end to end against the emulator, through the real LLMService, in process.

No Ray here: calls run on the in-process LocalExecutor (``--runtime local`` for the CLI).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from decimal import Decimal

import pyarrow.compute as pc
import pytest

pytest.importorskip("llm.emulator.server")

from jobs.batch import main, service_call  # noqa: E402
from jobs.batch_core import BatchConfig, run_batch  # noqa: E402
from jobs.batch_dryrun import dry_run, estimate_row  # noqa: E402
from jobs.batch_input import parse_row, read_rows  # noqa: E402
from jobs.batch_output import OutputWriter, read_output, scan_done_ids  # noqa: E402
from llm.emulator.server import EmulatorConfig, settings_for, start_in_thread  # noqa: E402
from llm.executor import LocalExecutor  # noqa: E402
from llm.retry import RetryConfig  # noqa: E402
from llm.service import LLMService  # noqa: E402

#: Models with no announced retirement (the test must not depend on the date).
MODELS = ["claude-haiku-4.5", "claude-sonnet-4.6", "gpt-6-luna", "gemini-2.5-flash-lite"]
SYSTEM = "You answer questions about the handbook. " + "policy clause details " * 400
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
}


@pytest.fixture(scope="module")
def emulator():
    thread = start_in_thread(EmulatorConfig())
    yield thread
    thread.stop()


@pytest.fixture
def settings(emulator):
    return settings_for(emulator.base_url)


def make_rows(count, models=MODELS):
    rows = []
    for index in range(count):
        row = {"id": f"r{index:03d}", "model": models[index % len(models)], "max_tokens": 40}
        if index % 10 == 0:
            row.update(system=SYSTEM, enable_caching=True, model="claude-sonnet-4.6")
        if index % 17 == 0:
            row["structured_output_schema"] = SCHEMA
        row["prompt"] = f"Question number {index}?"
        rows.append(row)
    rows.append({"id": "bad-model", "model": "gpt-9-ultra", "prompt": "x"})
    rows.append({"id": "bad-field", "model": "gpt-6-luna", "prompt": "x", "colour": 1})
    rows.append({"id": "flaky", "model": "gpt-6-luna", "prompt": "x [[emu:fault=429,times=1]]"})
    return rows


def make_service(settings):
    executor = LocalExecutor(settings, RetryConfig(initial_delay=0.01, jitter=False))
    return LLMService(
        executor=executor, settings=settings, enable_cost_tracking=False, offline=False
    )


async def run_job(tmp_path, rows, service, *, done=None, call=None):
    writer = OutputWriter(tmp_path, flush_rows=50)
    return await run_batch(
        rows,
        call=call or service_call(service),
        writer=writer,
        done_ids=done if done is not None else set(),
        config=BatchConfig(job_id="e2e", concurrency=16),
    )


async def test_a_few_hundred_rows_end_to_end(tmp_path, settings):
    rows = make_rows(240)
    async with make_service(settings) as service:
        summary = await run_job(tmp_path, rows, service)
    table = read_output(tmp_path)
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 243
    assert summary.ok == 241 and summary.failed == 2
    assert summary.failures_by_type == {"ModelNotFoundError": 1, "InvalidRequestError": 1}

    by_id = {row["id"]: row for row in table.to_pylist()}
    assert by_id["r001"]["request_id"] == hashlib.sha256(b"e2e/r001").hexdigest()[:32]
    assert by_id["flaky"]["status"] == "ok" and by_id["flaky"]["attempts"] == 2
    assert json.loads(by_id["r017"]["structured_output"]).keys() == {"label"}
    cached_rows = [by_id[f"r{i:03d}"] for i in range(0, 240, 10)]
    assert sum(1 for r in cached_rows if r["cached_tokens"] > 0) >= len(cached_rows) - 2
    assert summary.cache_savings > 0
    assert sum(Decimal(r["total_cost"]) for r in by_id.values()) == summary.cost
    assert pc.sum(table["total_cost"]).as_py() == summary.cost


async def test_dry_run_estimate_is_exact_against_the_emulator(tmp_path, settings):
    rows = [
        {"id": f"x{i}", "model": model, "prompt": f"Count these tokens, please: {i}."}
        for i, model in enumerate(MODELS)
    ]
    async with make_service(settings) as service:
        await run_job(tmp_path, rows, service)
    billed = {r["id"]: r["input_tokens"] for r in read_output(tmp_path).to_pylist()}
    for index, raw in enumerate(rows):
        assert billed[raw["id"]] == estimate_row(parse_row(raw, index + 1)).input_tokens


async def test_cancelled_run_then_rerun_writes_each_id_once(tmp_path, settings):
    rows = make_rows(120)
    calls: list[str] = []
    enough = asyncio.Event()
    async with make_service(settings) as service:
        inner = service_call(service)

        async def counting(row):
            calls.append(row.row_id)
            response = await inner(row)
            if len(calls) >= 40:
                enough.set()
            return response

        job = asyncio.create_task(run_job(tmp_path, rows, service, call=counting))
        await asyncio.wait_for(enough.wait(), timeout=30)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        first_ids = scan_done_ids(tmp_path)
        assert 0 < len(first_ids) < len(rows)

        calls.clear()
        summary = await run_job(tmp_path, rows, service, done=first_ids, call=counting)
    assert not first_ids & set(calls)  # nothing written before is sent again
    assert summary.skipped_done == len(first_ids)
    ids = read_output(tmp_path)["id"].to_pylist()
    assert len(ids) == len(set(ids)) == len(rows)


def test_cli_offline_run_rerun_and_budget_stop(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    # No OpenAI rows: every current OpenAI model reasons, and the dry run's upper estimate
    # (the budget guard's reservation) counts max_tokens only, not the reasoning allowance
    # sent on top of it, so a reasoning row can cost more than its estimate (a known gap).
    models = ["claude-haiku-4.5", "claude-sonnet-4.6", "gemini-2.5-flash-lite"]
    source.write_text("\n".join(json.dumps(r) for r in make_rows(30, models)) + "\n")
    out = tmp_path / "out"
    base = [str(source), "--output", str(out), "--offline", "--runtime", "local"]

    assert main([*base, "--concurrency", "8"]) == 0
    first = capsys.readouterr().out
    assert "BATCH SUMMARY" in first and "ModelNotFoundError: 1" in first
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["ok"] == 31 and summary["failed"] == 2

    assert main(base) == 0
    assert json.loads((out / "_summary.json").read_text())["skipped_done"] == 33
    assert len(read_output(out)) == 33

    cap = (dry_run(read_rows(source)).total.max_cost / 3).quantize(Decimal("0.0001"))
    tight = tmp_path / "tight"
    code = main([str(source), "--output", str(tight), "--offline", "--runtime", "local",
                 "--budget-usd", str(cap), "--concurrency", "1"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 3
    written = len(read_output(tight))
    assert f"Budget of ${cap} reached: {33 - written} rows not started" in text
    assert 0 < written < 33
    assert sum(r["total_cost"] for r in read_output(tight).to_pylist()) <= cap


@pytest.mark.parametrize(
    "argv",
    [
        ["missing.jsonl", "--output", "x"],
        ["examples/prompts.jsonl"],
        ["examples/prompts.jsonl", "--output", "x", "--concurrency", "0"],
        ["examples/prompts.jsonl", "--output", "x", "--budget-usd", "-1"],
    ],
)
def test_cli_bad_arguments_exit_2(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    argv = [a if a != "examples/prompts.jsonl" else _EXAMPLE for a in argv]
    assert main(argv) == 2


_EXAMPLE = str(__import__("pathlib").Path(__file__).parents[1] / "examples" / "prompts.jsonl")


def test_example_prompts_file_has_the_demo_mix():
    from llm.registry import get_model_info
    from llm.tokens import count_text_tokens

    items = list(read_rows(_EXAMPLE))
    valid = [i for i in items if not hasattr(i, "error")]
    invalid = [i for i in items if hasattr(i, "error")]
    assert 280 <= len(items) <= 320 and len(invalid) >= 2  # the other bad rows fail later
    providers = {
        get_model_info(r.model).provider for r in valid if r.model and get_model_info(r.model)
    }
    assert providers == {"anthropic", "openai", "google"}
    long_cached = [
        r for r in valid
        if r.options.get("enable_caching") and count_text_tokens(r.messages[0]["content"]) > 4096
    ]  # fmt: skip
    assert len(long_cached) >= 40
    assert any(r.task for r in valid) and any("tools" in r.options for r in valid)
    assert any("structured_output_schema" in r.options for r in valid)
    assert any("reasoning_effort" in r.options for r in valid)
