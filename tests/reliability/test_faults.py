"""10 % injected faults (429, 500, 529/503, resets, cut bodies and streams): nothing lost.

The batch job runs as ``python -m jobs.batch`` (embedded Ray, sentinel key) against an
emulator that fails 10 % of attempts. Every row must end with a result or a recorded
error, no id twice, and the ledger's rows must be exactly the billed calls. A smaller
in-process test streams through :class:`~llm.service.LLMService` at the same fault rate.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter

import pytest
from rel_support import (
    SENTINEL,
    FaultedRun,
    billed_calls,
    faults_by_kind,
    ledger_rows,
    output_rows,
    record_counts,
    run_faulted_batch,
)

from llm.emulator.server import settings_for
from llm.exceptions import LLMError
from llm.retry import RetryConfig
from llm.service import LLMService

FAST_RETRY = RetryConfig(initial_delay=0.01, max_delay=0.05, jitter=False)


def check_faulted_run(run: FaultedRun, name: str) -> None:
    assert run.process.returncode == 0, run.process.stderr[-2000:]
    stats = run.emulator.engine.stats
    rows = output_rows(run.output)
    ids = Counter(row["id"] for row in rows)
    expected = {f"r{i:05d}" for i in range(run.rows)}
    assert set(ids) == expected, "every input row ends in the output"
    assert max(ids.values()) == 1, "no id twice"
    assert all(row["status"] in ("ok", "error") for row in rows)
    errors = [row for row in rows if row["status"] == "error"]
    assert all(row["error_type"] and row["error_message"] for row in errors)
    ok = [row for row in rows if row["status"] == "ok"]
    assert all(row["text"] and row["output_tokens"] > 0 for row in ok)

    ledger = ledger_rows(run.ledger)
    ledger_ids = Counter(row["request_id"] for row in ledger)
    assert max(ledger_ids.values(), default=1) == 1, "one ledger row per request id"
    assert all(row["status"] == "ok" for row in ledger)
    assert set(ledger_ids) == {row["request_id"] for row in ok}, "ledger rows == ok rows"
    billed = billed_calls(stats)
    assert billed == len(ledger) == len(ok), "billed calls == ledger rows == ok rows"

    kinds = faults_by_kind(stats)
    assert sum(kinds.values()) == stats.faults
    assert stats.faults >= run.rows * 0.05, "the emulator did inject faults"
    assert all(kinds.values()), f"every fault kind was injected: {kinds}"
    assert stats.requests > run.rows, "faulted attempts were retried"
    record_counts(
        name,
        {
            "rows": run.rows,
            "attempts_sent": stats.requests,
            "faults_injected": stats.faults,
            "faults_by_kind": kinds,
            "rows_ok": len(ok),
            "rows_error": len(errors),
            "errors_by_type": dict(Counter(row["error_type"] for row in errors)),
            "billed_calls": billed,
            "ledger_rows": len(ledger),
            "rows_lost": run.rows - len(ids),
        },
    )


def test_batch_job_survives_injected_faults(faulted_run: FaultedRun) -> None:
    check_faulted_run(faulted_run, "faults_short")


@pytest.mark.reliability_full
def test_batch_job_survives_injected_faults_full(tmp_path) -> None:
    run = run_faulted_batch(tmp_path, 1500, "--concurrency", "64")
    try:
        check_faulted_run(run, "faults_full")
    finally:
        shutil.rmtree(run.ray_tmp, ignore_errors=True)


async def _stream_one(service: LLMService, index: int) -> tuple[str, str]:
    """Stream one call; ('ok', '') if the text adds up, ('error', type) for an LLMError."""
    stream = service.generate_stream(
        "claude-haiku-4.5" if index % 2 else "gpt-6-luna",
        [{"role": "user", "content": f"Stream number {index}, please."}],
        max_tokens=60,
    )
    chunks: list[str] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except LLMError as error:  # anything else fails the test
        return "error", type(error).__name__
    assert "".join(chunks) == stream.response.text
    assert stream.response.usage.output_tokens > 0
    return "ok", ""


@pytest.mark.parametrize("calls", [pytest.param(60, id="short")])
async def test_streams_under_faults_end_in_text_or_typed_error(emulator_factory, calls) -> None:
    emulator = emulator_factory(fault_rate=0.1, seed=5, api_key=SENTINEL)
    settings = settings_for(emulator.base_url, SENTINEL)
    service = LLMService(
        settings=settings, runtime="local", retry_config=FAST_RETRY, enable_cost_tracking=False
    )
    gate = asyncio.Semaphore(6)  # a burst of instant failures would trip the circuit breaker

    async def one(index: int) -> tuple[str, str]:
        async with gate:
            return await _stream_one(service, index)

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(calls)))
    finally:
        await service.aclose()
    stats = emulator.engine.stats
    kinds = faults_by_kind(stats, streamed=True)
    ok = sum(1 for status, _ in outcomes if status == "ok")
    errors = Counter(kind for status, kind in outcomes if status == "error")
    assert len(outcomes) == calls
    assert stats.faults > 0 and kinds["cut"] > 0, "streams were cut mid-way"
    # A cut stream has sent text already, so it is not retried: it surfaces as a typed error.
    assert errors.get("ProviderConnectionError", 0) >= 1
    assert ok == billed_calls(stats, streams_cut=kinds["cut"])
    record_counts(
        "streams_short",
        {"calls": calls, "faults_injected": stats.faults, "faults_by_kind": kinds, "ok": ok}
        | {"errors_by_type": dict(errors), "rows_lost": 0},
    )
