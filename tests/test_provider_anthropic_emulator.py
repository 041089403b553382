"""The Anthropic adapter end to end against the local emulator (real SDK, real HTTP on loopback)."""

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
from llm.providers.anthropic import AnthropicAdapter
from llm.providers.base import ProviderRequest, ProviderResult, ToolSpec
from llm.providers.common import estimate_prompt_tokens, prefix_tokens_through_system
from llm.tokens import REQUEST_OVERHEAD
from llm.types import ImageContent, Message, MessageRole, TextContent

server = pytest.importorskip("llm.emulator.server")
registry = pytest.importorskip("llm.registry")

MODEL = registry.get_model_info("claude-sonnet-4.6")
WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
async def adapter():
    async with server.Emulator(server.EmulatorConfig()) as emu:
        instance = AnthropicAdapter(server.settings_for(emu.base_url))
        yield instance
        await instance.aclose()


def _req(text: str, *, system: str | None = None, model=None, **fields) -> ProviderRequest:
    messages = [Message(role=MessageRole.SYSTEM, content=system)] if system else []
    messages.append(Message(role=MessageRole.USER, content=text))
    fields.setdefault("max_tokens", 256)
    return ProviderRequest(model=model or MODEL, messages=tuple(messages), **fields)


def _png(width: int, height: int) -> str:
    raw = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x02"
        + b"\x00" * 30
    )
    return base64.b64encode(raw).decode()


async def test_generate_returns_text_usage_and_headers(adapter):
    req = _req("Tell me about tides.", system="Be brief.")
    result = await adapter.generate(req)
    assert result.text
    assert result.finish_reason == "stop" and result.raw_finish_reason == "end_turn"
    assert result.usage.input_tokens == estimate_prompt_tokens(req)
    assert result.usage.output_tokens > 0
    assert result.request_id
    assert result.model_version and result.model_version.startswith(MODEL.api_id)


async def test_stream_yields_chunks_then_one_result(adapter):
    req = _req("Write a few sentences. [[emu:tokens=60]]")
    items = [item async for item in adapter.stream(req)]
    chunks, final = items[:-1], items[-1]
    assert len(chunks) > 1 and all(isinstance(c, str) for c in chunks)
    assert isinstance(final, ProviderResult)
    assert "".join(chunks) == final.text
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens == estimate_prompt_tokens(req)
    assert final.request_id


async def test_structured_output_parses_and_validates(adapter):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    result = await adapter.generate(_req("A person, please.", structured_output_schema=schema))
    jsonschema.validate(json.loads(result.text), schema)


async def test_forced_tool_call(adapter):
    result = await adapter.generate(
        _req("Weather in Paris?", tools=(WEATHER,), tool_choice="get_weather")
    )
    assert result.finish_reason == "tool_calls"
    assert [call.name for call in result.tool_calls] == ["get_weather"]
    jsonschema.validate(result.tool_calls[0].arguments, WEATHER.parameters)


async def test_reasoning_effort_gives_reasoning_tokens(adapter):
    result = await adapter.generate(_req("Think about primes.", reasoning_effort="low"))
    assert 0 < result.usage.reasoning_tokens <= result.usage.output_tokens


async def test_image_is_counted(adapter):
    image = ImageContent(data=_png(1000, 1000))
    req = ProviderRequest(
        model=MODEL,
        messages=(
            Message(role=MessageRole.USER, content=[TextContent(text="What is this?"), image]),
        ),
        max_tokens=64,
    )
    result = await adapter.generate(req)
    assert result.usage.input_tokens == estimate_prompt_tokens(req) > 1333


async def test_same_long_system_prompt_is_cached_the_second_time(adapter):
    system = "Policy clause number seven applies. " * 300  # well over 1024 tokens
    req = _req("Summarise the policy.", system=system, enable_caching=True)
    first = await adapter.generate(req)
    second = await adapter.generate(req)
    prefix = REQUEST_OVERHEAD + prefix_tokens_through_system(req)
    assert first.usage.cache_write_tokens == prefix and first.usage.cached_tokens == 0
    assert second.usage.cached_tokens == prefix
    assert second.usage.input_tokens == first.usage.input_tokens


async def test_conversation_history_is_cached_at_the_latest_user_turn(adapter):
    def turn(role: MessageRole, text: str) -> Message:
        return Message(role=role, content=text)

    history = (
        turn(MessageRole.SYSTEM, "You answer questions about tides."),
        turn(MessageRole.USER, "Tell me everything about tides. " * 250),
        turn(MessageRole.ASSISTANT, "Tides are caused by the moon."),
        turn(MessageRole.USER, "And the sun?"),
    )
    first = await adapter.generate(
        ProviderRequest(model=MODEL, messages=history, max_tokens=64, enable_caching=True)
    )
    longer = (
        *history,
        turn(MessageRole.ASSISTANT, "It helps a bit."),
        turn(MessageRole.USER, "Thanks."),
    )
    second = await adapter.generate(
        ProviderRequest(model=MODEL, messages=longer, max_tokens=64, enable_caching=True)
    )
    assert first.usage.cache_write_tokens > 1024
    assert second.usage.cached_tokens == first.usage.input_tokens


async def test_context_overflow_is_context_length_error(adapter):
    req = _req("word " * (MODEL.context_window + 1000))
    with pytest.raises(ContextLengthError) as info:
        await adapter.generate(req)
    assert info.value.tokens_used > MODEL.context_window
    assert info.value.max_tokens == MODEL.context_window


async def test_unknown_model_is_model_not_found(adapter):
    ghost = MODEL.model_copy(update={"name": "claude-ghost-9", "api_id": "claude-ghost-9"})
    with pytest.raises(ModelNotFoundError):
        await adapter.generate(_req("hi", model=ghost))


async def test_429_is_rate_limit_with_retry_after(adapter):
    with pytest.raises(RateLimitError) as info:
        await adapter.generate(_req("hi [[emu:fault=429]]"))
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
    assert info.value.status == 429


async def test_529_is_overloaded(adapter):
    with pytest.raises(ProviderOverloadedError):
        await adapter.generate(_req("hi [[emu:fault=529]]"))


async def test_connection_reset_is_connection_error(adapter):
    with pytest.raises(ProviderConnectionError):
        await adapter.generate(_req("hi [[emu:fault=reset]]"))


async def test_stream_cut_is_connection_error(adapter):
    with pytest.raises(ProviderConnectionError):
        async for _ in adapter.stream(_req("hi [[emu:fault=cut]] [[emu:tokens=80]]")):
            pass


async def test_count_tokens_equals_estimate(adapter):
    req = _req("How many tokens is this?", system="Count carefully.", tools=(WEATHER,))
    assert await adapter.count_tokens(req) == estimate_prompt_tokens(req)
