"""Anthropic adapter, pure parts: request building, response parsing, error mapping, factory."""

from __future__ import annotations

import base64
import json
import pickle
import warnings
from datetime import UTC, datetime
from decimal import Decimal

import anthropic
import httpx2
import pytest
from anthropic.types import Message as SDKMessage

from llm.config import API_KEY_ENV, Settings
from llm.exceptions import (
    AuthenticationError,
    ConfigurationError,
    ContextLengthError,
    InvalidRequestError,
    LLMTimeoutError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    RateLimitError,
)
from llm.models import Capabilities, ModelInfo, PriceTier, Pricing
from llm.providers import anthropic as adapter_module
from llm.providers.anthropic import (
    THINKING_BUDGETS,
    AnthropicAdapter,
    build_request,
    map_error,
    parse_response,
)
from llm.providers.base import ProviderRequest, ToolSpec
from llm.providers.factory import create_adapter
from llm.tokens import count_text_tokens
from llm.types import ImageContent, Message, MessageRole, ToolCall, ToolResultContent
from tests.conftest import SENTINEL_KEY

NOW = datetime(2025, 2, 24, 22, 25, 0, tzinfo=UTC)


def _model(min_cacheable: int | None = None, reasoning: bool = True) -> ModelInfo:
    return ModelInfo(
        name="claude-test-4.5",
        provider="anthropic",
        api_id="claude-test-4-5",
        context_window=200_000,
        max_output_tokens=64_000,
        pricing=Pricing(standard=PriceTier(input=Decimal("3"), output=Decimal("15"))),
        capabilities=Capabilities(
            reasoning=reasoning,
            reasoning_style="anthropic_budget" if reasoning else None,
            caching=True,
            min_cacheable_tokens=min_cacheable,
            tools=True,
            vision=True,
        ),
    )


def _req(*messages: Message, model: ModelInfo | None = None, **fields) -> ProviderRequest:
    fields.setdefault("max_tokens", 1000)
    return ProviderRequest(model=model or _model(), messages=messages, **fields)


def sys_msg(text: str) -> Message:
    return Message(role=MessageRole.SYSTEM, content=text)


def user(text: str) -> Message:
    return Message(role=MessageRole.USER, content=text)


def assistant(text: str = "", calls: tuple[ToolCall, ...] = ()) -> Message:
    return Message(role=MessageRole.ASSISTANT, content=text, tool_calls=calls)


WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)

# ----------------------------------------------------------------------------- build_request


def test_build_request_basic_shape():
    kwargs = build_request(_req(sys_msg("Be brief."), user("Hi")))
    assert kwargs == {
        "model": "claude-test-4-5",
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 1000,
    }


def test_build_request_images_are_base64_sources_in_standard_alphabet():
    raw = b"\x89PNG\r\n\x1a\n\x00\xfb\xff\xfe"  # PNG magic; the tail differs between alphabets
    url_safe = base64.urlsafe_b64encode(raw).decode()
    msg = Message(
        role=MessageRole.USER, content=[ImageContent(data=url_safe, media_type="image/png")]
    )
    block = build_request(_req(msg))["messages"][0]["content"][0]
    assert block == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(raw).decode(),
        },
    }


def test_build_request_rejects_unsupported_images():
    msg = Message(
        role=MessageRole.USER, content=[ImageContent(data="AAAA", media_type="image/tiff")]
    )
    with pytest.raises(InvalidRequestError):
        build_request(_req(msg))


def test_tool_calls_and_results_merge_consecutive_turns():
    call_a = ToolCall(id="toolu_a", name="get_weather", arguments={"city": "Paris"})
    call_b = ToolCall(id="toolu_b", name="get_weather", arguments={"city": "Rome"})
    kwargs = build_request(
        _req(
            user("Weather?"),
            assistant("Checking.", (call_a, call_b)),
            Message(role=MessageRole.TOOL, content="18C", tool_call_id="toolu_a"),
            Message(
                role=MessageRole.TOOL,
                content=[
                    ToolResultContent(tool_call_id="toolu_b", content="no data", is_error=True)
                ],
            ),
            user("Thanks, summarise."),
        )
    )
    turns = kwargs["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "no data", "is_error": True},
        {"type": "text", "text": "Thanks, summarise."},
    ]


def test_tools_use_input_schema():
    kwargs = build_request(_req(user("hi"), tools=(WEATHER,)))
    assert kwargs["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert "tool_choice" not in kwargs


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice, wire):
    assert (
        build_request(_req(user("hi"), tools=(WEATHER,), tool_choice=choice))["tool_choice"] == wire
    )


def test_structured_output_uses_ga_output_config():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    kwargs = build_request(_req(user("json"), structured_output_schema=schema))
    assert kwargs["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_format" not in kwargs


def test_thinking_budget_map_and_max_tokens():
    assert THINKING_BUDGETS == {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
    roomy = build_request(_req(user("hi"), reasoning_effort="low", max_tokens=20_000))
    assert roomy["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert roomy["max_tokens"] == 20_000
    tight = build_request(_req(user("hi"), reasoning_effort="medium", max_tokens=500))
    assert tight["thinking"]["budget_tokens"] == 8192
    # raised so the budget fits and the caller's 500 stay available for the answer
    assert tight["max_tokens"] == 8192 + 500


def test_thinking_left_off_for_forced_tool_choice_and_non_reasoning_models():
    forced = build_request(
        _req(user("hi"), tools=(WEATHER,), tool_choice="required", reasoning_effort="high")
    )
    assert "thinking" not in forced
    plain = build_request(_req(user("hi"), model=_model(reasoning=False), reasoning_effort="high"))
    assert "thinking" not in plain and plain["max_tokens"] == 1000


def test_temperature_is_dropped_with_one_warning(monkeypatch):
    monkeypatch.setattr(adapter_module, "_temperature_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = build_request(_req(user("hi"), temperature=0.2))
        build_request(_req(user("hi"), temperature=0.7))
    assert "temperature" not in first and "extra_body" not in first
    assert len(caught) == 1 and "2026-10-21" in str(caught[0].message)


# ----------------------------------------------------------------------------- caching

LONG_SYSTEM = "word " * 1200  # 1200 tokens


def _marks(kwargs: dict) -> list[dict]:
    blocks = [*kwargs.get("tools", []), *kwargs.get("system", [])]
    for turn in kwargs["messages"]:
        blocks.extend(turn["content"])
    return [b for b in blocks if "cache_control" in b]


def test_no_cache_control_without_enable_caching():
    assert _marks(build_request(_req(sys_msg(LONG_SYSTEM), user("hi"), tools=(WEATHER,)))) == []


def test_cache_control_on_last_tool_and_system_block():
    kwargs = build_request(
        _req(
            sys_msg(LONG_SYSTEM), user("hi"), tools=(WEATHER,), enable_caching=True, cache_ttl="1h"
        )
    )
    assert kwargs["tools"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert kwargs["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert len(_marks(kwargs)) == 2  # a single-turn prompt gets no message breakpoint


def test_conversation_caches_latest_user_turn():
    kwargs = build_request(
        _req(
            sys_msg(LONG_SYSTEM),
            user("first question"),
            assistant("first answer"),
            user("second question"),
            enable_caching=True,
        )
    )
    assert kwargs["messages"][-1]["content"][-1]["cache_control"] == {
        "type": "ephemeral",
        "ttl": "5m",
    }
    assert "cache_control" not in kwargs["messages"][0]["content"][-1]
    assert len(_marks(kwargs)) == 2


def test_breakpoints_respect_minimum_cacheable_length():
    model = _model(min_cacheable=1024)
    short = build_request(
        _req(
            sys_msg("short system"),
            user("a"),
            assistant("b"),
            user("c"),
            model=model,
            enable_caching=True,
        )
    )
    assert _marks(short) == []
    # tools alone are short, the system prompt pushes the prefix past 1024
    long = build_request(
        _req(sys_msg(LONG_SYSTEM), user("hi"), tools=(WEATHER,), model=model, enable_caching=True)
    )
    assert "cache_control" not in long["tools"][-1]
    assert "cache_control" in long["system"][-1]
    # short system, but a long conversation history reaches the minimum at the last user turn
    history = build_request(
        _req(
            sys_msg("short"),
            user(LONG_SYSTEM),
            assistant("ok"),
            user("next"),
            model=model,
            enable_caching=True,
        )
    )
    assert "cache_control" not in history["system"][-1]
    assert "cache_control" in history["messages"][-1]["content"][-1]


# ----------------------------------------------------------------------------- parse_response


def _sdk_message(content: list[dict], usage: dict, stop_reason: str = "end_turn") -> SDKMessage:
    return SDKMessage.model_validate(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-4-5-20250929",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
    )


RATE_HEADERS = {
    "request-id": "req_123",
    "anthropic-ratelimit-requests-limit": "1000",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-requests-reset": "2025-02-24T22:25:30Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "78000",
    "anthropic-ratelimit-input-tokens-reset": "2025-02-24T22:25:32Z",
    "anthropic-ratelimit-output-tokens-limit": "16000",
    "anthropic-ratelimit-output-tokens-remaining": "12000",
    "anthropic-ratelimit-output-tokens-reset": "2025-02-24T22:25:47Z",
}


def test_parse_response_text_tools_thinking_and_cache_usage():
    message = _sdk_message(
        [
            {"type": "thinking", "thinking": "User wants weather.", "signature": "sig"},
            {"type": "text", "text": "I'll check "},
            {"type": "text", "text": "the weather."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        {
            "input_tokens": 412,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 2048,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 96,
        },
        stop_reason="tool_use",
    )
    result = parse_response(message, RATE_HEADERS, now=NOW)
    assert result.text == "I'll check the weather."
    assert result.tool_calls == (
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
    )
    assert result.reasoning_text == "User wants weather."
    usage = result.usage
    assert usage.input_tokens == 412 + 300 + 2048
    assert (usage.cached_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        2048,
        300,
        200,
    )
    assert usage.output_tokens == 96
    # no thinking_tokens reported: estimated from the thinking text
    assert usage.reasoning_tokens == count_text_tokens("User wants weather.") > 0
    assert (result.finish_reason, result.raw_finish_reason) == ("tool_calls", "tool_use")
    assert result.request_id == "req_123"
    assert result.model_version == "claude-test-4-5-20250929"
    limits = result.rate_limit
    assert (limits.requests_limit, limits.requests_remaining, limits.requests_reset_s) == (
        1000,
        999,
        30.0,
    )
    assert (limits.input_tokens_remaining, limits.input_tokens_reset_s) == (78000, 32.0)
    assert (limits.output_tokens_limit, limits.output_tokens_reset_s) == (16000, 47.0)


def test_parse_response_prefers_reported_thinking_tokens():
    message = _sdk_message(
        [
            {"type": "thinking", "thinking": "a b c", "signature": "s"},
            {"type": "text", "text": "x"},
        ],
        {
            "input_tokens": 5,
            "output_tokens": 300,
            "output_tokens_details": {"thinking_tokens": 250},
        },
    )
    result = parse_response(message, {})
    assert result.usage.reasoning_tokens == 250
    assert result.usage.input_tokens == 5 and result.usage.cached_tokens == 0
    assert result.rate_limit is None


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
    ],
)
def test_finish_reason_table(raw, ours):
    result = parse_response(
        _sdk_message([{"type": "text", "text": "x"}], {"input_tokens": 1, "output_tokens": 1}, raw)
    )
    assert (result.finish_reason, result.raw_finish_reason) == (ours, raw)


# ----------------------------------------------------------------------------- map_error

URL = "https://api.anthropic.com/v1/messages"


def _status_exc(cls, status: int, error_type: str, message: str, headers=None, details=None):
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    if details:
        body["error"]["details"] = details
    response = httpx2.Response(
        status,
        headers={"request-id": "req_err", **(headers or {})},
        json=body,
        request=httpx2.Request("POST", URL),
    )
    return cls(f"Error code: {status} - {body}", response=response, body=body)


def test_map_auth_errors():
    for cls, status, kind in (
        (anthropic.AuthenticationError, 401, "authentication_error"),
        (anthropic.PermissionDeniedError, 403, "permission_error"),
    ):
        err = map_error(_status_exc(cls, status, kind, "invalid x-api-key"), model="m")
        assert isinstance(err, AuthenticationError)
        assert (err.status, err.request_id, err.provider, err.model) == (
            status,
            "req_err",
            "anthropic",
            "m",
        )


def test_map_not_found_is_model_not_found():
    err = map_error(
        _status_exc(anthropic.NotFoundError, 404, "not_found_error", "model: nope"), model="nope"
    )
    assert isinstance(err, ModelNotFoundError) and "model: nope" in err.message


@pytest.mark.parametrize(
    ("message", "used", "limit"),
    [
        ("prompt is too long: 208310 tokens > 200000 maximum", 208310, 200000),
        (
            "input length and `max_tokens` exceed context limit: 199000 + 8000 > 200000",
            207000,
            200000,
        ),
    ],
)
def test_map_context_length(message, used, limit):
    err = map_error(
        _status_exc(anthropic.BadRequestError, 400, "invalid_request_error", message), model="m"
    )
    assert isinstance(err, ContextLengthError)
    assert (err.tokens_used, err.max_tokens) == (used, limit)


def test_map_other_client_errors_are_invalid_request():
    for cls, status in (
        (anthropic.BadRequestError, 400),
        (anthropic.ContentTooLargeError, 413),
        (anthropic.UnprocessableEntityError, 422),
    ):
        err = map_error(_status_exc(cls, status, "invalid_request_error", "bad field"), model="m")
        assert type(err) is InvalidRequestError and err.status == status


def test_map_rate_limit_with_retry_after_headers():
    exc = _status_exc(
        anthropic.RateLimitError, 429, "rate_limit_error", "slow down", {"retry-after": "7"}
    )
    err = map_error(exc, model="m")
    assert isinstance(err, RateLimitError)
    assert err.retry_after_s == 7.0 and not err.quota_exhausted and err.retryable
    ms = _status_exc(
        anthropic.RateLimitError,
        429,
        "rate_limit_error",
        "x",
        {"retry-after-ms": "1500", "retry-after": "9"},
    )
    assert map_error(ms, model="m").retry_after_s == 1.5


def test_map_spend_limit_is_quota_exhausted():
    coded = _status_exc(
        anthropic.RateLimitError,
        429,
        "rate_limit_error",
        "limit",
        details={"error_code": "enforced_spend_limit_reached"},
    )
    worded = _status_exc(
        anthropic.RateLimitError, 429, "rate_limit_error", "You have reached your spend limit"
    )
    for exc in (coded, worded):
        err = map_error(exc, model="m")
        assert isinstance(err, RateLimitError) and err.quota_exhausted and not err.retryable


def test_map_overloaded_and_server_errors():
    over = map_error(
        _status_exc(
            anthropic.OverloadedError, 529, "overloaded_error", "Overloaded", {"retry-after": "3"}
        ),
        model="m",
    )
    assert isinstance(over, ProviderOverloadedError) and over.retry_after_s == 3.0
    server = map_error(
        _status_exc(anthropic.InternalServerError, 500, "api_error", "boom"), model="m"
    )
    assert type(server) is ProviderError and server.status == 500 and server.request_id == "req_err"


def test_map_mid_stream_overloaded_event():
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    response = httpx2.Response(200, request=httpx2.Request("POST", URL))
    exc = anthropic.APIStatusError(str(body), response=response, body=body)
    assert isinstance(map_error(exc, model="m"), ProviderOverloadedError)


def test_map_timeouts_and_connection_errors():
    request = httpx2.Request("POST", URL)
    assert isinstance(map_error(anthropic.APITimeoutError(request), model="m"), LLMTimeoutError)
    conn = map_error(anthropic.APIConnectionError(request=request), model="m")
    assert isinstance(conn, ProviderConnectionError)
    assert isinstance(
        map_error(httpx2.RemoteProtocolError("cut"), model="m"), ProviderConnectionError
    )


def test_mapped_errors_pickle_with_their_fields():
    exc = _status_exc(
        anthropic.BadRequestError,
        400,
        "invalid_request_error",
        "prompt is too long: 5 tokens > 4 maximum",
    )
    err = pickle.loads(pickle.dumps(map_error(exc, model="m")))
    assert isinstance(err, ContextLengthError)
    assert (err.tokens_used, err.max_tokens, err.status, err.request_id) == (5, 4, 400, "req_err")
    rate = pickle.loads(
        pickle.dumps(
            map_error(
                _status_exc(
                    anthropic.RateLimitError, 429, "rate_limit_error", "x", {"retry-after": "2"}
                ),
                model="m",
            )
        )
    )
    assert isinstance(rate, RateLimitError) and rate.retry_after_s == 2.0
    assert not any(isinstance(v, BaseException) for v in vars(err).values())


# ----------------------------------------------------------------------------- adapter, factory


async def test_missing_key_is_configuration_error_on_first_call():
    adapter = AnthropicAdapter(Settings())
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY is not set"):
        await adapter.generate(_req(user("hi")))
    await adapter.aclose()


async def test_sentinel_key_never_in_repr_or_errors():
    settings = Settings(anthropic_api_key=SENTINEL_KEY, anthropic_base_url="http://127.0.0.1:9")
    adapter = AnthropicAdapter(settings)
    assert SENTINEL_KEY not in repr(adapter)
    with pytest.raises(ProviderConnectionError) as info:
        await adapter.generate(_req(user("hi"), timeout=5))
    err = info.value
    assert SENTINEL_KEY not in str(err) and SENTINEL_KEY not in repr(err)
    assert SENTINEL_KEY not in str(pickle.dumps(err))
    echoed = _status_exc(
        anthropic.AuthenticationError, 401, "authentication_error", f"bad key {SENTINEL_KEY}"
    )
    assert SENTINEL_KEY not in str(adapter._mapped(echoed, _req(user("hi"))))
    await adapter.aclose()


async def test_factory_creates_adapters_and_rejects_unknown_providers():
    adapter = create_adapter("anthropic", Settings(), max_connections=3)
    assert isinstance(adapter, AnthropicAdapter) and adapter.provider == "anthropic"
    await adapter.aclose()
    with pytest.raises(ConfigurationError, match="unknown provider"):
        create_adapter("mistral", Settings())
    assert API_KEY_ENV == {  # the one provider -> key-variable table
        "anthropic": ("ANTHROPIC_API_KEY",),
        "openai": ("OPENAI_API_KEY",),
        "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    }


# ----------------------------------------------------------------------------- adapter over a mock transport


def _sse(*events: dict) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


STREAM_EVENTS = (
    {
        "type": "message_start",
        "message": {
            "id": "msg_s",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 90,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Hmm."},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_s", "name": "get_weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 42},
    },
    {"type": "message_stop"},
)


def _mock_adapter(handler) -> tuple[AnthropicAdapter, list[httpx2.Request]]:
    seen: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return handler(request)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(record))
    settings = Settings(anthropic_api_key=SENTINEL_KEY, anthropic_base_url="http://anthropic.test")
    return AnthropicAdapter(settings, http_client=client), seen


async def test_generate_sends_built_request_and_parses_answer():
    body = _sdk_message(
        [{"type": "text", "text": "Hi there"}], {"input_tokens": 7, "output_tokens": 3}
    ).model_dump(mode="json")
    adapter, seen = _mock_adapter(
        lambda r: httpx2.Response(200, json=body, headers={"request-id": "req_g"})
    )
    result = await adapter.generate(_req(sys_msg("Be brief."), user("Hi"), max_tokens=50))
    sent = json.loads(seen[0].content)
    assert seen[0].url.path == "/v1/messages"
    assert sent == {**build_request(_req(sys_msg("Be brief."), user("Hi"), max_tokens=50))}
    assert (result.text, result.request_id, result.usage.input_tokens) == ("Hi there", "req_g", 7)


async def test_stream_accumulates_text_thinking_tools_and_usage():
    adapter, seen = _mock_adapter(
        lambda r: httpx2.Response(
            200,
            content=_sse(*STREAM_EVENTS),
            headers={"request-id": "req_s", "content-type": "text/event-stream"},
        )
    )
    items = [item async for item in adapter.stream(_req(user("Hi"), tools=(WEATHER,)))]
    assert items[:-1] == ["Hel", "lo"]
    final = items[-1]
    assert json.loads(seen[0].content)["stream"] is True
    assert final.text == "Hello" and final.reasoning_text == "Hmm."
    assert final.tool_calls == (
        ToolCall(id="toolu_s", name="get_weather", arguments={"city": "Paris"}),
    )
    assert final.usage.input_tokens == 100 and final.usage.cached_tokens == 90
    assert final.usage.output_tokens == 42 and final.finish_reason == "tool_calls"
    assert final.request_id == "req_s" and final.model_version == "claude-test-4-5-20250929"


async def test_stream_error_event_and_early_end_are_mapped():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    adapter, _ = _mock_adapter(
        lambda r: httpx2.Response(
            200,
            content=_sse(STREAM_EVENTS[0], error),
            headers={"content-type": "text/event-stream"},
        )
    )
    with pytest.raises(ProviderOverloadedError):
        async for _ in adapter.stream(_req(user("Hi"))):
            pass
    truncated, _ = _mock_adapter(
        lambda r: httpx2.Response(
            200, content=_sse(*STREAM_EVENTS[:6]), headers={"content-type": "text/event-stream"}
        )
    )
    with pytest.raises(ProviderConnectionError):
        async for _ in truncated.stream(_req(user("Hi"))):
            pass


async def test_http_errors_and_count_tokens_through_the_sdk():
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("count_tokens"):
            return httpx2.Response(200, json={"input_tokens": 2095})
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
        return httpx2.Response(429, json=body, headers={"retry-after": "4", "request-id": "req_r"})

    adapter, seen = _mock_adapter(handler)
    assert await adapter.count_tokens(_req(user("Hi"))) == 2095
    assert "max_tokens" not in json.loads(seen[0].content)
    with pytest.raises(RateLimitError) as info:
        await adapter.generate(_req(user("Hi")))
    assert (info.value.retry_after_s, info.value.request_id) == (4.0, "req_r")
    assert len(seen) == 2  # max_retries=0: the SDK did not retry


def test_minimum_cacheable_boundary_counts_request_and_message_overhead():
    model = _model(min_cacheable=1024)
    # prefix = REQUEST_OVERHEAD 3 + MESSAGE_OVERHEAD 4 + n words
    at = build_request(_req(sys_msg("word " * 1017), user("hi"), model=model, enable_caching=True))
    below = build_request(
        _req(sys_msg("word " * 1016), user("hi"), model=model, enable_caching=True)
    )
    assert "cache_control" in at["system"][-1]
    assert "cache_control" not in below["system"][-1]


def test_thinking_left_off_while_tool_results_are_sent_back():
    call = ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"})
    kwargs = build_request(
        _req(
            user("Weather?"),
            assistant("", (call,)),
            Message(role=MessageRole.TOOL, content="18C", tool_call_id="toolu_1"),
            tools=(WEATHER,),
            reasoning_effort="low",
            max_tokens=4000,
        )
    )
    assert "thinking" not in kwargs and kwargs["max_tokens"] == 4000
