"""Gemini adapter without a network: request mapping, responses, errors, explicit caches.

``build_request`` output is validated against the SDK's own pydantic types (which forbid
unknown fields), so a misspelt field fails here rather than on the wire.
"""

from __future__ import annotations

import base64
import pickle
from decimal import Decimal
from types import SimpleNamespace

import httpx2
import pytest
from google.genai import errors as genai_errors
from google.genai import types

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
from llm.providers import google as gg
from llm.providers.base import ProviderRequest, ToolSpec
from llm.providers.google_cache import ExplicitCacheManager, prefix_key
from llm.types import ImageContent, Message, MessageRole, TextContent, ToolCall, ToolResultContent
from tests.conftest import SENTINEL_KEY

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PRICING = Pricing(standard=PriceTier(input=Decimal("0.3"), output=Decimal("2.5")))


def model(
    name: str = "gemini-2.5-flash", *, style: str = "gemini_budget", max_out: int = 65536
) -> ModelInfo:
    caps = Capabilities(
        vision=True,
        tools=True,
        structured_output=True,
        reasoning=True,
        reasoning_style=style,
        caching=True,
        min_cacheable_tokens=1024,
    )
    return ModelInfo(
        name=name,
        provider="google",
        api_id=name,
        context_window=1_048_576,
        max_output_tokens=max_out,
        pricing=PRICING,
        capabilities=caps,
    )


def request(*messages: Message, **fields) -> ProviderRequest:
    fields.setdefault("model", model())
    fields.setdefault("max_tokens", 512)
    return ProviderRequest(messages=messages, **fields)


SYSTEM = Message(role=MessageRole.SYSTEM, content="Be terse.")
HELLO = Message(role=MessageRole.USER, content="hello")
CALL = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
TOOL = ToolSpec(
    name="get_weather", description="w", parameters={"type": "object", "properties": {}}
)


def validated(kwargs: dict) -> tuple[list[types.Content], types.GenerateContentConfig]:
    contents = [types.Content.model_validate(item) for item in kwargs["contents"]]
    return contents, types.GenerateContentConfig.model_validate(kwargs["config"])


# --- build_request ---------------------------------------------------------------------------


def test_system_goes_to_system_instruction_and_roles_map():
    msgs = (SYSTEM, HELLO, Message(role=MessageRole.ASSISTANT, content="hi"), HELLO)
    kwargs = gg.build_request(request(*msgs, temperature=0.4))
    assert kwargs["model"] == "gemini-2.5-flash"
    assert kwargs["config"]["system_instruction"] == "Be terse."
    assert [c["role"] for c in kwargs["contents"]] == ["user", "model", "user"]
    assert kwargs["config"]["temperature"] == 0.4
    # gemini-2.5-flash thinks unasked: its thoughts get room on top of the answer's 512
    assert kwargs["config"]["max_output_tokens"] == 512 + gg.THINKING_BUDGETS["high"]
    validated(kwargs)


def test_image_is_inline_bytes():
    urlsafe = PNG.replace("+", "-").replace("/", "_")
    msg = Message(
        role=MessageRole.USER, content=[TextContent(text="what?"), ImageContent(data=urlsafe)]
    )
    parts = gg.build_request(request(msg))["contents"][0]["parts"]
    assert parts[1] == {"inline_data": {"mime_type": "image/png", "data": base64.b64decode(PNG)}}


def test_tool_call_and_response_are_named_from_the_earlier_call():
    msgs = (
        HELLO,
        Message(role=MessageRole.ASSISTANT, content="checking", tool_calls=(CALL,)),
        Message(role=MessageRole.TOOL, tool_call_id="call_1", content="18C"),
    )
    kwargs = gg.build_request(request(*msgs))
    model_turn, tool_turn = kwargs["contents"][1], kwargs["contents"][2]
    assert model_turn == {
        "role": "model",
        "parts": [
            {"text": "checking"},
            {"function_call": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}},
        ],
    }
    assert tool_turn == {
        "role": "user",
        "parts": [
            {
                "function_response": {
                    "name": "get_weather",
                    "id": "call_1",
                    "response": {"result": "18C"},
                }
            }
        ],
    }
    validated(kwargs)


def test_failed_tool_results_are_wrapped_as_error_and_merged_into_one_turn():
    second = ToolCall(id="call_2", name="lookup", arguments={})
    msgs = (
        HELLO,
        Message(role=MessageRole.ASSISTANT, tool_calls=(CALL, second)),
        Message(role=MessageRole.TOOL, tool_call_id="call_1", content="18C"),
        Message(
            role=MessageRole.TOOL,
            content=[ToolResultContent(tool_call_id="call_2", content="nope", is_error=True)],
        ),
    )
    contents = gg.build_request(request(*msgs))["contents"]
    assert len(contents) == 3
    responses = [part["function_response"] for part in contents[2]["parts"]]
    assert [(r["name"], r["response"]) for r in responses] == [
        ("get_weather", {"result": "18C"}),
        ("lookup", {"error": "nope"}),
    ]


def test_tool_result_with_unknown_call_is_rejected():
    msg = Message(role=MessageRole.TOOL, tool_call_id="ghost", content="x")
    with pytest.raises(InvalidRequestError):
        gg.build_request(request(HELLO, msg))


def test_gemini_3_replays_calls_with_the_placeholder_signature():
    msgs = (HELLO, Message(role=MessageRole.ASSISTANT, tool_calls=(CALL,)))
    level = gg.build_request(
        request(*msgs, model=model("gemini-3-pro-preview", style="gemini_level"))
    )
    assert (
        level["contents"][1]["parts"][0]["thought_signature"] == b"skip_thought_signature_validator"
    )
    budget = gg.build_request(request(*msgs))
    assert "thought_signature" not in budget["contents"][1]["parts"][0]
    validated(level)


def test_tools_and_tool_choice():
    tools = (TOOL,)
    kwargs = gg.build_request(request(HELLO, tools=tools, tool_choice="get_weather"))
    assert kwargs["config"]["tools"] == [
        {
            "function_declarations": [
                {
                    "name": "get_weather",
                    "parameters_json_schema": TOOL.parameters,
                    "description": "w",
                }
            ]
        }
    ]
    assert kwargs["config"]["tool_config"] == {
        "function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_weather"]}
    }
    validated(kwargs)


@pytest.mark.parametrize("choice, mode", [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")])
def test_tool_choice_modes(choice, mode):
    config = gg.build_request(request(HELLO, tools=(TOOL,), tool_choice=choice))["config"]
    assert config["tool_config"] == {"function_calling_config": {"mode": mode}}


def test_structured_output():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    config = gg.build_request(request(HELLO, structured_output_schema=schema))["config"]
    assert config["response_mime_type"] == "application/json"
    assert config["response_json_schema"] == schema


@pytest.mark.parametrize(
    "effort, budget", [("minimal", 512), ("low", 1024), ("medium", 8192), ("high", 24576)]
)
def test_thinking_budget_for_gemini_25(effort, budget):
    config = gg.build_request(request(HELLO, reasoning_effort=effort))["config"]
    assert config["thinking_config"] == {"thinking_budget": budget, "include_thoughts": False}


def test_thinking_budget_is_capped_by_model_output_limit():
    small = model("gemini-small", max_out=8000)
    config = gg.build_request(request(HELLO, model=small, reasoning_effort="high"))["config"]
    # the answer keeps its max_tokens (512): the budget takes what the output limit leaves
    assert config["thinking_config"]["thinking_budget"] == 8000 - 512
    assert config["max_output_tokens"] == 8000


def test_thinking_level_for_gemini_3():
    gem3 = model("gemini-3-pro-preview", style="gemini_level")
    kwargs = gg.build_request(request(HELLO, model=gem3, reasoning_effort="low"))
    assert kwargs["config"]["thinking_config"] == {
        "thinking_level": "LOW",
        "include_thoughts": False,
    }
    _, config = validated(kwargs)
    assert config.thinking_config.thinking_level == types.ThinkingLevel.LOW


def test_no_effort_leaves_thinking_alone():
    assert "thinking_config" not in gg.build_request(request(HELLO))["config"]


def test_cached_content_omits_the_static_prefix():
    req = request(
        SYSTEM, HELLO, tools=(TOOL,), tool_choice="auto", cached_content="cachedContents/abc"
    )
    config = gg.build_request(req)["config"]
    assert config["cached_content"] == "cachedContents/abc"
    assert not {"system_instruction", "tools", "tool_config"} & config.keys()


def test_timeout_is_sent_in_milliseconds():
    assert gg.build_request(request(HELLO, timeout=2.5))["config"]["http_options"] == {
        "timeout": 2500
    }


# --- responses -------------------------------------------------------------------------------


def response(
    parts: list[dict] | None, finish: str | None = "STOP", usage: dict | None = None, **extra
):
    body: dict = {"responseId": "resp-1", "modelVersion": "gemini-2.5-flash-001", **extra}
    if parts is not None:
        candidate: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body["candidates"] = [candidate]
    if usage is not None:
        body["usageMetadata"] = usage
    return types.GenerateContentResponse.model_validate(body)


def test_usage_convention_adds_thoughts_to_output():
    usage = {"promptTokenCount": 5000, "cachedContentTokenCount": 4096, "candidatesTokenCount": 40,
             "thoughtsTokenCount": 260, "totalTokenCount": 5300}  # fmt: skip
    result = gg.parse_response(response([{"text": "hi"}], usage=usage))
    assert result.usage.input_tokens == 5000
    assert result.usage.cached_tokens == 4096
    assert result.usage.output_tokens == 300
    assert result.usage.reasoning_tokens == 260
    assert result.usage.cache_write_tokens == 0
    assert result.request_id == "resp-1" and result.model_version == "gemini-2.5-flash-001"


def test_function_calls_make_stop_a_tool_call_and_thoughts_are_kept_apart():
    parts = [
        {"text": "plan", "thought": True},
        {"text": "ok"},
        {"functionCall": {"name": "f", "args": {"x": 1}, "id": "fc1"}},
        {"functionCall": {"name": "g", "args": {}}},
    ]
    result = gg.parse_response(response(parts))
    assert result.text == "ok" and result.reasoning_text == "plan"
    assert result.finish_reason == "tool_calls" and result.raw_finish_reason == "STOP"
    assert result.tool_calls[0] == ToolCall(id="fc1", name="f", arguments={"x": 1})
    assert result.tool_calls[1].name == "g" and result.tool_calls[1].id.startswith("call_")


@pytest.mark.parametrize(
    "raw, finish",
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
     ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
     ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
     ("MALFORMED_FUNCTION_CALL", "other"), ("OTHER", "other")],
)  # fmt: skip
def test_finish_table(raw, finish):
    assert gg.parse_response(response([{"text": "x"}], finish=raw)).finish_reason == finish


def test_blocked_prompt_is_a_content_filter_with_empty_text():
    blocked = response(None, promptFeedback={"blockReason": "PROHIBITED_CONTENT"},
                       usage={"promptTokenCount": 12})  # fmt: skip
    result = gg.parse_response(blocked)
    assert result.finish_reason == "content_filter" and result.text == ""
    assert result.raw_finish_reason == "PROHIBITED_CONTENT" and result.usage.input_tokens == 12


def test_stream_assembler_takes_last_usage_and_finish():
    assembler = gg.StreamAssembler()
    pieces = [
        assembler.add(response([{"text": "Hel"}], finish=None, usage={"promptTokenCount": 9, "candidatesTokenCount": 1})),
        assembler.add(response([{"text": "lo"}], finish=None, usage={"promptTokenCount": 9, "candidatesTokenCount": 2})),
        assembler.add(response([{"text": ""}], usage={"promptTokenCount": 11, "candidatesTokenCount": 2, "thoughtsTokenCount": 5})),
    ]  # fmt: skip
    assert pieces == ["Hel", "lo", ""]
    result = assembler.result()
    assert result.text == "Hello" and result.finish_reason == "stop"
    assert (
        result.usage.input_tokens,
        result.usage.output_tokens,
        result.usage.reasoning_tokens,
    ) == (11, 7, 5)


def test_stream_without_finish_is_a_connection_error():
    assembler = gg.StreamAssembler()
    assembler.add(response([{"text": "par"}], finish=None))
    with pytest.raises(ProviderConnectionError):
        assembler.result()


# --- errors ----------------------------------------------------------------------------------


def api_error(code: int, status: str, message: str, details: list | None = None):
    body = {"error": {"code": code, "status": status, "message": message, "details": details or []}}
    cls = genai_errors.ClientError if code < 500 else genai_errors.ServerError
    return cls(code, body)


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "33s"}


def quota(quota_id: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "m", "quotaId": quota_id}]}  # fmt: skip


def test_context_length_numbers():
    exc = api_error(400, "INVALID_ARGUMENT",
                    "The input token count (1300000) exceeds the maximum number of tokens allowed (1048576).")  # fmt: skip
    error = gg.map_error(exc, model="gemini-2.5-flash")
    assert isinstance(error, ContextLengthError)
    assert (error.tokens_used, error.max_tokens, error.status) == (1300000, 1048576, 400)


def test_context_length_variant_without_the_used_count():
    exc = api_error(400, "INVALID_ARGUMENT",
                    "The input token count exceeds the maximum number of tokens allowed (1048576).")  # fmt: skip
    error = gg.map_error(exc, model="m")
    assert (error.tokens_used, error.max_tokens) == (None, 1048576)


def test_bad_api_key_400_is_authentication():
    exc = api_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                    [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}])  # fmt: skip
    assert isinstance(gg.map_error(exc, model="m"), AuthenticationError)


def test_rate_limit_per_minute_is_retryable_with_delay():
    exc = api_error(429, "RESOURCE_EXHAUSTED", "slow down",
                    [quota("GenerateRequestsPerMinutePerProjectPerModel"), RETRY_INFO])  # fmt: skip
    error = gg.map_error(exc, model="m")
    assert isinstance(error, RateLimitError)
    assert error.retry_after_s == 33.0 and not error.quota_exhausted and error.retryable


def test_rate_limit_per_day_is_quota_exhausted():
    exc = api_error(429, "RESOURCE_EXHAUSTED", "quota",
                    [quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), RETRY_INFO])  # fmt: skip
    error = gg.map_error(exc, model="m")
    assert error.quota_exhausted and not error.retryable


@pytest.mark.parametrize(
    "code, status, expected",
    [(401, "UNAUTHENTICATED", AuthenticationError), (403, "PERMISSION_DENIED", AuthenticationError),
     (404, "NOT_FOUND", ModelNotFoundError), (400, "INVALID_ARGUMENT", InvalidRequestError),
     (503, "UNAVAILABLE", ProviderOverloadedError), (500, "INTERNAL", ProviderError),
     (504, "DEADLINE_EXCEEDED", ProviderError)],
)  # fmt: skip
def test_status_table(code, status, expected):
    error = gg.map_error(api_error(code, status, "boom"), model="m")
    assert type(error) is expected and error.status == code and error.provider == "google"


def test_transport_errors():
    req = httpx2.Request("POST", "https://x.test")
    assert isinstance(
        gg.map_error(httpx2.ReadTimeout("t", request=req), model="m"), LLMTimeoutError
    )
    assert isinstance(
        gg.map_error(httpx2.ConnectError("c", request=req), model="m"), ProviderConnectionError
    )
    assert isinstance(
        gg.map_error(httpx2.RemoteProtocolError("r", request=req), model="m"),
        ProviderConnectionError,
    )


def test_mapped_errors_pickle_and_never_show_the_key():
    exc = api_error(429, "RESOURCE_EXHAUSTED", f"key {SENTINEL_KEY} over quota", [RETRY_INFO])
    error = gg.map_error(exc, model="m")
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is RateLimitError and restored.retry_after_s == 33.0
    for text in (str(error), repr(error), str(restored)):
        assert "SENTINEL" not in text


# --- explicit cache policy -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BIG_SYSTEM = Message(role=MessageRole.SYSTEM, content="policy clause " * 2500)


def cache_request(**fields) -> ProviderRequest:
    fields.setdefault("enable_caching", True)
    return request(BIG_SYSTEM, HELLO, **fields)


def test_second_sighting_creates_then_reuses_until_expiry():
    clock = Clock()
    manager = ExplicitCacheManager(clock=clock)
    req = cache_request()
    first = manager.decide(req)
    assert first is not None and not first.create and first.name is None
    second = manager.decide(req)
    assert second.create and second.ttl_s == 300 and second.prefix_tokens >= 4096
    manager.created(second, "cachedContents/one")
    assert manager.decide(req).name == "cachedContents/one"
    clock.now += 290  # inside the expiry margin: no longer used, counting restarts
    restarted = manager.decide(req)
    assert restarted.name is None and not restarted.create


def test_one_hour_ttl_and_storage_token_hours():
    manager = ExplicitCacheManager(clock=Clock())
    req = cache_request(cache_ttl="1h")
    manager.decide(req)
    decision = manager.decide(req)
    assert decision.ttl_s == 3600
    assert decision.storage_token_hours(5000) == Decimal(5000)


def test_sightings_older_than_the_ttl_do_not_count():
    clock = Clock()
    manager = ExplicitCacheManager(clock=clock)
    manager.decide(cache_request())
    clock.now += 301
    assert not manager.decide(cache_request()).create


def test_concurrent_second_sighting_does_not_create_twice():
    manager = ExplicitCacheManager(clock=Clock())
    req = cache_request()
    manager.decide(req)
    assert manager.decide(req).create
    assert not manager.decide(req).create


def test_failed_creation_waits_one_ttl_before_trying_again():
    clock = Clock()
    manager = ExplicitCacheManager(clock=clock)
    req = cache_request()
    manager.decide(req)
    manager.failed(manager.decide(req))
    assert not manager.decide(req).create
    clock.now += 301
    manager.decide(req)
    assert manager.decide(req).create


def test_small_prefix_or_caching_off_is_not_eligible():
    manager = ExplicitCacheManager(clock=Clock())
    assert manager.decide(request(SYSTEM, HELLO, enable_caching=True)) is None
    assert manager.decide(request(BIG_SYSTEM, HELLO)) is None
    assert ExplicitCacheManager(min_tokens=100).threshold(request(HELLO)) == 1024


def test_prefix_key_tracks_system_tools_and_model():
    base = prefix_key(cache_request())
    assert base == prefix_key(request(BIG_SYSTEM, Message(role=MessageRole.USER, content="other")))
    assert base != prefix_key(cache_request(tools=(TOOL,)))
    assert base != prefix_key(cache_request(model=model("gemini-2.5-pro")))


# --- the adapter with a fake SDK client ------------------------------------------------------


class FakeModels:
    def __init__(self, fail_first: Exception | None = None) -> None:
        self.calls: list[dict] = []
        self.fail_first = fail_first

    async def generate_content(self, **kwargs):
        self.calls.append(kwargs)
        if self.fail_first is not None:
            exc, self.fail_first = self.fail_first, None
            raise exc
        return response([{"text": "ok"}], usage={"promptTokenCount": 5000})


class FakeCaches:
    def __init__(self, fail: bool = False) -> None:
        self.created: list[dict] = []
        self.fail = fail

    async def create(self, **kwargs):
        self.created.append(kwargs)
        if self.fail:
            raise api_error(400, "INVALID_ARGUMENT", "too small")
        usage = SimpleNamespace(total_token_count=6000)
        return SimpleNamespace(name="cachedContents/c1", usage_metadata=usage)


def fake_adapter(models: FakeModels, caches: FakeCaches) -> gg.GoogleAdapter:
    adapter = gg.GoogleAdapter(Settings(google_api_key=SENTINEL_KEY), clock=Clock())
    adapter._client = SimpleNamespace(aio=SimpleNamespace(models=models, caches=caches))
    return adapter


async def test_adapter_creates_cache_on_second_call_and_bills_storage():
    models, caches = FakeModels(), FakeCaches()
    adapter = fake_adapter(models, caches)
    req = cache_request(tools=(TOOL,), tool_choice="auto")
    first = await adapter.generate(req)
    second = await adapter.generate(req)
    third = await adapter.generate(req)
    assert "cached_content" not in models.calls[0]["config"] and first.provider_details == {}
    created = caches.created[0]
    assert created["model"] == "gemini-2.5-flash" and created["config"]["ttl"] == "300s"
    assert created["config"]["system_instruction"] == BIG_SYSTEM.text()
    assert created["config"]["tool_config"] == {"function_calling_config": {"mode": "AUTO"}}
    for call in models.calls[1:]:
        assert call["config"]["cached_content"] == "cachedContents/c1"
        assert not {"system_instruction", "tools", "tool_config"} & call["config"].keys()
    assert second.cache_storage_token_hours == Decimal(500)  # 6000 tokens x 5 min
    assert "cache_storage_token_hours" not in second.provider_details  # a typed field now
    assert third.cache_storage_token_hours == 0
    assert third.provider_details["cached_content"] == "cachedContents/c1"
    assert len(caches.created) == 1


async def test_adapter_falls_back_silently_when_creation_fails(caplog):
    models, caches = FakeModels(), FakeCaches(fail=True)
    adapter = fake_adapter(models, caches)
    req = cache_request()
    with caplog.at_level("DEBUG", logger="llm.providers.google_cache"):
        await adapter.generate(req)
        result = await adapter.generate(req)
    assert result.text == "ok" and "cached_content" not in models.calls[1]["config"]
    assert models.calls[1]["config"]["system_instruction"] == BIG_SYSTEM.text()
    assert "explicit cache creation failed (ClientError)" in caplog.text
    assert "policy clause" not in caplog.text and "SENTINEL" not in caplog.text


async def test_adapter_resends_without_a_cache_the_provider_lost():
    models, caches = FakeModels(), FakeCaches()
    adapter = fake_adapter(models, caches)
    req = cache_request()
    await adapter.generate(req)
    await adapter.generate(req)
    models.fail_first = api_error(404, "NOT_FOUND", "CachedContent not found")
    result = await adapter.generate(req)
    assert result.text == "ok"
    assert models.calls[-1]["config"]["system_instruction"] == BIG_SYSTEM.text()


async def test_missing_key_is_a_configuration_error_and_repr_is_clean():
    adapter = gg.GoogleAdapter(Settings())
    with pytest.raises(ConfigurationError):
        await adapter.generate(request(HELLO))
    keyed = gg.GoogleAdapter(Settings(google_api_key=SENTINEL_KEY))
    assert "SENTINEL" not in repr(keyed)
    await adapter.aclose()
    await keyed.aclose()


async def test_real_client_uses_our_http_client_base_url_and_one_attempt():
    seen = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        body = {"error": {"code": 503, "status": "UNAVAILABLE", "message": "overloaded"}}
        return httpx2.Response(503, json=body)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    settings = Settings(google_api_key=SENTINEL_KEY, google_base_url="https://gemini.mock")
    adapter = gg.GoogleAdapter(settings, http_client=client)
    with pytest.raises(ProviderOverloadedError):
        await adapter.generate(request(HELLO))
    assert len(seen) == 1
    assert str(seen[0].url) == "https://gemini.mock/v1/models/gemini-2.5-flash:generateContent"
    assert seen[0].headers["x-goog-api-key"] == SENTINEL_KEY


def test_stream_of_a_blocked_prompt_is_a_content_filter():
    assembler = gg.StreamAssembler()
    chunk = response(None, promptFeedback={"blockReason": "SAFETY"}, usage={"promptTokenCount": 7})
    assert assembler.add(chunk) == ""
    result = assembler.result()
    assert result.finish_reason == "content_filter" and result.raw_finish_reason == "SAFETY"
    assert result.text == "" and result.usage.input_tokens == 7


async def test_factory_builds_both_adapters():
    factory = pytest.importorskip("llm.providers.factory")
    settings = Settings(google_api_key=SENTINEL_KEY, openai_api_key=SENTINEL_KEY)
    google = factory.create_adapter("google", settings)
    openai_adapter = factory.create_adapter("openai", settings)
    assert type(google) is gg.GoogleAdapter
    assert type(openai_adapter).__name__ == "OpenAIAdapter"
    await google.aclose()
    await openai_adapter.aclose()
