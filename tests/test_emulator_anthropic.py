"""The emulator's Anthropic Messages API, driven through the real ``anthropic`` SDK.

Also covers the server plumbing (stats, reset, thread mode, settings_for) and the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import subprocess
import sys
import zlib

import anthropic
import httpx2
import jsonschema
import pytest

from llm.emulator import anthropic_wire
from llm.emulator.engine import EmulatorConfig
from llm.emulator.protocol import EmuError
from llm.emulator.server import Emulator, settings_for, start_in_thread
from tests.conftest import SENTINEL_KEY
from tests.dates import engine_on

try:
    from llm.registry import get_model_info as LOOKUP
except ImportError:  # the registry is written in parallel; fall back to a tiny table
    from test_emulator_engine import MODELS

    LOOKUP = {"claude-sonnet-4-5": MODELS["claude-test"]}.get

KEY = SENTINEL_KEY
#: The wire tests pin the emulator's calendar (tests/dates.py): Sonnet 4.5 retires 2026-11-30.
MODEL = "claude-sonnet-4-5"
LONG_SYSTEM = " ".join(f"Rule {i}: answer plainly and cite the source." for i in range(120))
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
        "required": ["city", "unit"],
    },
}


async def _start(**config) -> Emulator:
    engine = engine_on(EmulatorConfig(api_key=KEY, **config), model_lookup=LOOKUP)
    emu = Emulator(engine.config, engine=engine)
    await emu.start()
    return emu


@pytest.fixture(scope="module")
async def emu():
    emulator = await _start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def client(emu):
    async with anthropic.AsyncAnthropic(base_url=emu.base_url, api_key=KEY, max_retries=0) as c:
        yield c


def _png(width: int, height: int) -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    raw += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ------------------------------------------------------------------ happy paths
async def test_create_returns_dated_model_text_and_usage(client):
    raw = await client.messages.with_raw_response.create(
        model=MODEL, max_tokens=200, messages=_user("Tell me about Lisbon [[emu:tokens=25]]")
    )
    message = await raw.parse()
    assert raw.headers["request-id"].startswith("req_") and message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4-5-20250929"
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    assert "Lisbon" in message.content[0].text and "emu:" not in message.content[0].text
    assert message.usage.output_tokens == 25
    count = await client.messages.count_tokens(
        model=MODEL, messages=_user("Tell me about Lisbon [[emu:tokens=25]]")
    )
    assert count.input_tokens == message.usage.input_tokens > 0
    assert message.usage.cache_read_input_tokens == message.usage.cache_creation_input_tokens == 0


async def test_stream_helper_and_raw_stream_agree(client):
    kwargs = {
        "model": MODEL,
        "max_tokens": 300,
        "messages": _user("Describe Porto [[emu:tokens=40]]"),
    }
    async with client.messages.stream(**kwargs) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == final.content[0].text
    assert final.usage.output_tokens == 40 and final.stop_reason == "end_turn"
    events = [event.type async for event in await client.messages.create(**kwargs, stream=True)]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    assert events.count("content_block_start") == events.count("content_block_stop") == 1
    plain = await client.messages.create(**kwargs)
    assert plain.content[0].text == final.content[0].text


async def test_structured_output_ga_and_beta_forms_validate(client):
    ga = await client.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=_user("json please"),
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
    )
    jsonschema.validate(json.loads(ga.content[0].text), SCHEMA)
    beta = await client.beta.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=_user("json please"),
        betas=["structured-outputs-2025-11-13"],
        extra_body={"output_format": {"type": "json_schema", "schema": SCHEMA}},
    )
    jsonschema.validate(json.loads(beta.content[0].text), SCHEMA)


async def test_forced_tool_call_validates_against_its_schema(client):
    message = await client.messages.create(
        model=MODEL,
        max_tokens=300,
        messages=_user("What's the weather?"),
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    (call,) = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER["input_schema"])
    follow_up = await client.messages.create(
        model=MODEL,
        max_tokens=300,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What's the weather?"},
            {"role": "assistant", "content": [block.model_dump() for block in message.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}],
            },
        ],
    )
    assert follow_up.stop_reason == "end_turn" and follow_up.content[0].type == "text"


async def test_streamed_tool_call_accumulates_input(client):
    async with client.messages.stream(
        model=MODEL,
        max_tokens=300,
        messages=_user("weather"),
        tools=[WEATHER],
        tool_choice={"type": "any"},
    ) as stream:
        final = await stream.get_final_message()
    (call,) = [block for block in final.content if block.type == "tool_use"]
    jsonschema.validate(call.input, WEATHER["input_schema"])


async def test_thinking_blocks_and_tokens(client):
    kwargs = {
        "model": MODEL,
        "max_tokens": 4000,
        "messages": _user("Think about Madrid"),
        "thinking": {"type": "enabled", "budget_tokens": 2000},
    }
    message = await client.messages.create(**kwargs)
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    assert text.type == "text"
    assert message.usage.output_tokens >= 1200 + 1
    async with client.messages.stream(**kwargs) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].signature == thinking.signature
    assert streamed.usage.output_tokens == message.usage.output_tokens


async def test_image_tokens_are_counted_from_pixels(client):
    text_only = [{"type": "text", "text": "What is this?"}]
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": _png(300, 250)},
    }
    plain = await client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": text_only}]
    )
    with_image = await client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": [*text_only, image]}]
    )
    assert with_image.input_tokens - plain.input_tokens == 300 * 250 // 750
    message = await client.messages.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": [*text_only, image]}]
    )
    assert message.usage.input_tokens == with_image.input_tokens


# ---------------------------------------------------------------------- caching
def _cached_system(tag: str) -> list[dict]:
    return [
        {"type": "text", "text": f"{tag} {LONG_SYSTEM}", "cache_control": {"type": "ephemeral"}}
    ]


async def test_cache_write_then_read(client):
    system = _cached_system("write-read")
    first = await client.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=_user("one")
    )
    second = await client.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=_user("two")
    )
    written = first.usage.cache_creation_input_tokens
    assert written >= 1024 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == written
    assert second.usage.cache_read_input_tokens == written
    assert second.usage.cache_creation_input_tokens == 0
    count = await client.messages.count_tokens(model=MODEL, system=system, messages=_user("two"))
    usage = second.usage
    assert usage.input_tokens + usage.cache_read_input_tokens == count.input_tokens


async def test_cache_is_not_readable_before_the_writer_started(emu, client):
    system = _cached_system("in-flight")
    before = (await _stats(emu))["requests"]
    writer = asyncio.create_task(
        client.messages.create(
            model=MODEL,
            max_tokens=50,
            system=system,
            messages=_user("slow [[emu:latency_ms=1500]]"),
        )
    )
    while (await _stats(emu))["requests"] == before:
        await asyncio.sleep(0.01)
    early = await client.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=_user("early")
    )
    written = (await writer).usage.cache_creation_input_tokens
    assert early.usage.cache_read_input_tokens == 0
    assert early.usage.cache_creation_input_tokens == written > 0
    late = await client.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=_user("late")
    )
    assert late.usage.cache_read_input_tokens == written


async def test_more_than_four_breakpoints_is_rejected(client):
    blocks = [
        {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
        for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError) as exc:
        await client.messages.create(model=MODEL, max_tokens=10, system=blocks, messages=_user("x"))
    assert "maximum of 4 blocks" in exc.value.message


# ----------------------------------------------------------------------- errors
async def test_missing_and_wrong_key_are_401(emu):
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            emu.base_url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 10, "messages": _user("hi")},
            headers={"anthropic-version": "2023-06-01"},
        )
    body = response.json()
    assert response.status_code == 401 and body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["request_id"] == response.headers["request-id"]
    async with anthropic.AsyncAnthropic(
        base_url=emu.base_url, api_key="wrong", max_retries=0
    ) as bad:
        with pytest.raises(anthropic.AuthenticationError) as exc:
            await bad.messages.create(model=MODEL, max_tokens=10, messages=_user("hi"))
    assert exc.value.status_code == 401 and "wrong" not in exc.value.message


async def test_x_api_key_header_is_accepted(emu):
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            emu.base_url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 10, "messages": _user("hi"), "temperature": 0.5},
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 200 and response.json()["type"] == "message"


async def test_sampling_params_rejected_under_2026_10_21(client):
    with pytest.raises(anthropic.BadRequestError) as exc:
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=_user("hi"), extra_body={"temperature": 0.2}
        )
    assert "temperature" in exc.value.message


async def test_unknown_model_is_404_with_anthropic_wording(client):
    with pytest.raises(anthropic.NotFoundError) as exc:
        await client.messages.create(model="claude-nope-1", max_tokens=10, messages=_user("hi"))
    assert exc.value.body["error"] == {"type": "not_found_error", "message": "model: claude-nope-1"}
    assert exc.value.request_id.startswith("req_")


async def test_context_overflow_wording_and_numbers(client):
    messages = _user("word " * 200_100)
    count = await client.messages.count_tokens(model=MODEL, messages=messages)
    with pytest.raises(anthropic.BadRequestError) as exc:
        await client.messages.create(model=MODEL, max_tokens=10, messages=messages)
    assert exc.value.body["error"]["message"] == (
        f"prompt is too long: {count.input_tokens} tokens > 200000 maximum"
    )


async def test_invalid_body_is_400(client):
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "@@@"},
    }
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": [image]}]
        )
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=[])


async def test_rate_limit_429_with_retry_after_and_headers():
    emulator = await _start(rpm=2, burst_s=60)  # a whole minute's budget may burst
    try:
        async with anthropic.AsyncAnthropic(
            base_url=emulator.base_url, api_key=KEY, max_retries=0
        ) as c:
            ok = await c.messages.with_raw_response.create(
                model=MODEL, max_tokens=10, messages=_user("a")
            )
            assert ok.headers["anthropic-ratelimit-requests-limit"] == "2"
            assert ok.headers["anthropic-ratelimit-requests-remaining"] == "1"
            assert ok.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
            await c.messages.create(model=MODEL, max_tokens=10, messages=_user("b"))
            with pytest.raises(anthropic.RateLimitError) as exc:
                await c.messages.create(model=MODEL, max_tokens=10, messages=_user("c"))
        headers = exc.value.response.headers
        assert 29 <= int(headers["retry-after"]) <= 31
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert exc.value.body["error"]["type"] == "rate_limit_error"
        assert (await _stats(emulator))["rate_limited"] == 1
    finally:
        await emulator.stop()


async def test_overloaded_529(client):
    with pytest.raises(anthropic.OverloadedError) as exc:
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=_user("x [[emu:fault=529]]")
        )
    assert exc.value.status_code == 529 and exc.value.response.headers["retry-after"] == "1"
    assert exc.value.body["error"]["type"] == "overloaded_error"


async def test_fault_times_then_success(client):
    messages = _user("retry me [[emu:fault=500,times=1]]")
    with pytest.raises(anthropic.InternalServerError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=messages)
    assert (await client.messages.create(model=MODEL, max_tokens=10, messages=messages)).content


async def test_stream_cut_midway_raises(client):
    received: list[str] = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        async with client.messages.stream(
            model=MODEL, max_tokens=300, messages=_user("long [[emu:fault=cut]] [[emu:tokens=80]]")
        ) as stream:
            async for text in stream.text_stream:
                received.append(text)
    assert received  # part of the answer arrived before the cut


async def test_connection_reset_is_api_connection_error(client):
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(
            model=MODEL, max_tokens=10, messages=_user("x [[emu:fault=reset]]")
        )


# ----------------------------------------------------------------- wire helpers
def test_render_error_shapes_and_headers():
    err = EmuError("rate_limit", "slow down", retry_after_s=2.2, request_id="req_x")
    status, body, headers = anthropic_wire.render_error(err)
    assert status == 429 and headers["retry-after"] == "3" and headers["request-id"] == "req_x"
    assert body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
        "request_id": "req_x",
    }
    limits = {"input_tokens_limit": 100, "input_tokens_remaining": 10, "input_tokens_reset_s": 5}
    limits |= {"output_tokens_limit": 50, "output_tokens_remaining": 40, "output_tokens_reset_s": 1}
    rendered = anthropic_wire.limit_headers(limits)
    assert rendered["anthropic-ratelimit-tokens-remaining"] == "10"
    assert "anthropic-ratelimit-requests-limit" not in rendered


def test_top_level_cache_control_marks_the_last_block():
    body = {
        "model": MODEL,
        "max_tokens": 5,
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ],
    }
    req = anthropic_wire.parse_messages(body, {"anthropic-version": "2023-06-01"})
    assert [seg.cache_ttl for seg in req.segments][-2:] == [None, "1h"]


# ------------------------------------------------------------ server plumbing
async def _stats(emulator: Emulator) -> dict:
    async with httpx2.AsyncClient() as http:
        return (await http.get(emulator.base_url + "/_emulator/stats")).json()


async def test_stats_reset_and_unknown_route():
    emulator = await _start()
    try:
        async with anthropic.AsyncAnthropic(
            base_url=emulator.base_url, api_key=KEY, max_retries=0
        ) as c:
            await c.messages.create(model=MODEL, max_tokens=10, messages=_user("hi"))
        stats = await _stats(emulator)
        assert stats["requests"] == 1 and stats["by_status"] == {"200": 1}
        async with httpx2.AsyncClient() as http:
            missing = await http.get(emulator.base_url + "/v1/nothing-here")
            await http.post(emulator.base_url + "/_emulator/reset")
        assert missing.status_code == 404 and "error" in missing.json()
        assert (await _stats(emulator))["requests"] == 0
    finally:
        await emulator.stop()


def test_thread_mode_and_settings_for():
    handle = start_in_thread(EmulatorConfig())
    try:
        response = httpx2.get(handle.base_url + "/_emulator/stats")
        assert response.status_code == 200
        settings = settings_for(handle.base_url, api_key=KEY)
        assert settings.base_url("openai") == handle.base_url + "/v1"
        assert settings.base_url("anthropic") == settings.base_url("google") == handle.base_url
        assert settings.api_key("google") == KEY and KEY not in repr(settings)
    finally:
        handle.stop()
    with pytest.raises(httpx2.TransportError):
        httpx2.get(handle.base_url + "/_emulator/stats")


def test_config_repr_hides_the_key():
    assert KEY not in repr(EmulatorConfig(api_key=KEY))


def test_cli_prints_base_url_and_serves():
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm.emulator", "--port", "0", "--rpm", "5", "--api-key", KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        response = httpx2.post(
            base_url + "/v1/messages/count_tokens",  # a subprocess lives on today's date
            json={"model": "claude-sonnet-5-5", "messages": _user("hello")},
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        )
        assert response.status_code == 200 and response.json()["input_tokens"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
