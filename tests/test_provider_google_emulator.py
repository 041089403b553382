"""The Gemini adapter end to end against the local emulator (real SDK, real HTTP on loopback)."""

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
from llm.providers.common import estimate_prompt_tokens, prefix_tokens_through_system
from llm.providers.google import GoogleAdapter
from llm.types import ImageContent, Message, MessageRole, TextContent, ToolCall

server = pytest.importorskip("llm.emulator.server")
registry = pytest.importorskip("llm.registry")

FLASH = registry.resolve_model("gemini-2.5-flash-lite")
WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
async def adapter():
    async with server.Emulator(server.EmulatorConfig()) as emu:
        instance = GoogleAdapter(server.settings_for(emu.base_url))
        yield instance
        await instance.aclose()


def _req(text: str, *, system: str | None = None, model=None, **fields) -> ProviderRequest:
    messages = [Message(role=MessageRole.SYSTEM, content=system)] if system else []
    messages.append(Message(role=MessageRole.USER, content=text))
    fields.setdefault("max_tokens", 256)
    return ProviderRequest(model=model or FLASH, messages=tuple(messages), **fields)


def _png(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", width, height)
    return base64.b64encode(header + b"\x08\x02" + b"\x00" * 30).decode()


async def test_generate_returns_text_usage_and_response_id(adapter):
    req = _req("Tell me about tides.", system="Be brief.")
    result = await adapter.generate(req)
    assert result.text and result.finish_reason == "stop" and result.raw_finish_reason == "STOP"
    assert result.usage.input_tokens == estimate_prompt_tokens(req)
    assert result.usage.output_tokens > 0
    assert result.request_id
    assert result.model_version and FLASH.api_id in result.model_version


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
    }
    result = await adapter.generate(_req("A person, please.", structured_output_schema=schema))
    jsonschema.validate(json.loads(result.text), schema)


async def test_forced_tool_call_and_the_answer_after_it(adapter):
    req = _req("Weather in Paris?", tools=(WEATHER,), tool_choice="get_weather")
    result = await adapter.generate(req)
    assert result.finish_reason == "tool_calls"
    call = result.tool_calls[0]
    assert call.name == "get_weather"
    jsonschema.validate(call.arguments, WEATHER.parameters)
    follow_up = req.model_copy(
        update={
            "tool_choice": "auto",
            "messages": (
                *req.messages,
                Message(role=MessageRole.ASSISTANT, tool_calls=(ToolCall(**call.model_dump()),)),
                Message(role=MessageRole.TOOL, tool_call_id=call.id, content="18C and sunny"),
            ),
        }
    )
    answer = await adapter.generate(follow_up)
    assert answer.text and answer.finish_reason == "stop" and not answer.tool_calls


async def test_reasoning_effort_gives_thought_tokens(adapter):
    result = await adapter.generate(_req("Think about primes.", reasoning_effort="medium"))
    assert 0 < result.usage.reasoning_tokens < result.usage.output_tokens


async def test_image_is_counted(adapter):
    content = [TextContent(text="What is this?"), ImageContent(data=_png(1000, 1000))]
    req = ProviderRequest(
        model=FLASH, messages=(Message(role=MessageRole.USER, content=content),), max_tokens=64
    )
    result = await adapter.generate(req)
    assert result.usage.input_tokens == estimate_prompt_tokens(req) > 1333


async def test_repeated_prompt_is_cached_implicitly(adapter):
    system = "Policy clause number seven applies. " * 300  # over 1024 tokens, under 4096
    req = _req("Summarise the policy.", system=system, enable_caching=True)
    first = await adapter.generate(req)
    second = await adapter.generate(req)
    assert first.usage.cached_tokens == 0
    assert 0 < second.usage.cached_tokens <= second.usage.input_tokens
    assert second.usage.input_tokens == first.usage.input_tokens
    assert "cached_content" not in second.provider_details


async def test_explicit_cache_is_created_and_used_for_a_large_repeated_prefix(adapter):
    system = "Clause eleven of the handbook governs refunds. " * 700  # well over 4096 tokens
    req = _req("Which clause covers refunds?", system=system, tools=(WEATHER,), enable_caching=True)
    prefix = prefix_tokens_through_system(req)
    first = await adapter.generate(req)
    second = await adapter.generate(req)
    third = await adapter.generate(req)
    assert "cached_content" not in first.provider_details
    name = second.provider_details["cached_content"]
    assert name.startswith("cachedContents/")
    assert second.cache_storage_token_hours > 0
    assert third.provider_details["cached_content"] == name
    assert third.cache_storage_token_hours == 0
    assert third.usage.cached_tokens >= prefix
    assert third.usage.input_tokens == first.usage.input_tokens


async def test_context_overflow_carries_the_numbers(adapter):
    req = _req("ab " * (FLASH.context_window + 1000))
    with pytest.raises(ContextLengthError) as info:
        await adapter.generate(req)
    assert info.value.tokens_used > FLASH.context_window
    assert info.value.max_tokens == FLASH.context_window


async def test_unknown_model_is_model_not_found(adapter):
    ghost = FLASH.model_copy(update={"name": "gemini-ghost-9", "api_id": "gemini-ghost-9"})
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


async def test_count_tokens_matches_the_billed_prompt(adapter):
    req = _req("How many tokens is this?", system="Count carefully.", tools=(WEATHER,))
    counted = await adapter.count_tokens(req)
    billed = await adapter.generate(req)
    assert counted == billed.usage.input_tokens == estimate_prompt_tokens(req)
