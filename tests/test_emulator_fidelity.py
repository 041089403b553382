"""The emulator answers like the real providers, checked through the official SDKs.

Each behaviour here was found wrong by sending recorded real requests to the emulator and
diffing with the real answers (../shared/replay-corpus): the emulator used to be kinder than
the providers.

* A forced tool choice after a tool result calls a tool again (it used to answer in text).
* Auto mode calls every tool the prompt is about, several in parallel, without the prompt
  naming them; deterministically (same prompt and seed, same calls).
* Gemini 2.5 Flash thinks unasked (``thoughtsTokenCount``, billed as output); 2.5 Flash-Lite
  does not; thoughts count against ``maxOutputTokens`` before the answer does.
* Requests the real APIs reject get the real 400 (unknown effort or thinking level,
  reasoning on a model without it, a thinking budget out of range).
* Anthropic's final stream usage and Gemini's ``avgLogprobs``/``index`` have the real shape,
  and the newest answers' fields (``stop_details``, ``inference_geo``, ``serviceTier``,
  thought signatures on text) are there.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from decimal import Decimal

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llm.emulator.engine import EmulatorConfig
from llm.emulator.server import Emulator, settings_for
from llm.models import Capabilities, ModelInfo, PriceTier, Pricing
from llm.pricing import compute_cost
from llm.providers.base import ProviderRequest
from llm.providers.google import GoogleAdapter
from llm.registry import get_model_info, resolve_model
from llm.types import Message, MessageRole
from tests.conftest import SENTINEL_KEY
from tests.dates import engine_on

KEY = SENTINEL_KEY
#: A pre-2.5 Gemini model (not in the registry any more) for the legacy response shape.
GEMINI_20 = ModelInfo(
    name="gemini-2.0-flash",
    provider="google",
    api_id="gemini-2.0-flash",
    context_window=1_048_576,
    max_output_tokens=8192,
    pricing=Pricing(standard=PriceTier(input=Decimal("0.1"), output=Decimal("0.4"))),
    capabilities=Capabilities(tools=True, vision=True),
)


def _lookup(name: str) -> ModelInfo | None:
    return GEMINI_20 if name == "gemini-2.0-flash" else get_model_info(name)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # Gemini 2.5 and Sonnet 4.5 behaviours recorded from the real APIs: judged on a fixed day,
    # since these models retire (tests/dates.py).
    engine = engine_on(EmulatorConfig(api_key=KEY, seed=7), model_lookup=_lookup)
    emu = Emulator(engine.config, engine=engine)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
def claude(emulator: Emulator) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=KEY, base_url=emulator.base_url, max_retries=0)


@pytest.fixture
def gpt(emulator: Emulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=KEY, base_url=emulator.base_url + "/v1", max_retries=0)


@pytest.fixture
def gemini(emulator: Emulator) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emulator.base_url))


CLAUDE = "claude-sonnet-4-5"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "get_current_time",
    "description": "Local time in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
BOTH = "What's the weather like in Oslo, and what time is it there?"


def _openai_tool(tool: dict) -> dict:
    return {
        "type": "function",
        "function": {
            "name": tool["name"],
            "description": tool["description"],
            "parameters": tool["input_schema"],
        },
    }


def _gemini_tools(*tools: dict) -> list[types.Tool]:
    declarations = [
        types.FunctionDeclaration(
            name=t["name"], description=t["description"], parameters_json_schema=t["input_schema"]
        )
        for t in tools
    ]
    return [types.Tool(function_declarations=declarations)]


# --- forced tool choice after a tool result ---------------------------------------------------


def _claude_tool_loop() -> list[dict]:
    return [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 C"}],
        },
    ]


async def test_anthropic_forced_tool_choice_after_a_tool_result_calls_a_tool_again(claude):
    for choice in ({"type": "any"}, {"type": "tool", "name": "get_weather"}):
        message = await claude.messages.create(
            model=CLAUDE,
            max_tokens=300,
            messages=_claude_tool_loop(),
            tools=[WEATHER],
            tool_choice=choice,
        )
        assert message.stop_reason == "tool_use"
        assert [b.name for b in message.content if b.type == "tool_use"] == ["get_weather"]
    auto = await claude.messages.create(
        model=CLAUDE, max_tokens=300, messages=_claude_tool_loop(), tools=[WEATHER]
    )
    assert auto.stop_reason == "end_turn" and auto.content[0].type == "text"


async def test_openai_required_tool_choice_after_a_tool_result_calls_a_tool_again(gpt):
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
    ]
    completion = await gpt.chat.completions.create(
        model="gpt-4.1", messages=messages, tools=[_openai_tool(WEATHER)], tool_choice="required"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]


async def test_gemini_any_mode_after_a_function_response_calls_again(gemini):
    contents = [
        types.Content(role="user", parts=[types.Part(text="Weather in Oslo?")]),
        types.Content(
            role="model",
            parts=[
                types.Part(
                    function_call=types.FunctionCall(name="get_weather", args={"city": "Oslo"})
                )
            ],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(
                        name="get_weather", response={"result": "12 C"}
                    )
                )
            ],
        ),
    ]
    config = types.GenerateContentConfig(
        tools=_gemini_tools(WEATHER),
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode="ANY")
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash", contents=contents, config=config
    )
    assert [call.name for call in response.function_calls] == ["get_weather"]


# --- auto mode: parallel, unprompted, deterministic ------------------------------------------


async def test_anthropic_auto_calls_several_tools_in_parallel_unprompted(claude):
    async def ask(**extra):
        return await claude.messages.create(
            model=CLAUDE,
            max_tokens=400,
            messages=[{"role": "user", "content": BOTH}],
            tools=[WEATHER, CLOCK],
            **extra,
        )

    first, again = await ask(), await ask()
    calls = [b for b in first.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather", "get_current_time"]  # neither named
    assert first.stop_reason == "tool_use"
    assert [(c.id, c.input) for c in calls] == [
        (c.id, c.input) for c in again.content if c.type == "tool_use"
    ]
    single = await ask(tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert [b.name for b in single.content if b.type == "tool_use"] == ["get_weather"]
    unrelated = await claude.messages.create(
        model=CLAUDE,
        max_tokens=400,
        messages=[{"role": "user", "content": "Write a haiku about autumn."}],
        tools=[WEATHER, CLOCK],
    )
    assert unrelated.stop_reason == "end_turn"


async def test_openai_auto_parallel_calls_and_parallel_off(gpt):
    tools = [_openai_tool(WEATHER), _openai_tool(CLOCK)]
    messages = [{"role": "user", "content": BOTH}]
    both = await gpt.chat.completions.create(model="gpt-4.1", messages=messages, tools=tools)
    names = [c.function.name for c in both.choices[0].message.tool_calls]
    assert names == ["get_weather", "get_current_time"]
    assert len({c.id for c in both.choices[0].message.tool_calls}) == 2
    one = await gpt.chat.completions.create(
        model="gpt-4.1", messages=messages, tools=tools, parallel_tool_calls=False
    )
    assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_weather"]


async def test_gemini_auto_parallel_function_calls(gemini):
    config = types.GenerateContentConfig(
        tools=_gemini_tools(WEATHER, CLOCK),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash", contents=BOTH, config=config
    )
    assert [call.name for call in response.function_calls] == ["get_weather", "get_current_time"]
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


# --- Gemini thinking ----------------------------------------------------------------------------


async def test_gemini_25_flash_thinks_by_default_and_thoughts_are_billed_as_output(
    gemini, emulator
):
    flash = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash", contents="Tell me about tides."
    )
    usage = flash.usage_metadata
    assert usage.thoughts_token_count and usage.thoughts_token_count > 0
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    )
    lite = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash-lite", contents="Tell me about tides."
    )
    assert lite.usage_metadata.thoughts_token_count is None
    off = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents="Tell me about tides.",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0)),
    )
    assert off.usage_metadata.thoughts_token_count is None
    # billed: the adapter reports thoughts as output, and the cost prices them so
    adapter = GoogleAdapter(settings_for(emulator.base_url, KEY))
    model = resolve_model("gemini-2.5-flash")
    try:
        result = await adapter.generate(
            ProviderRequest(
                model=model,
                messages=(Message(role=MessageRole.USER, content="Tell me about tides."),),
                max_tokens=512,
            )
        )
    finally:
        await adapter.aclose()
    assert result.usage.reasoning_tokens > 0
    cost = compute_cost(model, result.usage)
    assert cost.output_cost == (
        Decimal(result.usage.output_tokens) * model.pricing.standard.output / Decimal(1_000_000)
    )


async def test_gemini_thoughts_count_against_max_output_tokens(gemini):
    """Recorded real answer: gemini-2.5-pro with maxOutputTokens 5 → MAX_TOKENS, no text."""
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-pro",
        contents="Tell me about tides.",
        config=types.GenerateContentConfig(max_output_tokens=5),
    )
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.MAX_TOKENS
    assert not response.text
    assert response.usage_metadata.thoughts_token_count == 5
    assert response.usage_metadata.candidates_token_count is None


async def test_adapter_keeps_the_answer_when_gemini_thinks_hard(emulator):
    """Defect 1 end to end: effort high on 2.5 Pro with a small max_tokens still answers."""
    adapter = GoogleAdapter(settings_for(emulator.base_url, KEY))
    try:
        result = await adapter.generate(
            ProviderRequest(
                model=resolve_model("gemini-2.5-pro"),
                messages=(Message(role=MessageRole.USER, content="Tell me about tides."),),
                max_tokens=200,
                reasoning_effort="high",
            )
        )
    finally:
        await adapter.aclose()
    assert result.text and result.finish_reason == "stop"
    assert result.usage.reasoning_tokens > 200


# --- 400s the real APIs give ---------------------------------------------------------------------


async def test_anthropic_rejects_unknown_and_unsupported_effort(claude):
    for effort, wording in (
        ("extreme", "output_config.effort: Input should be"),
        ("xhigh", "This model does not support effort level 'xhigh'"),
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            await claude.messages.create(
                model=CLAUDE,
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"output_config": {"effort": effort}},
            )
        body = caught.value.body
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert wording in body["error"]["message"]
        assert body["request_id"].startswith("req_")


async def test_openai_rejects_reasoning_effort_on_a_model_without_reasoning(gpt):
    with pytest.raises(openai.BadRequestError) as caught:
        await gpt.chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": "hi"}],
            reasoning_effort="high",
        )
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "reasoning_effort")
    with pytest.raises(openai.BadRequestError) as unknown:
        await gpt.chat.completions.create(
            model="gpt-5",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"reasoning_effort": "extreme"},
        )
    assert unknown.value.code == "invalid_value"


@pytest.mark.parametrize(
    "model, thinking, wording",
    [
        ("gemini-3.1-pro-preview", {"thinking_level": "EXTREME"}, "Invalid value at"),
        ("gemini-2.5-flash", {"thinking_level": "HIGH"}, "Thinking level is not supported"),
        ("gemini-2.5-pro", {"thinking_budget": 0}, "only works in thinking mode"),
        ("gemini-2.5-flash", {"thinking_budget": 40000}, "between 1 and 24576"),
        (
            "gemini-3.1-pro-preview",
            {"thinking_level": "LOW", "thinking_budget": 1024},
            "only one of thinking budget and thinking level",
        ),
    ],
)
async def test_gemini_rejects_thinking_settings_like_the_api(gemini, model, thinking, wording):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the SDK warns on the unknown level
        config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(**thinking))
    with pytest.raises(genai_errors.ClientError) as caught:
        await gemini.aio.models.generate_content(model=model, contents="hi", config=config)
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert wording in caught.value.message


# --- shapes --------------------------------------------------------------------------------------


async def test_anthropic_final_stream_event_has_the_real_shape(claude):
    stream = await claude.messages.create(
        model=CLAUDE,
        max_tokens=3000,
        messages=[{"role": "user", "content": "Tell me about tides."}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        stream=True,
    )
    events = [event async for event in stream]
    assert [e.type for e in events[-2:]] == ["message_delta", "message_stop"]
    usage = events[-2].usage.model_dump(exclude_none=True)
    # as recorded from the real API: flat counts, no cache_creation breakdown, no tier
    assert set(usage) == {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
        "output_tokens_details",
    }
    assert 0 < usage["output_tokens_details"]["thinking_tokens"] < usage["output_tokens"]
    start = events[0].message.usage.model_dump(exclude_none=True)
    assert "cache_creation" in start and start["service_tier"] == "standard"


async def test_gemini_legacy_models_carry_avg_logprobs_and_newer_an_index(gemini):
    old = await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents="Hi there")
    new = await gemini.aio.models.generate_content(model="gemini-2.5-flash", contents="Hi there")
    assert old.candidates[0].avg_logprobs < 0 and old.candidates[0].index is None
    assert new.candidates[0].avg_logprobs is None and new.candidates[0].index == 0
    again = await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents="Hi there")
    assert again.candidates[0].avg_logprobs == old.candidates[0].avg_logprobs


async def test_newest_response_fields_as_recorded(emulator, claude, gemini):
    """Fields the newest real answers carry: Anthropic ``stop_details`` and
    ``usage.inference_geo``; Gemini 2.5+ ``usageMetadata.serviceTier`` and the thought
    signature on the answer's text part; Gemini 2.0 ``candidatesTokensDetails``."""
    raw = await claude.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": "Hi"}]
    )
    body = json.loads(await raw.read())
    assert body["stop_details"] is None and body["usage"]["inference_geo"] == "not_available"
    new = await gemini.aio.models.generate_content(
        model="gemini-3.1-pro-preview", contents="Tell me about tides."
    )
    (part,) = new.candidates[0].content.parts
    assert part.text and part.thought_signature
    async with httpx2.AsyncClient() as client:  # the SDK drops fields it has no type for
        answer = await client.post(
            f"{emulator.base_url}/v1beta/models/gemini-3.1-pro-preview:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "Tell me about tides."}]}]},
            headers={"x-goog-api-key": KEY},
        )
    usage = answer.json()["usageMetadata"]
    assert usage["serviceTier"] == "standard" and usage["thoughtsTokenCount"] > 0
    old = await gemini.aio.models.generate_content(model="gemini-2.0-flash", contents="Hi")
    details = old.usage_metadata.candidates_tokens_details
    assert details[0].token_count == old.usage_metadata.candidates_token_count
