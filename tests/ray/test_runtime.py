"""The service through the Ray actors: same answers as in process, one shared set of actors,
an exact ledger (the LedgerActor as a plain class is tested in tests/test_ledger_actor.py)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from actors.factory import router_name
from actors.runtime import Runtime
from llm.emulator.server import settings_for, start_in_thread
from llm.exceptions import ContextLengthError
from llm.registry import get_model_info
from llm.retry import RetryConfig
from llm.service import LLMService
from llm.types import Message, MessageRole
from runtime.keys import cluster_salt, fingerprint
from runtime.ledger_store import read_ledger

pytestmark = pytest.mark.filterwarnings("ignore::llm.service_checks.ModelLifecycleWarning")

FAST_RETRY = RetryConfig(initial_delay=0.01, max_delay=0.05, jitter=False)

SCHEMA = {
    "type": "object",
    "properties": {"colors": {"type": "object"}, "typography": {"type": "object"}},
    "required": ["colors", "typography"],
}
TOOLS = [
    {
        "name": "render_component",
        "description": "Render a React component in sandbox",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string"}},
            "required": ["code"],
        },
    }
]
COMPARED = {
    "text",
    "model",
    "provider",
    "usage",
    "cost",
    "tool_calls",
    "finish_reason",
    "structured_output",
    "reasoning_text",
}


def ask(text, system=None):
    messages = [Message(role=MessageRole.SYSTEM, content=system)] if system else []
    return [*messages, Message(role=MessageRole.USER, content=text)]


def style_guide(tag):
    rules = "\n".join(f"- Rule {i}: typed props and accessible markup ({tag})." for i in range(260))
    return "You are an expert React developer.\n" + rules


async def run_features(service, tag):
    """Every key feature once (caching twice); the answers, in comparable form."""
    answers = [
        await service.generate(model="claude-haiku-4.5", messages=ask(f"Explain caching {tag}")),
        await service.generate(model="gemini-2.5-flash-lite", messages=ask(f"Summarise {tag}")),
        await service.generate(
            model="gpt-6-luna",
            messages=ask(f"Extract design tokens {tag}"),
            structured_output_schema=SCHEMA,
        ),
        await service.generate(
            model="claude-sonnet-4.6",
            messages=ask(f"Render a button {tag}"),
            tools=TOOLS,
            tool_choice="required",
        ),
        await service.generate(
            model="gpt-6.1-sol",
            messages=ask(f"Analyse this designer's taste {tag}"),
            reasoning_effort="high",
            max_tokens=8000,
        ),
    ]
    cached = ask(f"Create a card component {tag}", style_guide(tag))
    for _ in range(2):
        answers.append(
            await service.generate(model="claude-sonnet-4.6", messages=cached, enable_caching=True)
        )
    stream = service.generate_stream(model="gpt-6-luna", messages=ask(f"Write a story {tag}"))
    chunks = [chunk async for chunk in stream]
    answers.append(stream.response)
    comparable = [answer.model_dump(include=COMPARED) for answer in answers]
    for item in comparable:  # tool call ids are random per answer; compare name + arguments
        item["tool_calls"] = [{k: c[k] for k in ("name", "arguments")} for c in item["tool_calls"]]
    return comparable, chunks


@pytest.mark.ray
async def test_every_feature_gives_the_same_answer_through_the_actors_as_in_process(runtime):
    tag = uuid.uuid4().hex[:8]  # a fresh prompt: the shared emulator's cache starts cold
    ray_service = LLMService(settings=runtime.settings, executor=runtime.executor())
    through_ray, ray_chunks = await run_features(ray_service, tag)
    await ray_service.aclose()

    local_emulator = start_in_thread()
    try:
        local = LLMService(settings=settings_for(local_emulator.base_url), retry_config=FAST_RETRY)
        in_process, local_chunks = await run_features(local, tag)
        await local.aclose()
    finally:
        local_emulator.stop()

    assert through_ray == in_process
    assert ray_chunks == local_chunks and len(ray_chunks) > 1
    structured, tool, reasoning, first, second = (through_ray[i] for i in (2, 3, 4, 5, 6))
    assert {"colors", "typography"} <= set(structured["structured_output"])
    assert tool["tool_calls"][0]["name"] == "render_component"
    assert reasoning["usage"]["reasoning_tokens"] > 0
    assert first["usage"]["cached_tokens"] == 0 and second["usage"]["cached_tokens"] > 0


@pytest.mark.ray
async def test_ledger_total_is_the_exact_sum_of_the_answers_costs(runtime):
    service = LLMService(settings=runtime.settings, executor=runtime.executor())
    models = ["claude-haiku-4.5", "gpt-6-luna", "gemini-2.5-flash-lite", "claude-sonnet-4.6"]
    ids = [f"cost-{i}" for i in range(12)]
    answers = await asyncio.gather(
        *(
            service.generate(
                model=models[i % 4], messages=ask(f"Question {i} {rid}"), request_id=rid
            )
            for i, rid in enumerate(ids)
        )
    )
    await service.aclose()

    totals = await runtime.ledger().totals.remote()
    assert totals["total_cost"] == sum((a.cost.total_cost for a in answers), Decimal(0))
    assert totals["requests"] == len(answers)
    assert totals["total_tokens"] == sum(a.usage.total_tokens for a in answers)
    assert {m: v["requests"] for m, v in totals["by_model"].items()} == {m: 3 for m in models}
    table = read_ledger(runtime.settings.ledger_dir)
    assert sorted(table.column("request_id").to_pylist()) == sorted(ids)


@pytest.mark.ray
async def test_every_driver_gets_the_same_actors(runtime):
    import ray

    again = Runtime(settings=runtime.settings, namespace=runtime.namespace).start()
    first = {h._actor_id for h in [*runtime.provider_handles(), runtime.ledger(), runtime.router()]}
    second = {h._actor_id for h in [*again.provider_handles(), again.ledger(), again.router()]}
    assert first == second
    fp = fingerprint("emulator-key", cluster_salt())  # the key of settings_for(...)
    providers = {p: [f"llm-provider-{p}-default-{fp}"] for p in ("anthropic", "google", "openai")}
    named = ray.util.list_named_actors(all_namespaces=True)
    alive = [a["name"] for a in named if a["namespace"] == runtime.namespace]
    assert sorted(alive) == sorted(
        ["llm-ledger", router_name(providers), *(n for ns in providers.values() for n in ns)]
    )
    table = await runtime.router().routes.remote()
    assert {p: [a.name for a in table.actors(p)] for p in table.providers} == providers


@pytest.mark.ray
async def test_an_actors_error_reaches_the_caller_as_the_same_llm_error(runtime):
    service = LLMService(settings=runtime.settings, executor=runtime.executor())
    window = get_model_info("claude-haiku-4.5").context_window
    with pytest.raises(ContextLengthError) as info:
        await service.generate(model="claude-haiku-4.5", messages=ask("word " * (window + 2000)))
    await service.aclose()
    assert type(info.value) is ContextLengthError
    assert info.value.max_tokens == window and info.value.tokens_used > window


@pytest.mark.ray
async def test_llm_service_with_runtime_ray_sends_calls_through_the_actors(
    ray_session, ray_emulator, tmp_path
):
    settings = settings_for(ray_emulator.base_url).with_overrides(ledger_dir=str(tmp_path))
    service = LLMService(settings=settings, runtime="ray", retry_config=FAST_RETRY)
    try:
        answer = await service.generate(
            model="gpt-6-luna", messages=ask("Through the actors?"), request_id="svc-1"
        )
    finally:
        await service.aclose()
        for name in ray_session.util.list_named_actors(all_namespaces=True):
            if name["namespace"] == "llm":
                ray_session.kill(ray_session.get_actor(name["name"], namespace="llm"))
    table = read_ledger(tmp_path)
    assert table.column("request_id").to_pylist() == ["svc-1"]
    assert table.column("total_cost").to_pylist() == [answer.cost.total_cost]


def test_runtime_helpers_do_not_need_ray_started():
    runtime = Runtime(settings=settings_for("http://127.0.0.1:1"))
    assert not runtime.is_started
    with pytest.raises(RuntimeError):
        runtime.ledger()
