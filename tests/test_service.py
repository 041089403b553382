"""LLMService with fake executors and adapters: no network, no emulator."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import pickle
import sys
import warnings
from decimal import Decimal

import pytest

from llm.config import Settings
from llm.cost import CostTracker
from llm.exceptions import (
    ConfigurationError,
    ContextLengthError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelRetiredError,
    ProviderConnectionError,
    RateLimitError,
    StructuredOutputError,
)
from llm.executor import Executed, LocalExecutor
from llm.models import Capabilities
from llm.pricing import compute_cost
from llm.providers.base import ProviderResult, ToolSpec
from llm.registry import get_model_info
from llm.retry import RetryConfig
from llm.service import LLMService, ModelLifecycleWarning
from llm.types import ImageContent, Message, MessageRole, TextContent, ToolCall, Usage
from tests.conftest import SENTINEL_KEY

pytestmark = pytest.mark.filterwarnings("ignore::llm.service_checks.ModelLifecycleWarning")

TODAY = dt.date(2026, 11, 24)
PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da6364f8ff3f0003010100189dd6b40000000049454e44ae426082"
    )
).decode()
SCHEMA = {
    "type": "object",
    "properties": {"colors": {"type": "object"}, "typography": {"type": "object"}},
    "required": ["colors", "typography"],
}


def keyed_settings(**changes) -> Settings:
    return Settings().with_overrides(
        anthropic_api_key=SENTINEL_KEY,
        openai_api_key=SENTINEL_KEY,
        google_api_key=SENTINEL_KEY,
        **changes,
    )


def result(text="ok", *, input_tokens=10, output_tokens=5, **kwargs) -> ProviderResult:
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return ProviderResult(
        text=text, usage=usage, request_id=kwargs.pop("request_id", None), **kwargs
    )


class FakeExecutor:
    """Returns scripted results (or raises scripted errors); records requests."""

    def __init__(self, *results, chunks=("Hel", "lo")):
        self.results = list(results)
        self.chunks = chunks
        self.requests = []
        self.contexts = []
        self.closed = False

    async def execute(self, request, ctx):
        self.requests.append(request)
        self.contexts.append(ctx)
        item = self.results.pop(0) if self.results else result()
        if isinstance(item, Exception):
            raise item
        return Executed(result=item, attempts=1)

    async def execute_stream(self, request, ctx):
        self.requests.append(request)
        for chunk in self.chunks:
            yield chunk
        yield Executed(result=self.results.pop(0) if self.results else result(), attempts=1)

    async def aclose(self):
        self.closed = True


def make_service(executor=None, **kwargs) -> tuple[LLMService, FakeExecutor]:
    executor = executor or FakeExecutor()
    kwargs.setdefault("settings", keyed_settings())
    service = LLMService(executor=executor, today=TODAY, **kwargs)
    return service, executor


def user(text="Hi") -> list[Message]:
    return [Message(role=MessageRole.USER, content=text)]


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "non-empty"),
        (None, "non-empty"),
        ([Message(role=MessageRole.ASSISTANT, content="x")], "last message"),
        ([{"role": "wizard", "content": "x"}], "role must be one of"),
        ([42], "must be a Message or a dict"),
        (
            [Message(role=MessageRole.USER, content=[ImageContent(data="@@not-b64@@")])],
            "base64",
        ),
        (
            [
                Message(
                    role=MessageRole.USER,
                    content=[ImageContent(data=PNG_1X1, media_type="image/bmp")],
                )
            ],
            "media type",
        ),
        ([Message(role=MessageRole.TOOL, content="42")], "tool_call_id"),
    ],
)
async def test_invalid_messages_rejected_before_sending(messages, fragment):
    service, executor = make_service()
    with pytest.raises(InvalidRequestError, match=fragment):
        await service.generate(model="claude-haiku-4.5", messages=messages)
    assert executor.requests == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort must be one of"),
        ({"model": "gpt-4.1", "reasoning_effort": "high"}, "not a reasoning model"),
        ({"max_tokens": 64001}, "above claude-haiku-4.5's limit"),
        ({"max_tokens": 0}, "positive integer"),
        ({"structured_output_schema": {"type": "nonsense"}}, "not a valid JSON Schema"),
        ({"tools": [{"name": "bad name!"}]}, "name must be"),
        (
            {"tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": 5}}}]},
            "not a valid JSON Schema",
        ),
        ({"tools": [{"description": "no name"}]}, "not a tool definition"),
        ({"tools": [{"name": "a"}, {"name": "a"}]}, "duplicate tool names"),
        ({"tool_choice": "auto"}, "tool_choice needs tools"),
        ({"tools": [{"name": "a"}], "tool_choice": "b"}, "tool_choice must be"),
        ({"temperature": 3.0}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"timeout": -1}, "timeout"),
        ({"cache_ttl": "2h"}, "cache_ttl"),
        ({"budget": "low"}, "budget is used only together with task"),
        ({"model": None, "task": "juggling"}, "juggling"),
    ],
)
async def test_invalid_options_rejected(kwargs, fragment):
    service, executor = make_service()
    kwargs = {"model": "claude-haiku-4.5", **kwargs}
    with pytest.raises(InvalidRequestError, match=fragment):
        await service.generate(messages=user(), **kwargs)
    assert executor.requests == []


async def test_capability_checks_use_the_model_record(monkeypatch):
    plain = get_model_info("gpt-4.1").model_copy(update={"capabilities": Capabilities()})
    monkeypatch.setattr("llm.prepare.resolve_model", lambda name: plain)
    service, executor = make_service()
    image = [
        Message(role=MessageRole.USER, content=[ImageContent(data=PNG_1X1), TextContent(text="?")])
    ]
    with pytest.raises(InvalidRequestError, match="does not accept images"):
        await service.generate(model="gpt-4.1", messages=image)
    with pytest.raises(InvalidRequestError, match="does not support tools"):
        await service.generate(model="gpt-4.1", messages=user(), tools=[{"name": "t"}])
    assert executor.requests == []


async def test_missing_key_names_env_vars_and_offline_mode():
    service = LLMService(settings=Settings(), today=TODAY)
    with pytest.raises(ConfigurationError) as info:
        await service.generate(model="gpt-4.1", messages=user())
    assert "OPENAI_API_KEY" in str(info.value)
    assert "LLM_OFFLINE=1" in str(info.value)


# ----------------------------------------------------------------------------- models


async def test_dated_id_resolves_to_canonical_name():
    service, executor = make_service()
    response = await service.generate(model="claude-haiku-4-5-20251001", messages=user())
    assert response.model == "claude-haiku-4.5"
    assert response.provider == "anthropic"
    assert executor.requests[0].model.name == "claude-haiku-4.5"


async def test_unknown_model_suggests_names_without_sending():
    service, executor = make_service()
    with pytest.raises(ModelNotFoundError) as info:
        await service.generate(model="claude-haiku-4-6", messages=user())
    assert "claude-haiku-4.5" in info.value.suggestions
    assert executor.requests == []


async def test_deprecated_model_warns_once_and_still_sends():
    service, executor = make_service()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await service.generate(model="claude-sonnet-4.5", messages=user())
        await service.generate(model="claude-sonnet-4.5", messages=user())
        await service.generate(model="claude-haiku-4.5", messages=user())
    lifecycle = [w for w in caught if issubclass(w.category, ModelLifecycleWarning)]
    assert len(lifecycle) == 1
    assert "claude-sonnet-4.5 is deprecated" in str(lifecycle[0].message)
    assert len(executor.requests) == 3


async def test_retired_model_fails_fast_naming_the_replacement_and_sends_nothing():
    service, executor = make_service()
    with pytest.raises(ModelRetiredError) as caught:
        await service.generate(model="o4-mini", messages=user(), reasoning_effort="high")
    error = caught.value
    assert str(error).endswith("o4-mini was retired on 2026-10-23; use gpt-5.6-terra")
    assert (error.replacement, error.retired_on, error.status) == (
        "gpt-5.6-terra",
        "2026-10-23",
        404,
    )
    assert isinstance(error, ModelNotFoundError) and error.suggestions == ["gpt-5.6-terra"]
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.replacement, str(again)) == (
        ModelRetiredError,
        "gpt-5.6-terra",
        str(error),
    )
    assert executor.requests == []
    with pytest.raises(ModelRetiredError, match="use claude-opus-5.5"):
        service.generate_stream(model="claude-opus-4.1", messages=user())
    assert executor.requests == []


async def test_defaults_come_from_settings_and_model():
    settings = keyed_settings(default_model="gpt-4o", enable_caching=True)
    service, executor = make_service(settings=settings)
    await service.generate(messages=[{"role": "user", "content": "Hi"}])
    request = executor.requests[0]
    assert request.model.name == "gpt-4o"
    assert request.max_tokens == 4096
    assert request.enable_caching is True
    assert request.messages == (Message(role=MessageRole.USER, content="Hi"),)
    await service.generate(model="gpt-4o", messages=user(), enable_caching=False, max_tokens=99)
    assert executor.requests[1].enable_caching is False
    assert executor.requests[1].max_tokens == 99


async def test_task_picks_the_recommended_model():
    service, executor = make_service()
    expected = service.get_recommended_model("code_generation", budget="low")
    await service.generate(messages=user(), task="code_generation", budget="low")
    assert executor.requests[0].model.name == expected


async def test_prompt_clearly_over_the_window_fails_before_sending():
    service, executor = make_service()
    huge = "word " * 260_000
    with pytest.raises(ContextLengthError) as info:
        await service.generate(model="claude-haiku-4.5", messages=user(huge))
    assert info.value.max_tokens == 200_000
    assert info.value.tokens_used > 210_000
    assert executor.requests == []


# ----------------------------------------------------------------------------- tools


async def test_tool_formats_are_normalised_and_calls_returned_as_dicts():
    params = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    tools = [
        {
            "type": "function",
            "function": {"name": "render", "description": "R", "parameters": params},
        },
        {"name": "lint", "description": "L", "input_schema": params},
        ToolSpec(name="ship", parameters=params),
    ]
    call = ToolCall(id="call_1", name="render", arguments={"code": "<b/>"})
    executor = FakeExecutor(result("", tool_calls=(call,), finish_reason="tool_calls"))
    service, _ = make_service(executor)
    response = await service.generate(
        model="claude-haiku-4.5",
        messages=user(),
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "lint"}},
    )
    request = executor.requests[0]
    assert request.tools == (
        ToolSpec(name="render", description="R", parameters=params),
        ToolSpec(name="lint", description="L", parameters=params),
        ToolSpec(name="ship", parameters=params),
    )
    assert request.tool_choice == "lint"
    assert response.tool_calls == [
        {"id": "call_1", "name": "render", "arguments": {"code": "<b/>"}}
    ]
    assert response.finish_reason == "tool_calls"


# ----------------------------------------------------------------------------- structured


async def test_structured_output_reasks_then_succeeds_and_bills_both_calls():
    bad = result('{"colors": {}}', input_tokens=100, output_tokens=10)
    good = result(
        '```json\n{"colors": {"a": 1}, "typography": {}}\n```', input_tokens=130, output_tokens=20
    )
    tracker = CostTracker()
    service, executor = make_service(FakeExecutor(bad, good), cost_tracker=tracker)
    response = await service.generate(
        model="claude-haiku-4.5", messages=user("Extract"), structured_output_schema=SCHEMA
    )
    assert response.structured_output == {"colors": {"a": 1}, "typography": {}}
    assert response.usage == Usage(input_tokens=230, output_tokens=30)
    model = get_model_info("claude-haiku-4.5")
    expected = (
        compute_cost(model, bad.usage).total_cost + compute_cost(model, good.usage).total_cost
    )
    assert response.cost.total_cost == expected
    assert response.attempts == 2
    assert tracker.get_stats()["total_requests"] == 2
    assert tracker.get_stats()["total_cost"] == expected
    second = executor.requests[1].messages
    assert [m.role for m in second] == [MessageRole.USER, MessageRole.ASSISTANT, MessageRole.USER]
    assert second[1].text() == '{"colors": {}}'
    assert "typography" in second[2].text()
    assert '"required"' not in second[2].text()
    assert executor.contexts[0].request_id != executor.contexts[1].request_id


async def test_structured_output_failure_raises_with_raw_text():
    executor = FakeExecutor(result("not json"), result('{"colors": 1}'))
    service, _ = make_service(executor)
    with pytest.raises(StructuredOutputError) as info:
        await service.generate(model="gpt-4.1", messages=user(), structured_output_schema=SCHEMA)
    assert info.value.raw_text == '{"colors": 1}'
    assert info.value.validation_error
    assert '{"colors": 1}' not in str(info.value)
    assert service.get_cost_stats()["total_requests"] == 2


async def test_structured_retries_zero_means_one_call():
    executor = FakeExecutor(result("nope"))
    service, _ = make_service(executor, structured_output_retries=0)
    with pytest.raises(StructuredOutputError):
        await service.generate(model="gpt-4.1", messages=user(), structured_output_schema=SCHEMA)
    assert len(executor.requests) == 1


# ----------------------------------------------------------------------------- response


async def test_response_fields_ids_latency_and_metadata():
    ticks = iter([10.0, 10.5, 11.25, 11.5])
    executor = FakeExecutor(result("hi", request_id="req_provider"))
    service, _ = make_service(executor, clock=lambda: next(ticks))
    response = await service.generate(
        model="gpt-4.1", messages=user(), metadata={"team": "design"}, request_id="mine"
    )
    assert response.request_id == "req_provider"
    assert response.metadata == {"team": "design", "call_id": "mine"}
    assert response.latency_s == pytest.approx(1.5)
    assert response.cost == compute_cost(get_model_info("gpt-4.1"), response.usage)
    assert executor.contexts[0].request_id == "mine"


async def test_our_request_id_is_used_when_provider_gives_none():
    service, executor = make_service()
    response = await service.generate(model="gpt-4.1", messages=user())
    assert response.request_id == executor.contexts[0].request_id
    assert len(response.request_id) == 32


async def test_gemini_storage_hours_are_billed():
    executor = FakeExecutor(result(cache_storage_token_hours=Decimal(1_000_000)))
    service, _ = make_service(executor)
    response = await service.generate(model="gemini-2.5-flash-lite", messages=user())
    plain = compute_cost(get_model_info("gemini-2.5-flash-lite"), response.usage)
    assert response.cost.total_cost > plain.total_cost


# ----------------------------------------------------------------------------- streaming


async def test_stream_yields_chunks_then_exposes_tracked_response():
    service, _ = make_service(FakeExecutor(result("Hello", input_tokens=7, output_tokens=2)))
    stream = service.generate_stream(model="gpt-4.1", messages=user())
    with pytest.raises(RuntimeError):
        _ = stream.response
    chunks = [chunk async for chunk in stream]
    assert chunks == ["Hel", "lo"]
    assert stream.response.text == "Hello"
    assert stream.response.usage.total_tokens == 9
    assert stream.response.cost.total_cost > Decimal(0)
    assert service.get_cost_stats()["total_requests"] == 1


async def test_stream_validates_eagerly():
    service, executor = make_service()
    with pytest.raises(InvalidRequestError):
        service.generate_stream(model="gpt-4.1", messages=[])
    assert executor.requests == []


# ----------------------------------------------------------------------------- retry through LocalExecutor


class FakeAdapter:
    def __init__(self, script, stream_script=()):
        self.script = list(script)
        self.stream_script = list(stream_script)
        self.generate_calls = 0
        self.stream_calls = 0
        self.closed = False

    async def generate(self, request):
        self.generate_calls += 1
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def stream(self, request):
        self.stream_calls += 1
        for item in self.stream_script.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item

    async def aclose(self):
        self.closed = True


def local_service(adapter, sleeps, **retry):
    async def fake_sleep(delay):
        sleeps.append(delay)

    settings = keyed_settings()
    executor = LocalExecutor(
        settings,
        RetryConfig(jitter=False, **retry),
        sleep=fake_sleep,
        adapter_factory=lambda provider, settings: adapter,
    )
    return LLMService(settings=settings, executor=executor, today=TODAY)


async def test_rate_limit_is_retried_with_the_servers_delay():
    adapter = FakeAdapter([RateLimitError("slow down", retry_after_s=7.0), result("done")])
    sleeps = []
    service = local_service(adapter, sleeps, initial_delay=1.0)
    response = await service.generate(model="gpt-4.1", messages=user())
    assert response.attempts == 2
    assert response.text == "done"
    assert sleeps == [7.0]
    await service.aclose()
    assert adapter.closed


async def test_stream_failure_before_first_chunk_is_retried():
    script = [[ProviderConnectionError("reset")], ["a", "b", result("ab")]]
    adapter = FakeAdapter([], stream_script=script)
    sleeps = []
    service = local_service(adapter, sleeps, initial_delay=0.5)
    stream = service.generate_stream(model="gpt-4.1", messages=user())
    assert [c async for c in stream] == ["a", "b"]
    assert stream.response.attempts == 2
    assert sleeps == [0.5]


async def test_stream_is_not_retried_after_the_first_chunk():
    script = [["par", ProviderConnectionError("cut")], ["never"]]
    adapter = FakeAdapter([], stream_script=script)
    sleeps = []
    service = local_service(adapter, sleeps)
    stream = service.generate_stream(model="gpt-4.1", messages=user())
    seen = []
    with pytest.raises(ProviderConnectionError):
        async for chunk in stream:
            seen.append(chunk)
    assert seen == ["par"]
    assert adapter.stream_calls == 1
    assert sleeps == []
    with pytest.raises(RuntimeError):
        _ = stream.response


# ----------------------------------------------------------------------------- logging


async def test_log_line_has_numbers_but_no_texts_or_keys(caplog):
    service, _ = make_service(FakeExecutor(result("SECRET-ANSWER")))
    with caplog.at_level(logging.DEBUG, logger="llm"):
        await service.generate(model="gpt-4.1", messages=user("PRIVATE-PROMPT"), request_id="r1")
    text = caplog.text
    assert "model=gpt-4.1" in text and "call_id=r1" in text and "input_tokens=10" in text
    assert "PRIVATE-PROMPT" not in text
    assert "SECRET-ANSWER" not in text
    assert SENTINEL_KEY not in text


async def test_prompt_and_response_logged_only_when_enabled(caplog):
    settings = keyed_settings(log_prompts=True, log_responses=True)
    service, _ = make_service(FakeExecutor(result("SECRET-ANSWER")), settings=settings)
    with caplog.at_level(logging.INFO, logger="llm"):
        await service.generate(model="gpt-4.1", messages=user("PRIVATE-PROMPT"))
    assert "PRIVATE-PROMPT" in caplog.text
    assert "SECRET-ANSWER" in caplog.text
    assert SENTINEL_KEY not in caplog.text


async def test_failures_are_logged_without_texts(caplog):
    executor = FakeExecutor(RateLimitError("quota", quota_exhausted=True))
    service, _ = make_service(executor)
    with caplog.at_level(logging.INFO, logger="llm"), pytest.raises(RateLimitError):
        await service.generate(model="gpt-4.1", messages=user("PRIVATE-PROMPT"))
    assert "error=RateLimitError" in caplog.text
    assert "PRIVATE-PROMPT" not in caplog.text


# ----------------------------------------------------------------------------- lifecycle


async def test_context_manager_closes_executor_and_summary_prints(capsys):
    executor = FakeExecutor()
    async with LLMService(settings=keyed_settings(), executor=executor, today=TODAY) as service:
        await service.generate(model="gpt-4.1", messages=user())
        service.print_cost_summary()
    assert executor.closed
    out = capsys.readouterr().out
    assert "LLM COST SUMMARY" in out and "gpt-4.1:" in out and "Total Requests: 1" in out


async def test_cost_tracking_can_be_disabled():
    service, _ = make_service(enable_cost_tracking=False)
    response = await service.generate(model="gpt-4.1", messages=user())
    assert response.cost is not None
    assert service.get_cost_stats()["total_requests"] == 0
    assert service.cost_tracker is None


def test_unknown_runtime_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        LLMService(settings=keyed_settings(), runtime="threads")


def test_list_available_models_excludes_retired():
    service, _ = make_service()
    names = service.list_available_models()
    assert "claude-haiku-4.5" in names and "o4-mini" not in names


async def test_ray_runtime_without_its_executor_is_a_configuration_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "actors.runtime", None)  # makes the import fail
    service = LLMService(settings=keyed_settings(), runtime="ray", today=TODAY)
    with pytest.raises(ConfigurationError, match="actors.runtime"):
        await service.generate(model="gpt-4.1", messages=user())


async def test_task_routed_calls_are_marked_for_fallback_and_job_ids_reach_the_context():
    service, executor = make_service()
    routed = await service.generate(task="classification", budget="low", messages=user())
    named = await service.generate(
        model="claude-haiku-4.5", messages=user(), metadata={"job_id": "j1", "row_id": 7}
    )
    assert executor.contexts[0].routed_by_task is True  # a typed field, not a metadata key
    assert routed.metadata == {"call_id": routed.metadata["call_id"]}
    assert executor.contexts[1].routed_by_task is False
    assert (executor.contexts[1].job_id, executor.contexts[1].row_id) == ("j1", "7")
    assert named.metadata["job_id"] == "j1" and named.metadata["row_id"] == 7


async def test_the_injected_wall_clock_picks_the_price_in_force():
    before = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
    after = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    argon = get_model_info("gemini-4-argon")
    old_service, _ = make_service(now=lambda: before)
    new_service, _ = make_service(now=lambda: after)
    old = await old_service.generate(model="gemini-4-argon", messages=user())
    new = await new_service.generate(model="gemini-4-argon", messages=user())
    assert old.cost == compute_cost(argon, old.usage, at=before)
    assert new.cost.total_cost == 2 * old.cost.total_cost
    assert "price_effective_from" not in old.metadata
    assert new.metadata["price_effective_from"] == "2026-12-01"
    assert new_service.cost_tracker.records()[0]["price_effective_from"] == "2026-12-01"
