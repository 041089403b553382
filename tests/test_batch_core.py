"""The batch engine with fake calls: concurrency, errors, resume, each id once, budget,
cache-aware ordering, cancellation; plus the progress bar and summary text."""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal

import pyarrow.compute as pc
import pytest

from jobs.batch_core import BatchConfig, BatchSummary, BudgetGuard, run_batch
from jobs.batch_input import parse_row
from jobs.batch_output import OutputWriter, read_output, retire_retryable, scan_done_ids
from jobs.batch_progress import format_summary
from jobs.batch_schedule import CacheAwareScheduler, prefix_key
from llm.exceptions import InvalidRequestError, RateLimitError
from llm.types import Cost, LLMResponse, Usage

LONG_SYSTEM_A = "alpha " * 1100
LONG_SYSTEM_B = "beta " * 1100


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeCall:
    """Answers every row; ``fail`` maps row ids to errors; tracks concurrency and order."""

    def __init__(self, fail=None, cost="0.001", gates=None):
        self.fail = dict(fail or {})
        self.cost = Decimal(cost)
        self.gates = dict(gates or {})
        self.started: list[str] = []
        self.request_ids: dict[str, str] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, row):
        self.started.append(row.row_id)
        self.request_ids[row.row_id] = row.request_id
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if row.row_id in self.gates:
                await self.gates[row.row_id].wait()
            if row.row_id in self.fail:
                raise self.fail[row.row_id]
            return LLMResponse(
                text=f"answer {row.row_id}",
                model="gpt-4.1",
                provider="openai",
                usage=Usage(input_tokens=10, output_tokens=5),
                cost=Cost(input_cost=self.cost),
            )
        finally:
            self.in_flight -= 1


def rows(ids, **extra):
    return [{"id": i, "model": "gpt-4.1", "prompt": f"question {i}", **extra} for i in ids]


def cached(row_id, system):
    return {
        "id": row_id,
        "model": "claude-sonnet-4.6",
        "system": system,
        "prompt": f"q {row_id}",
        "enable_caching": True,
    }


async def run(tmp_path, items, call, *, done=None, concurrency=4, budget=None, **config):
    writer = OutputWriter(tmp_path, flush_rows=1000)
    summary = await run_batch(
        items,
        call=call,
        writer=writer,
        done_ids=set() if done is None else done,
        config=BatchConfig(job_id="job-1", concurrency=concurrency, **config),
        budget=budget,
    )
    return summary


def ids_in(tmp_path):
    return read_output(tmp_path)["id"].to_pylist()


async def test_concurrency_bound_is_respected_and_reached(tmp_path):
    call = FakeCall()
    summary = await run(tmp_path, rows([f"r{i}" for i in range(50)]), call, concurrency=4)
    assert call.max_in_flight == 4
    assert summary.ok == 50 and sorted(ids_in(tmp_path)) == sorted(f"r{i}" for i in range(50))


async def test_row_errors_are_recorded_and_the_job_goes_on(tmp_path):
    call = FakeCall(fail={"b": InvalidRequestError("bad row"), "c": RuntimeError("boom")})
    items = [*rows(["a", "b", "c", "d"]), {"id": "e", "prompt": "x", "colour": "red"}]
    summary = await run(tmp_path, items, call)
    assert summary.ok == 2 and summary.failed == 3
    assert summary.failures_by_type == {
        "InvalidRequestError": 2,  # the call's and the unknown field's
        "RuntimeError": 1,
    }
    table = read_output(tmp_path)
    errors = table.filter(pc.equal(table["status"], "error"))
    assert sorted(errors["id"].to_pylist()) == ["b", "c", "e"]
    assert "e" not in call.started  # an invalid row is never sent


async def test_rows_carry_the_contract_request_id(tmp_path):
    call = FakeCall()
    await run(tmp_path, rows(["a"]), call)
    expected = hashlib.sha256(b"job-1/a").hexdigest()[:32]
    assert call.request_ids["a"] == expected
    assert read_output(tmp_path)["request_id"].to_pylist() == [expected]


async def test_resume_skips_done_ids_and_calls_nothing_for_them(tmp_path):
    call = FakeCall()
    summary = await run(tmp_path, rows(["a", "b", "c"]), call, done={"a", "c"})
    assert call.started == ["b"]
    assert summary.skipped_done == 2 and summary.ok == 1


async def test_duplicate_input_ids_are_written_once(tmp_path):
    call = FakeCall()
    summary = await run(tmp_path, rows(["a", "b", "a", "a"]), call)
    assert sorted(call.started) == ["a", "b"]
    assert sorted(ids_in(tmp_path)) == ["a", "b"]
    assert summary.duplicates == 2


async def test_transient_failures_are_retried_on_rerun_and_each_id_stays_once(tmp_path):
    first = FakeCall(fail={"b": RateLimitError("429")})
    await run(tmp_path, rows(["a", "b", "c"]), first)
    assert sorted(ids_in(tmp_path)) == ["a", "b", "c"]

    assert retire_retryable(tmp_path) == 1
    second = FakeCall()
    await run(tmp_path, rows(["a", "b", "c"]), second, done=scan_done_ids(tmp_path))
    assert second.started == ["b"]
    table = read_output(tmp_path)
    assert sorted(table["id"].to_pylist()) == ["a", "b", "c"]
    assert set(table["status"].to_pylist()) == {"ok"}


async def test_budget_stop_leaves_rows_for_a_rerun(tmp_path):
    one_dollar = lambda row: Decimal(1)  # noqa: E731
    call = FakeCall(cost="1")
    budget = BudgetGuard(Decimal("3.5"), estimate=one_dollar)
    ids = [f"r{i}" for i in range(10)]
    summary = await run(tmp_path, rows(ids), call, budget=budget, concurrency=8)
    assert summary.budget_stopped and summary.ok == 3 and summary.not_started == 7
    assert len(ids_in(tmp_path)) == 3

    more = BudgetGuard(Decimal("100"), estimate=one_dollar, spent_before=Decimal(3))
    call2 = FakeCall(cost="1")
    summary2 = await run(tmp_path, rows(ids), call2, budget=more, done=scan_done_ids(tmp_path))
    assert not summary2.budget_stopped and summary2.ok == 7 and summary2.spend == Decimal(10)
    assert sorted(ids_in(tmp_path)) == sorted(ids)


async def test_budget_counts_spend_before_this_run(tmp_path):
    budget = BudgetGuard(Decimal(2), estimate=lambda row: Decimal(1), spent_before=Decimal("1.5"))
    summary = await run(tmp_path, rows(["a", "b"]), FakeCall(cost="1"), budget=budget)
    assert summary.ok == 0 and summary.not_started == 2 and ids_in(tmp_path) == []


async def test_cache_aware_ordering_releases_one_leader_per_prefix_first(tmp_path):
    gate = asyncio.Event()
    call = FakeCall(gates={"a1": gate})
    items = [
        cached("a1", LONG_SYSTEM_A),
        cached("a2", LONG_SYSTEM_A),
        {"id": "p1", "model": "gpt-4.1", "prompt": "plain"},
        cached("b1", LONG_SYSTEM_B),
        cached("a3", LONG_SYSTEM_A),
        cached("b2", LONG_SYSTEM_B),
    ]
    task = asyncio.create_task(run(tmp_path, items, call, concurrency=4))
    for _ in range(200):
        await asyncio.sleep(0)
        if len(call.started) >= 4:
            break
    assert call.started[:2] == ["a1", "b1"]  # both leaders before anything else
    assert sorted(call.started) == ["a1", "b1", "b2", "p1"]  # a2/a3 wait for leader a1
    gate.set()
    await task
    assert call.started[4:] == ["a2", "a3"]


def test_scheduler_releases_followers_after_the_hold_timeout():
    clock = FakeClock()
    sched = CacheAwareScheduler(hold_s=5.0, clock=clock)
    leader, follower = (parse_row(cached(i, LONG_SYSTEM_A), 1) for i in ("x1", "x2"))
    sched.add(leader, "k")
    sched.add(follower, "k")
    assert sched.next_ready() is leader
    assert sched.next_ready() is None and sched.next_deadline() == 5.0
    clock.now = 5.0
    assert sched.next_ready() is follower


def test_scheduler_promotes_a_follower_when_the_leader_fails():
    sched = CacheAwareScheduler(clock=FakeClock())
    r1, r2, r3 = (parse_row(cached(i, LONG_SYSTEM_A), 1) for i in ("x1", "x2", "x3"))
    for row in (r1, r2, r3):
        sched.add(row, "k")
    assert sched.next_ready() is r1
    sched.finished(r1, ok=False)
    assert sched.next_ready() is r2
    assert sched.next_ready() is None  # r3 waits for the new leader
    sched.finished(r2, ok=True)
    assert sched.next_ready() is r3


def test_prefix_key_needs_caching_and_a_long_enough_prefix():
    long_a = parse_row(cached("a", LONG_SYSTEM_A), 1)
    long_a2 = parse_row(cached("a2", LONG_SYSTEM_A), 2)
    short = parse_row(cached("s", "short system"), 3)
    no_cache = parse_row({**cached("n", LONG_SYSTEM_A), "enable_caching": False}, 4)
    other_model = parse_row({**cached("o", LONG_SYSTEM_A), "model": "gpt-4.1"}, 5)
    assert prefix_key(long_a) is not None and prefix_key(long_a) == prefix_key(long_a2)
    assert prefix_key(short) is None and prefix_key(no_cache) is None
    assert prefix_key(other_model) != prefix_key(long_a)


async def test_cancellation_flushes_finished_rows_and_a_rerun_completes(tmp_path):
    ids = [f"r{i:02d}" for i in range(20)]
    never = asyncio.Event()
    call = FakeCall(gates={i: never for i in ids[5:]})
    task = asyncio.create_task(run(tmp_path, rows(ids), call, concurrency=20))
    for _ in range(200):
        await asyncio.sleep(0)
        if len(call.started) == 20 and call.in_flight == 15:
            break
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ids_in(tmp_path)) == ids[:5]  # flushed although flush_rows is 1000

    call2 = FakeCall()
    await run(tmp_path, rows(ids), call2, done=scan_done_ids(tmp_path))
    assert sorted(call2.started) == ids[5:]
    assert sorted(ids_in(tmp_path)) == ids


def test_summary_text_lists_failures_costs_and_savings():
    summary = BatchSummary(
        rows_seen=10,
        ok=8,
        failed=2,
        skipped_done=0,
        cost=Decimal("1.5"),
        cache_savings=Decimal("0.75"),
        budget_usd=Decimal("2"),
        budget_stopped=True,
        not_started=4,
    )
    summary.failures_by_type.update({"RateLimitError": 1, "InvalidRequestError": 1})
    text = format_summary(summary)
    assert "RateLimitError: 1" in text and "InvalidRequestError: 1" in text
    assert "Cost: $1.5000" in text and "Cache savings: $0.7500" in text
    assert "Budget of $2 reached: 4 rows not started" in text


def test_a_row_is_prepared_once_and_the_scheduler_uses_the_cache_gates_key(monkeypatch):
    import llm.prepare
    from runtime import cache_keys

    row = parse_row(cached("a", LONG_SYSTEM_A), 1)
    prepared = []
    real = llm.prepare.prepare_request

    def counting(*args, **kwargs):
        prepared.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("jobs.batch_input.prepare_request", counting)
    key = prefix_key(row)
    request = row.request()
    assert row.request() is request and len(prepared) == 1  # parsed once, then kept
    assert key == cache_keys.prefix_key(request) and cache_keys.is_gated(request)
    bad = parse_row({"id": "b", "model": "no-such-model", "prompt": "x"}, 2)
    assert prefix_key(bad) is None


def test_the_budget_guard_raises_budget_exceeded_at_the_cap():
    from llm.exceptions import BudgetExceededError

    budget = BudgetGuard(Decimal(2), estimate=lambda row: Decimal(1), spent_before=Decimal("1.5"))
    with pytest.raises(BudgetExceededError) as caught:
        budget.admit(parse_row(cached("a", "s"), 1))
    assert caught.value.budget_usd == 2.0 and caught.value.spent_usd == 1.5
