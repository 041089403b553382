"""LLMService end to end: real adapters and SDKs against the in-process emulator."""

from __future__ import annotations

import base64
import struct
import time
import zlib

import pytest

pytest.importorskip("llm.emulator.server")

from llm.config import Settings  # noqa: E402
from llm.emulator.server import settings_for, start_in_thread  # noqa: E402
from llm.exceptions import ContextLengthError  # noqa: E402
from llm.pricing import compute_cost  # noqa: E402
from llm.registry import get_model_info  # noqa: E402
from llm.retry import RetryConfig  # noqa: E402
from llm.service import LLMService  # noqa: E402
from llm.types import ImageContent, Message, MessageRole, TextContent  # noqa: E402
from tests.conftest import SENTINEL_KEY  # noqa: E402
from tests.dates import REFERENCE_DAY  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::llm.service_checks.ModelLifecycleWarning")

#: Models with no announced retirement: these tests must not depend on the date.
MODELS = ["claude-sonnet-4.6", "claude-haiku-4.5", "gpt-6-luna", "gemini-2.5-flash-lite"]
SCHEMA = {
    "type": "object",
    "properties": {
        "colors": {"type": "object"},
        "typography": {"type": "object"},
        "spacing": {"type": "array"},
    },
    "required": ["colors", "typography"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "render_component",
            "description": "Render a React component in sandbox",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "component_type": {"type": "string"}},
                "required": ["code"],
            },
        },
    }
]


def tiny_png(width: int = 4, height: int = 4) -> str:
    """A valid RGB PNG, base64-encoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
    return base64.b64encode(png + chunk(b"IEND", b"")).decode()


STYLE_GUIDE = "You are an expert React developer. Follow these coding standards:\n" + "\n".join(
    f"- Rule {i}: prefer typed props, hooks and accessible markup in component {i}."
    for i in range(260)
)


@pytest.fixture(scope="module")
def emulator():
    thread = start_in_thread()
    yield thread
    thread.stop()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
async def service(emulator, sleeps):
    now = [time.perf_counter()]

    async def fake_sleep(delay):  # time passes for the runtime's clock, not the wall clock
        sleeps.append(delay)
        now[0] += delay

    def fake_clock():
        return now[0] + (time.perf_counter() - started)

    started = time.perf_counter()
    svc = LLMService(
        settings=settings_for(emulator.base_url, api_key=SENTINEL_KEY),
        retry_config=RetryConfig(initial_delay=0.001, max_delay=0.01, jitter=False),
        sleep=fake_sleep,
        clock=fake_clock,
    )
    yield svc
    await svc.aclose()


def ask(text: str, system: str | None = None) -> list[Message]:
    messages = [Message(role=MessageRole.SYSTEM, content=system)] if system else []
    return [*messages, Message(role=MessageRole.USER, content=text)]


def hand_cost(response):
    return compute_cost(get_model_info(response.model), response.usage)


@pytest.mark.parametrize("model", MODELS)
async def test_generate(service, model):
    response = await service.generate(
        model=model, messages=ask("Explain quantum computing", "You are a helpful assistant")
    )
    assert response.text
    assert response.model == model
    assert response.provider == get_model_info(model).provider
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.cost == hand_cost(response)
    assert response.request_id and response.attempts == 1
    assert service.get_cost_stats()["by_model"][model]["requests"] >= 1


@pytest.mark.parametrize("model", MODELS)
async def test_stream_then_response(service, model):
    stream = service.generate_stream(model=model, messages=ask("Write a story about AI"))
    chunks = [chunk async for chunk in stream]
    assert len(chunks) > 1
    assert "".join(chunks) == stream.response.text
    assert stream.response.usage.output_tokens > 0
    assert stream.response.cost == hand_cost(stream.response)


@pytest.mark.parametrize("model", MODELS)
async def test_second_call_reads_the_cache(service, model):
    messages = ask(f"Create a button component for {model}", STYLE_GUIDE)
    first = await service.generate(model=model, messages=messages, enable_caching=True)
    second = await service.generate(model=model, messages=messages, enable_caching=True)
    assert second.usage.cached_tokens > 0
    for response in (first, second):
        expected = hand_cost(response)
        if response.provider == "google":
            # An explicit Gemini cache also bills storage (tokens x hours) as a cache write.
            expected = expected.model_copy(
                update={"cache_write_cost": response.cost.cache_write_cost}
            )
            assert response.cost.cache_write_cost >= 0
        assert response.cost == expected
    if first.usage.cache_write_tokens or model.startswith("gemini"):
        assert first.cost.cache_write_cost + second.cost.cache_write_cost > 0


@pytest.mark.parametrize("model", MODELS)
async def test_structured_output(service, model):
    response = await service.generate(
        model=model,
        messages=ask("Extract design tokens from this mockup"),
        structured_output_schema=SCHEMA,
    )
    assert isinstance(response.structured_output, dict)
    assert {"colors", "typography"} <= set(response.structured_output)


async def test_structured_output_reask_after_invalid_json(service):
    response = await service.generate(
        model="gpt-6-luna",
        messages=ask("Extract design tokens [[emu:invalid_json,times=1]]"),
        structured_output_schema=SCHEMA,
    )
    assert {"colors", "typography"} <= set(response.structured_output)
    assert response.attempts == 2
    assert response.cost == hand_cost(response)  # summed usage, one price tier
    assert service.get_cost_stats()["by_model"]["gpt-6-luna"]["requests"] == 2


@pytest.mark.parametrize("model", MODELS)
async def test_tool_call(service, model):
    response = await service.generate(
        model=model,
        messages=ask("Create and render a button component"),
        tools=TOOLS,
        tool_choice="required",
    )
    assert response.tool_calls
    call = response.tool_calls[0]
    assert call["name"] == "render_component"
    assert isinstance(call["arguments"], dict) and "code" in call["arguments"]
    assert call["id"]


@pytest.mark.parametrize("model", MODELS)
async def test_vision(service, model):
    messages = [
        Message(
            role=MessageRole.USER,
            content=[
                ImageContent(data=tiny_png(), media_type="image/png"),
                TextContent(text="What design patterns do you see in this UI?"),
            ],
        )
    ]
    response = await service.generate(model=model, messages=messages)
    assert response.text
    assert response.usage.input_tokens >= 85


async def test_reasoning_tokens(service):
    response = await service.generate(
        model="gpt-5.6-terra",
        messages=ask("Analyze this designer's work and extract their taste model"),
        reasoning_effort="high",
        max_tokens=8000,
    )
    assert response.usage.reasoning_tokens > 0
    assert response.usage.output_tokens >= response.usage.reasoning_tokens
    assert response.cost == hand_cost(response)


@pytest.mark.parametrize(
    ("model", "fault"),
    [
        ("claude-haiku-4.5", 429),
        ("claude-haiku-4.5", 529),
        ("gpt-6-luna", 429),
        ("gemini-2.5-flash-lite", 429),
    ],
)
async def test_retry_honours_the_servers_delay(service, sleeps, model, fault):
    response = await service.generate(
        model=model, messages=ask(f"Hello again [[emu:fault={fault},times=1]]")
    )
    assert response.attempts == 2
    assert response.text
    assert len(sleeps) == 1
    assert sleeps[0] >= 1.0  # the emulator's retry-after; the backoff alone is 0.001 s


async def test_stream_retried_before_first_chunk(service, sleeps):
    stream = service.generate_stream(
        model="claude-haiku-4.5", messages=ask("Story please [[emu:fault=429,times=1]]")
    )
    text = "".join([chunk async for chunk in stream])
    assert text == stream.response.text
    assert stream.response.attempts == 2
    assert sleeps and sleeps[0] >= 1.0


@pytest.mark.parametrize("model", ["claude-haiku-4.5", "gpt-5.6-terra"])
async def test_provider_context_error_numbers(service, model):
    window = get_model_info(model).context_window
    words = window + 2_000  # over the window, but not "clearly" over: the provider decides
    with pytest.raises(ContextLengthError) as info:
        await service.generate(model=model, messages=ask("word " * words))
    assert info.value.max_tokens == window
    assert info.value.tokens_used > window


async def test_preflight_context_error_numbers(emulator):
    # gpt-4o's small window keeps the prompt small; it retires 2027-01-14, so the service
    # judges lifecycles on the reference day (nothing is sent: the check is before sending).
    service = LLMService(
        settings=settings_for(emulator.base_url, api_key=SENTINEL_KEY), today=REFERENCE_DAY
    )
    window = get_model_info("gpt-4o").context_window
    with pytest.raises(ContextLengthError) as info:
        await service.generate(model="gpt-4o", messages=ask("word " * (window * 2)))
    await service.aclose()
    assert info.value.max_tokens == window
    assert info.value.tokens_used >= window * 2


async def test_offline_service_runs_its_own_emulator():
    service = LLMService(settings=Settings(), offline=True)
    try:
        response = await service.generate(model="gpt-6-luna", messages=ask("Hi"))
        assert response.text and response.provider == "openai"
        assert service.settings.base_url("openai").endswith("/v1")
    finally:
        await service.aclose()
    assert service._emulator is None
