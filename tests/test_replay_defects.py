"""The five defects that replaying real provider traffic found, each pinned by a test that
failed before its fix (the recorded exchanges themselves are replayed in
``tests/test_replay.py``; these tests need no corpus, so they also run in a user's clone).

1. Gemini thinking spent ``maxOutputTokens`` and left the answer empty.
2. An OpenAI-compatible stream ending with its usage chunk and ``[DONE]`` but no
   ``finish_reason`` was discarded and bought again.
3. OpenAI's 429 "Request too large" was retried and penalised the account's limiter.
4. Anthropic ``redacted_thinking`` blocks were not counted into ``reasoning_tokens``.
5. Anthropic errors without a ``request-id`` header lost the body's ``request_id``.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from typing import Any

import httpx2
import pytest

from llm.config import Settings
from llm.exceptions import (
    InvalidRequestError,
    ProviderConnectionError,
    RateLimitError,
    RequestTooLargeError,
)
from llm.executor import CallContext, Executed
from llm.providers import google as gg
from llm.providers.anthropic import AnthropicAdapter
from llm.providers.base import ProviderRequest
from llm.providers.openai import OpenAIAdapter
from llm.registry import resolve_model
from llm.retry import RetryConfig, RetryPolicy
from llm.tokens import count_text_tokens
from llm.types import Message, MessageRole
from runtime.engine import ProviderEngine
from runtime.limiter import AccountLimits
from tests.conftest import SENTINEL_KEY

HELLO = (Message(role=MessageRole.USER, content="hello"),)
SETTINGS = Settings(
    anthropic_api_key=SENTINEL_KEY,
    openai_api_key=SENTINEL_KEY,
    anthropic_base_url="http://anthropic.test",
    openai_base_url="http://openai.test/v1",
    stream_slow_start=False,  # the recorded answers answer plain calls
)
NO_RETRY_WAIT = RetryConfig(max_retries=3, initial_delay=0.0, max_delay=0.0, jitter=False)


class Served:
    """A MockTransport handler answering every request the same way, counting calls."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers
        self.calls = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        return httpx2.Response(self.status, headers=self.headers, content=self.body)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))


async def _no_sleep(_seconds: float) -> None:
    return None


def _engine(provider: str, adapter: Any, limits: AccountLimits | None = None) -> ProviderEngine:
    return ProviderEngine(
        provider,
        SETTINGS,
        limits=limits,
        retry_config=NO_RETRY_WAIT,
        adapter=adapter,
        sleep=_no_sleep,
        rand=lambda: 0.0,
    )


def _request(model: str, **fields: Any) -> ProviderRequest:
    fields.setdefault("max_tokens", 4096)
    return ProviderRequest(model=resolve_model(model), messages=HELLO, **fields)


# --- 1. Gemini thinking vs maxOutputTokens -----------------------------------------------------


def test_gemini_25_budget_leaves_max_tokens_for_the_answer():
    """gemini-2.5-pro, effort high, max_tokens 4096 used to send budget 24576 within
    maxOutputTokens 4096: the thoughts could take all of it."""
    config = gg.build_request(_request("gemini-2.5-pro", reasoning_effort="high"))["config"]
    budget = config["thinking_config"]["thinking_budget"]
    assert budget == gg.THINKING_BUDGETS["high"]
    assert config["max_output_tokens"] == 4096 + budget


def test_gemini_25_budget_shrinks_when_the_output_limit_bites():
    req = _request("gemini-2.5-pro", reasoning_effort="high", max_tokens=60_000)
    config = gg.build_request(req)["config"]
    limit = req.model.max_output_tokens
    assert config["max_output_tokens"] == limit
    assert config["thinking_config"]["thinking_budget"] == limit - 60_000


@pytest.mark.parametrize("effort", ["low", "high"])
def test_gemini_3_level_gets_a_thinking_allowance(effort):
    req = _request("gemini-3.1-pro-preview", reasoning_effort=effort)
    config = gg.build_request(req)["config"]
    assert config["thinking_config"] == {
        "thinking_level": effort.upper(),
        "include_thoughts": False,
    }
    assert config["max_output_tokens"] == 4096 + gg.THINKING_BUDGETS[effort]


def test_gemini_default_thinking_models_get_an_allowance_without_effort():
    """3.x, 2.5 Pro and Flash think without being asked; Flash-Lite keeps max_tokens."""
    for name in ("gemini-3.1-pro-preview", "gemini-2.5-pro", "gemini-2.5-flash"):
        config = gg.build_request(_request(name))["config"]
        assert "thinking_config" not in config
        assert config["max_output_tokens"] == 4096 + gg.THINKING_BUDGETS["high"]
    assert (
        gg.build_request(_request("gemini-2.5-flash-lite"))["config"]["max_output_tokens"] == 4096
    )


# --- 2. OpenAI stream with usage and [DONE] but no finish_reason -------------------------------


def _sse(*chunks: dict[str, Any]) -> bytes:
    lines = [b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks]
    return b"".join(lines) + b"data: [DONE]\n\n"


def _chunk(delta: dict[str, Any] | None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    choices = [{"index": 0, "delta": delta, "finish_reason": None}] if delta is not None else []
    return {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "compat-model",
        "choices": choices,
        "usage": usage,
    }


NO_FINISH_STREAM = _sse(
    _chunk({"role": "assistant", "content": "Hello"}),
    _chunk({"content": " there"}),
    _chunk({"content": ""}, {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}),
)


async def _run_stream(engine: ProviderEngine, req: ProviderRequest) -> tuple[str, Executed]:
    text, final = "", None
    async for item in engine.execute_stream(req, CallContext(request_id="r1")):
        if isinstance(item, Executed):
            final = item
        else:
            text += item
    assert final is not None
    return text, final


def test_openai_stream_without_finish_reason_is_complete_and_bought_once():
    served = Served(200, NO_FINISH_STREAM, {"content-type": "text/event-stream"})
    adapter = OpenAIAdapter(SETTINGS, http_client=served.client())
    engine = _engine("openai", adapter)
    text, final = asyncio.run(_run_stream(engine, _request("gpt-4.1")))
    assert served.calls == 1
    assert text == final.result.text == "Hello there"
    assert final.result.finish_reason == "stop" and final.result.raw_finish_reason is None
    assert (final.result.usage.input_tokens, final.result.usage.output_tokens) == (9, 2)


def test_openai_stream_cut_before_usage_and_finish_is_still_an_error():
    body = b"data: " + json.dumps(_chunk({"content": "Hel"})).encode() + b"\n\n"
    served = Served(200, body, {"content-type": "text/event-stream"})
    adapter = OpenAIAdapter(SETTINGS, http_client=served.client())

    async def run() -> None:
        async for _ in adapter.stream(_request("gpt-4.1")):
            pass

    with pytest.raises(ProviderConnectionError):
        asyncio.run(run())


# --- 3. OpenAI 429 "Request too large" ---------------------------------------------------------

TOO_LARGE = {
    "error": {
        "message": "Request too large for gpt-4.1 in organization org-abc on tokens per min "
        "(TPM): Limit 30000, Requested 50213. The input or output tokens must be reduced in "
        "order to run successfully. Visit https://platform.openai.com/account/rate-limits to "
        "learn more.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


def test_openai_request_too_large_is_not_retried_and_not_a_limiter_penalty():
    served = Served(
        429,
        json.dumps(TOO_LARGE).encode(),
        {"content-type": "application/json", "x-request-id": "req_big"},
    )
    adapter = OpenAIAdapter(SETTINGS, http_client=served.client())
    engine = _engine("openai", adapter, AccountLimits(rpm=1000, tpm=10_000_000))
    penalties: list[float] = []
    engine.limiter.penalize = lambda delay, **_: penalties.append(delay)  # type: ignore[method-assign, union-attr]
    with pytest.raises(RequestTooLargeError) as caught:
        asyncio.run(engine.execute(_request("gpt-4.1"), CallContext(request_id="r1")))
    error = caught.value
    assert served.calls == 1
    assert penalties == []
    assert isinstance(error, InvalidRequestError) and not isinstance(error, RateLimitError)
    assert (error.status, error.request_id) == (429, "req_big")
    assert (error.limit_tokens, error.requested_tokens) == (30000, 50213)
    assert not RetryPolicy().is_retryable(error)
    assert SENTINEL_KEY not in str(error)
    copy = pickle.loads(pickle.dumps(error))  # crosses Ray process boundaries intact
    assert (type(copy), copy.limit_tokens, copy.request_id) == (type(error), 30000, "req_big")


def test_openai_request_too_large_without_numbers_is_still_recognised():
    body = {"error": {"message": "Request too large for gpt-4.1.", "code": "rate_limit_exceeded"}}
    served = Served(429, json.dumps(body).encode(), {"content-type": "application/json"})
    adapter = OpenAIAdapter(SETTINGS, http_client=served.client())
    with pytest.raises(RequestTooLargeError) as caught:
        asyncio.run(adapter.generate(_request("gpt-4.1")))
    assert (caught.value.limit_tokens, caught.value.requested_tokens) == (None, None)


def test_openai_ordinary_429_is_still_retried_and_penalised():
    body = {"error": {"message": "Rate limit reached for requests", "code": "rate_limit_exceeded"}}
    served = Served(429, json.dumps(body).encode(), {"content-type": "application/json"})
    adapter = OpenAIAdapter(SETTINGS, http_client=served.client())
    engine = _engine("openai", adapter, AccountLimits(rpm=1000, tpm=10_000_000))
    penalties: list[float] = []
    engine.limiter.penalize = lambda delay, **_: penalties.append(delay)  # type: ignore[method-assign, union-attr]
    with pytest.raises(RateLimitError):
        asyncio.run(engine.execute(_request("gpt-4.1"), CallContext(request_id="r1")))
    assert served.calls == 4 and len(penalties) == 4


# --- 4. Anthropic redacted_thinking ------------------------------------------------------------

REDACTED = {"type": "redacted_thinking", "data": "EqkECkYIBxgCKkA8AZ4noDfV5VcOJe"}


def _message(content: list[dict[str, Any]], output_tokens: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 92, "output_tokens": output_tokens},
    }


def test_anthropic_redacted_thinking_counts_as_reasoning():
    text = "The answer is 42."
    body = _message([REDACTED, {"type": "text", "text": text}], output_tokens=180)
    served = Served(200, json.dumps(body).encode(), {"content-type": "application/json"})
    adapter = AnthropicAdapter(SETTINGS, http_client=served.client())
    result = asyncio.run(adapter.generate(_request("claude-sonnet-4.5", reasoning_effort="low")))
    assert result.text == text
    # every output token the visible text does not account for was (redacted) thinking
    assert result.usage.reasoning_tokens == 180 - count_text_tokens(text) > 0


def test_anthropic_redacted_thinking_counts_in_a_stream_too():
    events = [
        ("message_start", {"type": "message_start", "message": {**_message([], 1), "stop_reason": None}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": REDACTED}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 60}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    body = b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    )
    served = Served(200, body, {"content-type": "text/event-stream"})
    adapter = AnthropicAdapter(SETTINGS, http_client=served.client())

    async def run() -> Any:
        return [item async for item in adapter.stream(_request("claude-sonnet-4.5"))][-1]

    result = asyncio.run(run())
    assert result.usage.reasoning_tokens == 60 - count_text_tokens("Hi")


def test_anthropic_redacted_thinking_estimate_is_capped_and_at_least_one_per_block():
    text = "word " * 50
    body = _message([REDACTED, REDACTED, {"type": "text", "text": text}], output_tokens=20)
    served = Served(200, json.dumps(body).encode(), {"content-type": "application/json"})
    adapter = AnthropicAdapter(SETTINGS, http_client=served.client())
    result = asyncio.run(adapter.generate(_request("claude-sonnet-4.5")))
    assert result.usage.reasoning_tokens == 2  # the visible text over-counts: floor per block


# --- 5. Anthropic error request id from the body ----------------------------------------------


def test_anthropic_error_without_header_takes_the_request_id_from_the_body():
    body = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad effort"},
        "request_id": "req_011Ca7jT9AHpgXgdv8igm4z9",
    }
    served = Served(400, json.dumps(body).encode(), {"content-type": "application/json"})
    adapter = AnthropicAdapter(SETTINGS, http_client=served.client())
    with pytest.raises(InvalidRequestError) as caught:
        asyncio.run(adapter.generate(_request("claude-sonnet-4.5")))
    assert caught.value.request_id == "req_011Ca7jT9AHpgXgdv8igm4z9"


def test_anthropic_error_header_request_id_wins():
    body = {"type": "error", "error": {"type": "api_error", "message": "x"}, "request_id": "req_b"}
    served = Served(
        500, json.dumps(body).encode(), {"content-type": "application/json", "request-id": "req_h"}
    )
    adapter = AnthropicAdapter(SETTINGS, http_client=served.client())
    with pytest.raises(Exception) as caught:
        asyncio.run(adapter.generate(_request("claude-sonnet-4.5")))
    assert caught.value.request_id == "req_h"
