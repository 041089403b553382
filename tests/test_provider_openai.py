"""OpenAI adapter without a network: request mapping, response/stream mapping, errors.

The adapter-level tests run the real ``openai`` SDK over an ``httpx2.MockTransport``, so the
wire body the SDK sends and the headers it reads are the real ones.
"""

from __future__ import annotations

import json
import pickle
from decimal import Decimal

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from llm.config import Settings
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
from llm.providers import openai as oa
from llm.providers.base import ProviderRequest, ProviderResult, ToolSpec
from llm.providers.common import estimate_prompt_tokens
from llm.types import ImageContent, Message, MessageRole, TextContent, ToolCall, ToolResultContent
from tests.conftest import SENTINEL_KEY

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PRICING = Pricing(standard=PriceTier(input=Decimal("1"), output=Decimal("4")))


def model(name: str = "gpt-4.1", *, reasoning: bool = False) -> ModelInfo:
    caps = Capabilities(
        vision=True,
        tools=True,
        structured_output=True,
        reasoning=reasoning,
        reasoning_style="openai_effort" if reasoning else None,
        reasoning_always_on=reasoning,
        sampling_params=not reasoning,
    )
    return ModelInfo(
        name=name,
        provider="openai",
        api_id=name,
        context_window=128_000,
        max_output_tokens=16_384,
        pricing=PRICING,
        capabilities=caps,
    )


def request(*messages: Message, **fields) -> ProviderRequest:
    fields.setdefault("model", model())
    fields.setdefault("max_tokens", 256)
    return ProviderRequest(messages=messages, **fields)


SYSTEM = Message(role=MessageRole.SYSTEM, content="Be terse.")
HELLO = Message(role=MessageRole.USER, content="hello")
STRICT = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {"type": "integer"}}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


# --- build_request ---------------------------------------------------------------------------


def test_reasoning_model_gets_developer_role_effort_and_no_temperature():
    req = request(SYSTEM, HELLO, model=model("o4-mini", reasoning=True), temperature=0.3,
                  reasoning_effort="high")  # fmt: skip
    kwargs = oa.build_request(req)
    assert kwargs["messages"][0] == {"role": "developer", "content": "Be terse."}
    assert kwargs["reasoning_effort"] == "high"
    # the answer's 256 plus the high effort's reasoning allowance, within the output limit
    assert kwargs["max_completion_tokens"] == min(256 + 24576, req.model.max_output_tokens) > 256
    assert "temperature" not in kwargs and "top_p" not in kwargs and "max_tokens" not in kwargs


def test_reasoning_allowance_follows_the_effort_and_the_output_limit():
    small = model("o4-mini", reasoning=True).model_copy(update={"max_output_tokens": 4000})
    big = model("o4-mini", reasoning=True).model_copy(update={"max_output_tokens": 128_000})
    assert oa.build_request(request(HELLO, model=big))["max_completion_tokens"] == 256 + 8192
    low = request(HELLO, model=big, reasoning_effort="low")
    assert oa.build_request(low)["max_completion_tokens"] == 256 + 1024
    assert oa.build_request(request(HELLO, model=small))["max_completion_tokens"] == 4000
    assert oa.build_request(request(HELLO))["max_completion_tokens"] == 256  # not reasoning


def test_plain_model_gets_system_role_temperature_and_no_effort():
    kwargs = oa.build_request(request(SYSTEM, HELLO, temperature=0.2, reasoning_effort="low"))
    assert kwargs["messages"][0] == {"role": "system", "content": "Be terse."}
    assert kwargs["temperature"] == 0.2
    assert kwargs["max_completion_tokens"] == 256
    assert "reasoning_effort" not in kwargs and "max_tokens" not in kwargs


def test_image_becomes_standard_base64_data_url():
    urlsafe = PNG.replace("+", "-").replace("/", "_")
    msg = Message(
        role=MessageRole.USER, content=[TextContent(text="what?"), ImageContent(data=urlsafe)]
    )
    parts = oa.build_request(request(msg))["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "what?"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


def test_bad_image_is_an_invalid_request():
    msg = Message(role=MessageRole.USER, content=[ImageContent(data="!!!notbase64")])
    with pytest.raises(InvalidRequestError):
        oa.build_request(request(msg))


def test_tool_round_trip_messages():
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    messages = (
        HELLO,
        Message(role=MessageRole.ASSISTANT, tool_calls=(call,)),
        Message(role=MessageRole.TOOL, tool_call_id="call_1", content="18C"),
    )
    mapped = oa.build_request(request(*messages))["messages"]
    assert mapped[1]["role"] == "assistant" and mapped[1]["content"] is None
    function = mapped[1]["tool_calls"][0]
    assert function["id"] == "call_1" and function["type"] == "function"
    assert json.loads(function["function"]["arguments"]) == {"city": "Paris"}
    assert mapped[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}


def test_tool_results_inside_a_user_turn_become_tool_messages():
    msg = Message(
        role=MessageRole.USER,
        content=[ToolResultContent(tool_call_id="c1", content="ok"), TextContent(text="and?")],
    )
    mapped = oa.build_request(request(msg))["messages"]
    assert mapped == [
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "and?"}]},
    ]


def test_tool_message_without_call_id_is_rejected():
    with pytest.raises(InvalidRequestError):
        oa.build_request(request(Message(role=MessageRole.TOOL, content="x")))


def test_tools_are_strict_only_when_schema_allows():
    loose = {"type": "object", "properties": {"q": {"type": "string"}}}
    tools = (
        ToolSpec(name="strict", description="d", parameters=STRICT),
        ToolSpec(name="loose", parameters=loose),
    )
    mapped = oa.build_request(request(HELLO, tools=tools, tool_choice="strict"))
    assert mapped["tools"][0] == {
        "type": "function",
        "function": {"name": "strict", "description": "d", "parameters": STRICT, "strict": True},
    }
    assert "strict" not in mapped["tools"][1]["function"]
    assert mapped["tool_choice"] == {"type": "function", "function": {"name": "strict"}}


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_tool_choice_words_pass_through(choice):
    tools = (ToolSpec(name="t"),)
    assert (
        oa.build_request(request(HELLO, tools=tools, tool_choice=choice))["tool_choice"] == choice
    )


def test_response_format_strict_flag_follows_schema():
    strict = oa.build_request(request(HELLO, structured_output_schema=STRICT))["response_format"]
    assert strict == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": STRICT, "strict": True},
    }
    optional = {**STRICT, "required": ["a"]}
    loose = oa.build_request(request(HELLO, structured_output_schema=optional))["response_format"]
    assert loose["json_schema"]["strict"] is False
    assert loose["json_schema"]["schema"] == optional  # never rewritten
    array = {"type": "array", "items": {"type": "string"}}
    rooted = oa.build_request(request(HELLO, structured_output_schema=array))["response_format"]
    assert rooted["json_schema"]["strict"] is False


@pytest.mark.parametrize(
    "schema, expected",
    [
        (STRICT, True),
        ({"type": "object", "properties": {}, "additionalProperties": False}, True),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, False),
        ({**STRICT, "properties": {**STRICT["properties"], "n": {"type": "object", "properties": {}}},
          "required": ["a", "b", "n"]}, False),
        ({**STRICT, "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "object",
          "properties": {"x": {"type": "string"}}, "required": ["x"]}]}, "b": {"type": "null"}}},
         False),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"],
          "additionalProperties": False, "$defs": {"A": {"type": "object", "properties": {}}}},
         False),
        ({**STRICT, "allOf": [{"type": "object"}]}, False),
    ],
)  # fmt: skip
def test_strict_schema_detection(schema, expected):
    assert oa.is_strict_schema(schema) is expected


# --- responses -------------------------------------------------------------------------------


def completion(message: dict, finish: str = "stop", usage: dict | None = None) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4.1-2025-04-14",
            "choices": [
                {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
            ],
            "usage": usage,
        }
    )


def test_usage_follows_the_neutral_convention():
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 50},
        "completion_tokens_details": {"reasoning_tokens": 256},
    }
    result = oa.parse_response(completion({"content": "hi"}, usage=usage))
    assert result.usage.input_tokens == 1200
    assert result.usage.cached_tokens == 1024
    assert result.usage.cache_write_tokens == 50
    assert result.usage.output_tokens == 300
    assert result.usage.reasoning_tokens == 256
    assert result.usage.uncached_input_tokens == 126


def test_usage_without_details_has_zero_cache_and_reasoning():
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    result = oa.parse_response(completion({"content": "x"}, usage=usage))
    assert (
        result.usage.cached_tokens,
        result.usage.cache_write_tokens,
        result.usage.reasoning_tokens,
    ) == (0, 0, 0)


def test_tool_call_response_and_headers():
    message = {
        "content": None,
        "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
        ],
    }
    headers = httpx2.Headers({"x-request-id": "req_42", "x-ratelimit-remaining-tokens": "900"})
    result = oa.parse_response(completion(message, "tool_calls"), headers=headers)
    assert result.tool_calls == (ToolCall(id="call_9", name="f", arguments={"x": 1}),)
    assert result.finish_reason == "tool_calls" and result.raw_finish_reason == "tool_calls"
    assert result.request_id == "req_42" and result.model_version == "gpt-4.1-2025-04-14"
    assert result.rate_limit.input_tokens_remaining == 900


def test_refusal_is_a_content_filter():
    result = oa.parse_response(completion({"content": None, "refusal": "I can't."}))
    assert result.finish_reason == "content_filter" and result.text == ""


@pytest.mark.parametrize(
    "raw, finish",
    [("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"),
     ("content_filter", "content_filter"), ("function_call", "tool_calls"), ("weird", "other")],
)  # fmt: skip
def test_finish_table(raw, finish):
    assert oa.map_finish_reason(raw) == finish


@pytest.mark.parametrize(
    "text, seconds",
    [("6m0s", 360.0), ("12ms", 0.012), ("1.5s", 1.5), ("2m59.56s", 179.56), ("1h2m", 3720.0),
     ("500us", 0.0005), ("7", 7.0), ("0s", 0.0), ("soon", None), ("", None), (None, None)],
)  # fmt: skip
def test_go_duration_parser(text, seconds):
    parsed = oa.parse_go_duration(text)
    if seconds is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(seconds)


def test_rate_limit_snapshot_from_headers():
    snapshot = oa.parse_rate_limit_headers(
        {
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-limit-tokens": "160000",
            "x-ratelimit-remaining-tokens": "159976",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert snapshot.requests_limit == 5000 and snapshot.requests_remaining == 4999
    assert snapshot.requests_reset_s == pytest.approx(0.012)
    assert snapshot.input_tokens_limit == 160000 and snapshot.input_tokens_remaining == 159976
    assert snapshot.input_tokens_reset_s == 360.0
    assert snapshot.output_tokens_limit is None
    assert oa.parse_rate_limit_headers({"content-type": "application/json"}) is None


# --- errors ----------------------------------------------------------------------------------


def status_error(cls, status: int, body: dict, headers: dict | None = None):
    req = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    response = httpx2.Response(
        status, request=req, headers={"x-request-id": "req_e", **(headers or {})}
    )
    return cls(body["error"]["message"], response=response, body=body["error"])


def err_body(message: str, code: str | None = None, type_: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def test_context_length_numbers_are_parsed():
    body = err_body(
        "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "130532 tokens. Please reduce the length of the messages.",
        "context_length_exceeded",
    )
    error = oa.map_error(status_error(openai.BadRequestError, 400, body), model="gpt-4o")
    assert isinstance(error, ContextLengthError)
    assert (error.tokens_used, error.max_tokens) == (130532, 128000)
    assert error.status == 400 and error.request_id == "req_e" and error.provider == "openai"


def test_context_length_completion_variant():
    body = err_body(
        "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens "
        "(8000 in the messages, 1000 in the completion). Please reduce the length.",
        "context_length_exceeded",
    )
    error = oa.map_error(status_error(openai.BadRequestError, 400, body), model="m")
    assert (error.tokens_used, error.max_tokens) == (9000, 8192)


def test_other_400_is_invalid_request():
    body = err_body("Unsupported value: 'temperature'", "unsupported_value")
    assert (
        type(oa.map_error(status_error(openai.BadRequestError, 400, body), model="m"))
        is InvalidRequestError
    )


def test_rate_limit_carries_retry_after_and_is_retryable():
    body = err_body("Rate limit reached", "rate_limit_exceeded", "tokens")
    exc = status_error(openai.RateLimitError, 429, body, {"retry-after-ms": "1500"})
    error = oa.map_error(exc, model="m")
    assert isinstance(error, RateLimitError)
    assert error.retry_after_s == 1.5 and not error.quota_exhausted and error.retryable


def test_rate_limit_hint_from_message_when_no_header():
    body = err_body(
        "Limit 30000, Used 29000, Requested 2000. Please try again in 2s.", "rate_limit_exceeded"
    )
    error = oa.map_error(status_error(openai.RateLimitError, 429, body), model="m")
    assert error.retry_after_s == 2.0


def test_insufficient_quota_is_not_retryable():
    body = err_body("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
    error = oa.map_error(status_error(openai.RateLimitError, 429, body), model="m")
    assert error.quota_exhausted and not error.retryable


@pytest.mark.parametrize(
    "cls, status, expected",
    [
        (openai.AuthenticationError, 401, AuthenticationError),
        (openai.PermissionDeniedError, 403, AuthenticationError),
        (openai.NotFoundError, 404, ModelNotFoundError),
        (openai.UnprocessableEntityError, 422, InvalidRequestError),
        (openai.InternalServerError, 500, ProviderError),
        (openai.InternalServerError, 502, ProviderError),
        (openai.InternalServerError, 503, ProviderOverloadedError),
    ],
)
def test_status_table(cls, status, expected):
    error = oa.map_error(status_error(cls, status, err_body("boom")), model="m")
    assert type(error) is expected and error.status == status


def test_transport_errors():
    req = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")
    assert isinstance(oa.map_error(openai.APITimeoutError(request=req), model="m"), LLMTimeoutError)
    assert isinstance(
        oa.map_error(openai.APIConnectionError(request=req), model="m"), ProviderConnectionError
    )
    assert isinstance(
        oa.map_error(httpx2.ReadTimeout("t", request=req), model="m"), LLMTimeoutError
    )
    assert isinstance(
        oa.map_error(httpx2.RemoteProtocolError("x", request=req), model="m"),
        ProviderConnectionError,
    )


def test_key_never_leaks_from_auth_errors():
    body = err_body(f"Incorrect API key provided: {SENTINEL_KEY}.", "invalid_api_key")
    error = oa.map_error(status_error(openai.AuthenticationError, 401, body), model="m")
    restored = pickle.loads(pickle.dumps(error))
    for text in (str(error), repr(error), str(restored), error.message):
        assert SENTINEL_KEY not in text and "SENTINEL" not in text


def test_key_like_strings_are_scrubbed_from_other_messages():
    body = err_body(f"bad request for key {SENTINEL_KEY}")
    error = oa.map_error(status_error(openai.BadRequestError, 400, body), model="m")
    assert "SENTINEL" not in str(error) and "[redacted]" in str(error)


def test_mapped_errors_pickle_with_their_fields():
    body = err_body("slow down", "rate_limit_exceeded")
    error = oa.map_error(
        status_error(openai.RateLimitError, 429, body, {"retry-after": "3"}), model="m"
    )
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is RateLimitError
    assert (restored.retry_after_s, restored.status, restored.request_id, restored.model) == (
        3.0,
        429,
        "req_e",
        "m",
    )
    assert restored.__cause__ is None and error.__cause__ is None


# --- the adapter over a mock transport -------------------------------------------------------


def settings(key: str | None = SENTINEL_KEY) -> Settings:
    return Settings(openai_api_key=key, openai_base_url="https://mock.test/v1")


def adapter_with(handler) -> oa.OpenAIAdapter:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return oa.OpenAIAdapter(settings(), http_client=client)


COMPLETION_JSON = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
}


async def test_generate_sends_key_once_and_reads_headers():
    seen = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        headers = {"x-request-id": "req_1", "x-ratelimit-remaining-requests": "7"}
        return httpx2.Response(200, json=COMPLETION_JSON, headers=headers)

    adapter = adapter_with(handler)
    result = await adapter.generate(request(HELLO))
    assert result.text == "hi" and result.request_id == "req_1"
    assert result.rate_limit.requests_remaining == 7
    assert str(seen[0].url) == "https://mock.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == f"Bearer {SENTINEL_KEY}"
    assert seen[0].headers.get("x-stainless-retry-count") == "0"
    assert SENTINEL_KEY not in repr(adapter)


async def test_no_sdk_retries_on_429():
    calls = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        calls.append(req)
        return httpx2.Response(
            429, json=err_body("slow", "rate_limit_exceeded"), headers={"retry-after": "0"}
        )

    with pytest.raises(RateLimitError):
        await adapter_with(handler).generate(request(HELLO))
    assert len(calls) == 1


def sse(*events: dict) -> bytes:
    frames = [f"data: {json.dumps(event)}\n\n" for event in events]
    return ("".join(frames) + "data: [DONE]\n\n").encode()


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "o4-mini-x",
            "choices": choices, "usage": usage}  # fmt: skip


async def test_stream_assembles_text_tool_calls_and_usage():
    bodies = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(req.content))
        content = sse(
            chunk({"role": "assistant", "content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                   "function": {"name": "f", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                   "function": {"name": "g", "arguments": "{}"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 2}"}}]}),
            chunk({}, finish="tool_calls"),
            chunk(None, usage={"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50,
                               "completion_tokens_details": {"reasoning_tokens": 12}}),
        )  # fmt: skip
        return httpx2.Response(
            200,
            content=content,
            headers={"content-type": "text/event-stream", "x-request-id": "req_s"},
        )

    items = [item async for item in adapter_with(handler).stream(request(HELLO))]
    assert items[:2] == ["Hel", "lo"]
    final = items[-1]
    assert isinstance(final, ProviderResult) and len(items) == 3
    assert final.text == "Hello" and final.finish_reason == "tool_calls"
    assert final.tool_calls == (
        ToolCall(id="call_a", name="f", arguments={"x": 2}),
        ToolCall(id="call_b", name="g", arguments={}),
    )
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.reasoning_tokens) == (
        20,
        30,
        12,
    )
    assert final.request_id == "req_s"
    assert bodies[0]["stream"] is True and bodies[0]["stream_options"] == {"include_usage": True}


async def test_stream_cut_before_finish_is_a_connection_error():
    def handler(req: httpx2.Request) -> httpx2.Response:
        body = f"data: {json.dumps(chunk({'content': 'par'}))}\n\n".encode()
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with pytest.raises(ProviderConnectionError) as info:
        _ = [item async for item in adapter_with(handler).stream(request(HELLO))]
    assert info.value.model == "gpt-4.1"


async def test_missing_key_is_a_configuration_error_on_first_call():
    adapter = oa.OpenAIAdapter(settings(key=None))
    with pytest.raises(ConfigurationError):
        await adapter.generate(request(HELLO))
    await adapter.aclose()


async def test_count_tokens_is_the_local_estimate():
    req = request(SYSTEM, HELLO, tools=(ToolSpec(name="t", parameters=STRICT),))
    adapter = adapter_with(lambda r: httpx2.Response(500))
    assert await adapter.count_tokens(req) == estimate_prompt_tokens(req)
