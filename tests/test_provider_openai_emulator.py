"""The OpenAI adapter end to end against the local emulator (real SDK, real HTTP on loopback)."""

from __future__ import annotations

import base64
import json
import struct

import jsonschema
import pytest

from llm.exceptions import (
    ContextLengthError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderOverloadedError,
    RateLimitError,
)
from llm.providers.base import ProviderRequest, ProviderResult, ToolSpec
from llm.providers.common import estimate_prompt_tokens
from llm.providers.openai import OpenAIAdapter
from llm.types import ImageContent, Message, MessageRole, TextContent
from tests.dates import emulator_on

server = pytest.importorskip("llm.emulator.server")
registry = pytest.importorskip("llm.registry")

#: A chat model without reasoning; gpt-4.1 retires 2027-01-14, so the emulator is pinned to
#: the reference day (tests/dates.py).
GPT = registry.resolve_model("gpt-4.1")
O4 = registry.resolve_model("gpt-5.6-terra")
WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


@pytest.fixture(scope="module")
async def adapter():
    async with emulator_on(server.EmulatorConfig()) as emu:
        instance = OpenAIAdapter(server.settings_for(emu.base_url))
        yield instance
        await instance.aclose()


def _req(text: str, *, system: str | None = None, model=None, **fields) -> ProviderRequest:
    messages = [Message(role=MessageRole.SYSTEM, content=system)] if system else []
    messages.append(Message(role=MessageRole.USER, content=text))
    fields.setdefault("max_tokens", 256)
    return ProviderRequest(model=model or GPT, messages=tuple(messages), **fields)


def _png(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", width, height)
    return base64.b64encode(header + b"\x08\x02" + b"\x00" * 30).decode()


async def test_generate_returns_text_usage_and_request_id(adapter):
    req = _req("Tell me about tides.", system="Be brief.")
    result = await adapter.generate(req)
    assert result.text and result.finish_reason == "stop"
    assert result.usage.input_tokens == estimate_prompt_tokens(req)
    assert result.usage.output_tokens > 0
    assert result.request_id
    assert result.model_version and result.model_version.startswith(GPT.api_id)


async def test_stream_yields_chunks_then_final_usage(adapter):
    req = _req("Write a few sentences. [[emu:tokens=60]]")
    items = [item async for item in adapter.stream(req)]
    chunks, final = items[:-1], items[-1]
    assert len(chunks) > 1 and all(isinstance(chunk, str) for chunk in chunks)
    assert isinstance(final, ProviderResult) and "".join(chunks) == final.text
    assert final.usage.input_tokens == estimate_prompt_tokens(req)
    assert final.usage.output_tokens > 0 and final.request_id


async def test_structured_output_validates(adapter):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    result = await adapter.generate(_req("A person, please.", structured_output_schema=schema))
    jsonschema.validate(json.loads(result.text), schema)


async def test_structured_output_on_a_reasoning_model_with_a_small_max_tokens(adapter):
    """Reasoning counts against ``max_completion_tokens``: the allowance keeps it from
    eating a short JSON answer (it did in ``make demo``: 9 rows failed their schema)."""
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["sentiment"],
        "additionalProperties": False,
    }
    req = _req("Classify: great!", model=O4, max_tokens=100, structured_output_schema=schema)
    result = await adapter.generate(req)
    assert result.finish_reason == "stop" and result.usage.reasoning_tokens > 0
    jsonschema.validate(json.loads(result.text), schema)


async def test_forced_tool_call(adapter):
    req = _req("Weather in Paris?", tools=(WEATHER,), tool_choice="get_weather")
    result = await adapter.generate(req)
    assert result.finish_reason == "tool_calls"
    assert [call.name for call in result.tool_calls] == ["get_weather"]
    jsonschema.validate(result.tool_calls[0].arguments, WEATHER.parameters)


async def test_forced_tool_call_streamed(adapter):
    req = _req("Weather in Rome?", tools=(WEATHER,), tool_choice="required")
    final = [item async for item in adapter.stream(req)][-1]
    assert final.finish_reason == "tool_calls" and final.tool_calls[0].name == "get_weather"
    jsonschema.validate(final.tool_calls[0].arguments, WEATHER.parameters)


async def test_reasoning_model_reports_reasoning_tokens(adapter):
    req = _req("Think about primes.", system="Be exact.", model=O4, reasoning_effort="high")
    result = await adapter.generate(req)
    assert 0 < result.usage.reasoning_tokens <= result.usage.output_tokens


async def test_image_is_counted(adapter):
    image = ImageContent(data=_png(1000, 1000))
    content = [TextContent(text="What is this?"), image]
    req = ProviderRequest(
        model=GPT, messages=(Message(role=MessageRole.USER, content=content),), max_tokens=64
    )
    result = await adapter.generate(req)
    assert result.usage.input_tokens == estimate_prompt_tokens(req) > 1333


async def test_repeated_long_prompt_is_cached_automatically(adapter):
    system = "Policy clause number seven applies. " * 300  # well over 1024 tokens
    req = _req("Summarise the policy.", system=system)
    first = await adapter.generate(req)
    second = await adapter.generate(req)
    assert first.usage.cached_tokens == 0
    assert 0 < second.usage.cached_tokens < second.usage.input_tokens
    assert second.usage.input_tokens == first.usage.input_tokens


async def test_context_overflow_carries_the_numbers(adapter):
    small = registry.resolve_model("gpt-4o")
    req = _req("word " * (small.context_window + 1000), model=small)
    with pytest.raises(ContextLengthError) as info:
        await adapter.generate(req)
    assert info.value.tokens_used > small.context_window
    assert info.value.max_tokens == small.context_window


async def test_unknown_model_is_model_not_found(adapter):
    ghost = GPT.model_copy(update={"name": "gpt-ghost-9", "api_id": "gpt-ghost-9"})
    with pytest.raises(ModelNotFoundError):
        await adapter.generate(_req("hi", model=ghost))


async def test_429_is_rate_limit_with_retry_after(adapter):
    with pytest.raises(RateLimitError) as info:
        await adapter.generate(_req("hi [[emu:fault=429]]"))
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
    assert info.value.status == 429 and not info.value.quota_exhausted


async def test_503_is_overloaded(adapter):
    with pytest.raises(ProviderOverloadedError):
        await adapter.generate(_req("hi [[emu:fault=503]]"))


async def test_connection_reset_is_connection_error(adapter):
    with pytest.raises(ProviderConnectionError):
        await adapter.generate(_req("hi [[emu:fault=reset]]"))


async def test_stream_cut_is_connection_error(adapter):
    with pytest.raises(ProviderConnectionError):
        async for _ in adapter.stream(_req("hi [[emu:fault=cut]] [[emu:tokens=80]]")):
            pass


async def test_rate_limit_headers_become_a_snapshot():
    # Slow refill (one request per 10 s, 10 tokens per s) keeps the numbers steady.
    async with emulator_on(server.EmulatorConfig(rpm=6, itpm=600)) as emu:
        limited = OpenAIAdapter(server.settings_for(emu.base_url))
        result = await limited.generate(_req("hi"))
        await limited.aclose()
    snapshot = result.rate_limit
    assert snapshot.requests_limit == 6 and snapshot.requests_remaining == 5
    assert snapshot.input_tokens_limit == 600
    assert 600 - result.usage.input_tokens <= snapshot.input_tokens_remaining < 600
    assert snapshot.requests_reset_s > 0 and snapshot.input_tokens_reset_s > 0
