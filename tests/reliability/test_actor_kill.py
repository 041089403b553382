"""A ProviderActor killed mid-run: Ray restarts it, re-runs its calls, the job completes.

The batch core runs in this process on a :class:`~actors.runtime.Runtime` (shared Ray
session, own namespace). Once calls are in flight, the Anthropic actor is killed with
``ray.kill(handle, no_restart=False)``. Every row must end ok, each id once in the output
and in the ledger (one row per request id). The calls the dead actor had in flight are
re-sent by the restarted actor (``max_task_retries=-1``): at most the calls in flight are
sent twice, and those of them the provider had already answered are billed twice (the
ledger still holds one row each). Not guaranteed: billed calls == ledger rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from rel_support import billed_calls, ledger_rows, make_rows, output_rows, record_counts

from actors.runtime import Runtime
from jobs.batch import service_call
from jobs.batch_core import BatchConfig, run_batch
from jobs.batch_output import OutputWriter
from llm.emulator.server import settings_for
from llm.retry import RetryConfig
from llm.service import LLMService

FAST_RETRY = RetryConfig(initial_delay=0.01, max_delay=0.05, jitter=False)
CONCURRENCY = 12


async def _kill_when_busy(runtime: Runtime, emulator, after_requests: int) -> dict:
    """Wait until the emulator saw ``after_requests`` calls, then kill the Anthropic actor."""
    ray = pytest.importorskip("ray")
    while emulator.engine.stats.by_provider.get("anthropic", 0) < after_requests:
        await asyncio.sleep(0.01)
    (handle,) = runtime.provider_actors()["anthropic"]
    before = await handle.stats.remote()
    ray.kill(handle, no_restart=False)
    return {"in_flight_at_kill": before.in_flight, "requests_before_kill": before.requests}


@pytest.mark.parametrize(
    "rows", [pytest.param(60, id="short"), pytest.param(600, marks=pytest.mark.reliability_full)]
)
async def test_killed_provider_actor_is_restarted_and_the_job_completes(
    ray_session, emulator_factory, tmp_path, rows
) -> None:
    emulator = emulator_factory(latency_ms=200)
    settings = settings_for(emulator.base_url).with_overrides(ledger_dir=str(tmp_path / "ledger"))
    runtime = Runtime(
        settings=settings, namespace=f"rel-{uuid.uuid4().hex[:8]}", retry_config=FAST_RETRY
    ).start()
    service = LLMService(
        executor=runtime.executor(), settings=settings, enable_cost_tracking=False, offline=False
    )
    writer = OutputWriter(tmp_path / "out", flush_rows=10)
    try:
        killer = asyncio.create_task(_kill_when_busy(runtime, emulator, rows // 10))
        summary = await run_batch(
            make_rows(rows, prefix="a"),
            call=service_call(service),
            writer=writer,
            done_ids=set(),
            config=BatchConfig(job_id="actor-kill", concurrency=CONCURRENCY),
        )
        at_kill = await killer
        (handle,) = runtime.provider_actors()["anthropic"]
        after = await handle.stats.remote()
    finally:
        await service.aclose()
        runtime.shutdown(kill_actors=True)
    assert summary.ok == rows and summary.failed == 0, summary.failures_by_type
    assert at_kill["in_flight_at_kill"] > 0, "the actor died with calls in flight"
    out = output_rows(tmp_path / "out")
    assert Counter(row["id"] for row in out) == Counter(f"a{i:05d}" for i in range(rows))
    assert {row["status"] for row in out} == {"ok"}
    ledger = ledger_rows(tmp_path / "ledger")
    assert Counter(row["request_id"] for row in ledger).most_common(1)[0][1] == 1
    assert {row["request_id"] for row in ledger} == {row["request_id"] for row in out}
    stats = emulator.engine.stats
    billed, resent = billed_calls(stats), stats.requests - rows
    assert 1 <= resent <= CONCURRENCY, "the calls in flight were re-run, and only those"
    assert after.requests >= resent, "the restarted actor (fresh counters) re-ran them"
    # A first copy the provider answered while the actor was dying is billed and lost.
    assert rows <= billed <= rows + resent
    record_counts(
        f"actor_kill_{rows}",
        {"rows": rows, **at_kill, "rows_ok": summary.ok, "ledger_rows": len(ledger)}
        | {"billed_calls": billed, "billed_twice": billed - rows, "calls_resent": resent}
        | {"rows_lost": 0},
    )
