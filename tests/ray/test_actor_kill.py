"""A provider actor killed while 40 calls are in flight: every call completes, billed once."""

from __future__ import annotations

import asyncio

import pytest

from llm.service import LLMService
from llm.types import Message, MessageRole
from runtime.ledger_store import read_ledger

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::llm.service_checks.ModelLifecycleWarning"),
]

CALLS = 40


async def until(probe, attempts=300):
    """Poll ``probe()`` (async) until it returns something truthy."""
    for _ in range(attempts):
        if value := await probe():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition never reached")


def start_calls(service, directive=""):
    ids = [f"kill-{i}" for i in range(CALLS)]
    calls = [
        asyncio.ensure_future(
            service.generate(
                model="claude-haiku-4.5",
                messages=[Message(role=MessageRole.USER, content=f"Question {i} {directive}")],
                request_id=rid,
            )
        )
        for i, rid in enumerate(ids)
    ]
    return ids, calls


async def kill_and_finish(runtime, service, ids, calls, actor, before_pid):
    import ray

    ray.kill(actor, no_restart=False)
    answers = await asyncio.gather(*calls)
    await service.aclose()
    assert len(answers) == CALLS and all(a.text for a in answers)
    assert (await actor.describe.remote())["pid"] != before_pid  # it really was restarted
    await runtime.ledger().flush.remote()
    table = read_ledger(runtime.settings.ledger_dir)
    assert sorted(table.column("request_id").to_pylist()) == sorted(ids)  # one row per call
    return answers, table


async def test_killed_during_provider_calls_every_call_completes_once(runtime):
    service = LLMService(settings=runtime.settings, executor=runtime.executor())
    ids, calls = start_calls(service, "[[emu:latency_ms=1500]]")
    (actor,) = runtime.provider_actors()["anthropic"]
    pid = (await actor.describe.remote())["pid"]

    async def all_in_flight():
        return (await actor.stats.remote()).in_flight >= CALLS

    await until(all_in_flight)
    await kill_and_finish(runtime, service, ids, calls, actor, pid)


async def test_killed_after_the_provider_answered_but_before_the_ledger_ack_bills_once(
    make_runtime, ray_emulator
):
    """The re-run calls the provider again, but the ledger keeps the first row of each id."""
    from actors.factory import get_or_create_provider_actors
    from actors.runtime import public_settings
    from llm.emulator.server import settings_for
    from runtime.keys import account_keys
    from runtime.limits_config import load_limits

    def slow_commit_ledger(namespace, ledger_dir):
        """Provider actors whose journal writes wait 3 s: answered, not yet acknowledged."""
        settings = settings_for(ray_emulator.base_url).with_overrides(ledger_dir=ledger_dir)
        limits = load_limits(settings)
        get_or_create_provider_actors(
            public_settings(settings),
            limits,
            namespace=namespace,
            journal_commit_s=3.0,
            keys=account_keys(settings, limits),  # the runtime's names: found, not re-created
        )

    runtime = make_runtime(before=slow_commit_ledger)
    service = LLMService(settings=runtime.settings, executor=runtime.executor())
    ids, calls = start_calls(service)
    (actor,) = runtime.provider_actors()["anthropic"]
    pid = (await actor.describe.remote())["pid"]

    async def all_awaiting_the_ledger():
        return await actor.journal_pending.remote() == CALLS

    await until(all_awaiting_the_ledger)
    answers, table = await kill_and_finish(runtime, service, ids, calls, actor, pid)
    assert (await actor.stats.remote()).successes == CALLS  # the restarted actor re-ran them all
    assert sum(table.column("total_cost").to_pylist()) == sum(a.cost.total_cost for a in answers)
