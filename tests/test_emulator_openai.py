"""Round trips through the real ``openai.AsyncOpenAI`` SDK against the OpenAI wire module.

The first part serves the wire module's render/stream functions from a tiny aiohttp app in
this file (the answer is a hand-made :class:`EmuResult`), so the SDK must parse every
rendered object and every SSE sequence. The second part (skipped until the emulator server
exists) drives the real emulator end to end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from aiohttp import web
from pydantic import BaseModel

from llm import tokens
from llm.emulator import openai_wire as wire
from llm.emulator.protocol import EmuError, EmuRequest, EmuResult, EmuToolCall
from tests.dates import emulator_on

KEY = "sk-SENTINEL-0123456789abcdef-DO-NOT-LEAK"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}


class Capital(BaseModel):
    city: str
    country: str


Outcome = Callable[[EmuRequest], "EmuResult | EmuError"]


def answer(text: str = "Paris is the capital of France.", **overrides: Any) -> EmuResult:
    words = text.split(" ")
    chunks = tuple(w if i == 0 else " " + w for i, w in enumerate(words)) if text else ()
    fields: dict[str, Any] = {
        "request_id": "req_0123abcd",
        "model_version": "gpt-4o-2024-08-06",
        "text": text,
        "tool_calls": (),
        "thinking_text": None,
        "input_tokens": 1500,
        "output_tokens": 40,
        "cached_tokens": 1024,
        "text_chunks": chunks,
    }
    fields.update(overrides)
    return EmuResult(**fields)


def weather_call() -> EmuResult:
    call = EmuToolCall(id="toolu_9", name="get_weather", arguments={"location": "Paris, France"})
    return answer("", tool_calls=(call,), finish="tool_calls")


@dataclass
class FakeUpstream:
    """What the tiny server answers next, and the requests it parsed."""

    outcome: Outcome = lambda req: answer()  # noqa: E731
    seen: list[EmuRequest] = field(default_factory=list)


def _error_response(err: EmuError, api: str, model: str | None) -> web.Response:
    status, body, headers = wire.render_error(err, api=api, model=model)
    return web.json_response(body, status=status, headers={**headers, "x-request-id": "req_e"})


def _handler(upstream: FakeUpstream, api: str) -> Callable:
    parse = wire.parse_chat if api == "chat" else wire.parse_responses
    render = wire.render_chat if api == "chat" else wire.render_responses
    stream = wire.stream_chat if api == "chat" else wire.stream_responses

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model")
        if wire.api_key_from(request.headers, request.query) != KEY:
            return _error_response(EmuError(kind="authentication", message=""), api, model)
        try:
            req = parse(body, request.headers)
        except EmuError as err:
            return _error_response(err, api, model)
        upstream.seen.append(req)
        outcome = upstream.outcome(req)
        if isinstance(outcome, EmuError):
            return _error_response(outcome, api, model)
        if not req.stream:
            return web.json_response(render(req, outcome), headers={"x-request-id": "req_1"})
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "x-request-id": "req_1"}
        )
        await response.prepare(request)
        for frame in stream(req, outcome):
            await response.write(frame)
        await response.write_eof()
        return response

    return handle


@pytest.fixture(scope="module")
async def upstream_url():
    upstream = FakeUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _handler(upstream, "chat"))
    app.router.add_post("/v1/responses", _handler(upstream, "responses"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield upstream, f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.fixture
async def fake(upstream_url):
    upstream, url = upstream_url
    upstream.outcome = lambda req: answer()
    upstream.seen.clear()
    client = openai.AsyncOpenAI(api_key=KEY, base_url=url, max_retries=0)
    try:
        yield upstream, client
    finally:
        await client.close()


# --- Chat Completions ------------------------------------------------------------------------


async def test_chat_create_parses_with_usage(fake):
    upstream, client = fake
    upstream.outcome = lambda req: answer(reasoning_tokens=12)
    completion = await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Capital?"},
        ],
        max_completion_tokens=64,
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == "Paris is the capital of France."
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1500, 40, 1540)
    assert usage.prompt_tokens_details.cached_tokens == 1024
    assert usage.completion_tokens_details.reasoning_tokens == 12
    assert completion._request_id == "req_1"
    (req,) = upstream.seen
    assert req.max_tokens == 64 and req.last_user_text == "Capital?"
    assert sum(s.tokens for s in req.segments) == (
        tokens.REQUEST_OVERHEAD
        + 2 * tokens.MESSAGE_OVERHEAD
        + tokens.count_text_tokens("Be terse.")
        + tokens.count_text_tokens("Capital?")
    )


async def test_chat_stream_with_include_usage(fake):
    _, client = fake
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Capital?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(pieces) == "Paris is the capital of France."
    assert usage is not None and usage.prompt_tokens == 1500
    assert usage.prompt_tokens_details.cached_tokens == 1024


async def test_chat_forced_tool_call(fake):
    upstream, client = fake
    upstream.outcome = lambda req: weather_call()
    completion = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris, France"}
    assert upstream.seen[0].tool_choice == "get_weather"
    assert upstream.seen[0].tools[0].name == "get_weather"


async def test_chat_stream_helper_accumulates_tool_calls(fake):
    upstream, client = fake
    upstream.outcome = lambda req: weather_call()
    async with client.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    ) as stream:
        final = await stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"location": "Paris, France"}
    assert upstream.seen[0].tool_choice == "any"


async def test_chat_parse_structured_output(fake):
    upstream, client = fake
    upstream.outcome = lambda req: answer('{"city":"Paris","country":"France"}')
    completion = await client.chat.completions.parse(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Capital of France?"}],
        response_format=Capital,
    )
    assert completion.choices[0].message.parsed == Capital(city="Paris", country="France")
    schema = upstream.seen[0].json_schema
    assert set(schema["properties"]) == {"city", "country"}
    assert upstream.seen[0].segments[-1].tokens == tokens.count_schema_tokens(schema)


async def test_chat_tool_result_turn(fake):
    upstream, client = fake
    await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert upstream.seen[0].after_tool_result is True


# --- Responses ---------------------------------------------------------------------------------


async def test_responses_create(fake):
    upstream, client = fake
    upstream.outcome = lambda req: answer(reasoning_tokens=16, output_tokens=56)
    response = await client.responses.create(
        model="gpt-5.6-terra",
        input="Capital?",
        instructions="Be terse.",
        reasoning={"effort": "low"},
    )
    assert response.id.startswith("resp_")
    assert response.output_text == "Paris is the capital of France."
    assert response.status == "completed"
    assert response.output[0].type == "reasoning"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1500, 56, 1556)
    assert usage.input_tokens_details.cached_tokens == 1024
    assert usage.output_tokens_details.reasoning_tokens == 16
    assert upstream.seen[0].reasoning_effort == "low"


async def test_responses_function_call_output_item(fake):
    upstream, client = fake
    upstream.outcome = lambda req: weather_call()
    response = await client.responses.create(
        model="gpt-5.6-terra",
        input="Weather in Paris?",
        tools=[{"type": "function", **WEATHER_TOOL["function"], "strict": True}],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    (item,) = response.output
    assert item.type == "function_call" and item.call_id.startswith("call_")
    assert json.loads(item.arguments) == {"location": "Paris, France"}
    assert upstream.seen[0].tool_choice == "get_weather"


async def test_responses_tool_result_items(fake):
    upstream, client = fake
    await client.responses.create(
        model="gpt-5.6-terra",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"location":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        ],
    )
    req = upstream.seen[0]
    assert req.after_tool_result is True and req.last_user_text == "Weather in Paris?"


async def test_responses_stream_helper_final_response(fake):
    _, client = fake
    deltas = []
    async with client.responses.stream(model="gpt-5.6-terra", input="Capital?") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(deltas) == "Paris is the capital of France."
    assert final.output_text == "Paris is the capital of France."
    assert final.usage.input_tokens_details.cached_tokens == 1024


async def test_responses_stream_helper_with_reasoning_and_tool_call(fake):
    upstream, client = fake
    upstream.outcome = lambda req: answer(
        "Checking.",
        reasoning_tokens=8,
        tool_calls=weather_call().tool_calls,
        finish="tool_calls",
    )
    async with client.responses.stream(
        model="gpt-5.6-terra",
        input="Weather?",
        tools=[{"type": "function", **WEATHER_TOOL["function"], "strict": True}],
    ) as stream:
        final = await stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert json.loads(final.output[2].arguments) == {"location": "Paris, France"}


async def test_responses_parse_structured_output(fake):
    upstream, client = fake
    upstream.outcome = lambda req: answer('{"city":"Paris","country":"France"}')
    response = await client.responses.parse(model="gpt-5.5", input="Capital?", text_format=Capital)
    assert response.output_parsed == Capital(city="Paris", country="France")
    assert set(upstream.seen[0].json_schema["properties"]) == {"city", "country"}


async def test_responses_incomplete(fake):
    upstream, client = fake
    upstream.outcome = lambda req: answer("Paris is", finish="length")
    response = await client.responses.create(model="gpt-5.6-terra", input="x", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 16


# --- errors ------------------------------------------------------------------------------------


async def test_context_length_is_bad_request(fake):
    upstream, client = fake
    upstream.outcome = lambda req: EmuError(
        kind="context_length", message="", tokens_used=130532, max_tokens=128000
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 128000 tokens" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-5.6-terra", input="x")
    assert caught.value.code == "context_length_exceeded"
    assert "exceeds the context window" in caught.value.message


async def test_malformed_request_is_bad_request(fake):
    _, client = fake
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=[])
    assert caught.value.code == "empty_array" and caught.value.param == "messages"


async def test_rate_limit_error_with_retry_after(fake):
    upstream, client = fake
    upstream.outcome = lambda req: EmuError(
        kind="rate_limit",
        message="",
        retry_after_s=2.5,
        limits={"requests_limit": 2, "requests_remaining": 0, "requests_reset_s": 2.5},
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    headers = caught.value.response.headers
    assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "2500"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.code == "rate_limit_exceeded"


async def test_not_found_error(fake):
    upstream, client = fake
    upstream.outcome = lambda req: EmuError(kind="not_found", message="unknown model")
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"
    assert "gpt-9" in caught.value.message


async def test_authentication_error_hides_the_key(upstream_url):
    _, url = upstream_url
    wrong = KEY + "-wrong"
    client = openai.AsyncOpenAI(api_key=wrong, base_url=url, max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.responses.create(model="gpt-5.6-terra", input="x")
    finally:
        await client.close()
    assert caught.value.code == "invalid_api_key"
    assert wrong not in str(caught.value) and KEY not in str(caught.value.body)


async def test_overloaded_is_internal_server_error(fake):
    upstream, client = fake
    upstream.outcome = lambda req: EmuError(kind="overloaded", message="", retry_after_s=1.0)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 503


# --- end to end through the real emulator -------------------------------------------------------

LONG_SYSTEM = " ".join(f"Rule {i}: answer plainly and cite the source." for i in range(150))


@pytest.fixture
async def emulator():
    """A factory: ``await emulator(rpm=1)`` starts the real emulator and returns a client."""
    server = pytest.importorskip("llm.emulator.server")
    if not hasattr(server, "Emulator"):
        pytest.skip("llm.emulator.server has no Emulator yet")
    from llm.emulator import engine

    config_cls = getattr(server, "EmulatorConfig", engine.EmulatorConfig)
    started: list[tuple[Any, openai.AsyncOpenAI]] = []

    async def start(**config: Any) -> openai.AsyncOpenAI:
        emu = emulator_on(config_cls(api_key=KEY, **config))  # gpt-4o retires 2027-01-14
        await emu.__aenter__()
        client = openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url + "/v1", max_retries=0)
        started.append((emu, client))
        return client

    try:
        yield start
    finally:
        for emu, client in reversed(started):
            await client.close()
            await emu.__aexit__(None, None, None)


async def test_e2e_chat_create_counts_the_prompt(emulator):
    client = await emulator()
    completion = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Tell me about Paris"}]
    )
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == (
        tokens.REQUEST_OVERHEAD
        + tokens.MESSAGE_OVERHEAD
        + tokens.count_text_tokens("Tell me about Paris")
    )


async def test_e2e_chat_stream_usage(emulator):
    client = await emulator()
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Tell me about Rome [[emu:tokens=30]]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        usage = chunk.usage or usage
    assert usage is not None
    assert usage.completion_tokens == tokens.count_text_tokens("".join(pieces)) == 30


async def test_e2e_structured_output_validates(emulator):
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    client = await emulator()
    completion = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Largest city?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


async def test_e2e_forced_tool_call(emulator):
    client = await emulator()
    completion = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert "location" in json.loads(call.function.arguments)
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_e2e_reasoning_tokens(emulator):
    client = await emulator()
    completion = await client.chat.completions.create(
        model="gpt-5.6-terra",
        messages=[{"role": "user", "content": "Prove it"}],
        reasoning_effort="high",
    )
    reasoning = completion.usage.completion_tokens_details.reasoning_tokens
    assert reasoning > 0
    assert completion.usage.completion_tokens > reasoning


async def test_e2e_automatic_prefix_caching(emulator):
    client = await emulator()
    messages = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "Summarise the rules"},
    ]
    first = await client.chat.completions.create(model="gpt-4o", messages=messages)
    second = await client.chat.completions.create(model="gpt-4o", messages=messages)
    assert first.usage.prompt_tokens >= 1024
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 1024 <= cached <= second.usage.prompt_tokens
    assert (cached - 1024) % 128 == 0


async def test_e2e_responses_create_and_stream(emulator):
    client = await emulator()
    response = await client.responses.create(model="gpt-4o", input="Tell me about Lima")
    assert response.output_text and response.usage.total_tokens > 0
    async with client.responses.stream(model="gpt-4o", input="Tell me about Quito") as stream:
        final = await stream.get_final_response()
    assert final.output_text and final.status == "completed"


async def test_e2e_rate_limit_429(emulator):
    client = await emulator(rpm=1)
    messages = [{"role": "user", "content": "hi"}]
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=messages)
    headers = caught.value.response.headers
    assert float(headers["retry-after"]) > 0
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.code == "rate_limit_exceeded"
