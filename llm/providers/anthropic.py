"""The Anthropic adapter: :class:`AnthropicAdapter` over ``anthropic.AsyncAnthropic`` (Messages API).

The pure functions :func:`build_request`, :func:`parse_response` and :func:`map_error` do
all the translating; the adapter only owns the SDK client and moves bytes.

Decisions worth knowing:

* **Temperature is dropped.** The API version the 2.x SDK sends (``2026-10-21``) rejects
  ``temperature``/``top_p``/``top_k`` with a 400, and SDK >= 1.0 removed them from
  ``messages.create``. A request with a temperature is sent without it and a one-time
  :func:`warnings.warn` says so.
* **Thinking budgets.** ``reasoning_effort`` maps to ``thinking.budget_tokens`` through
  :data:`THINKING_BUDGETS` (minimal 1024, low 2048, medium 8192, high 16384). The API wants
  ``1024 <= budget < max_tokens``, so when ``max_tokens`` is not above the budget it is raised
  to ``budget + max_tokens``: the caller's ``max_tokens`` stays available for the answer.
  Thinking is left off with a forced tool choice (the API forbids the pair) and while tool
  results are sent back (the API would want that turn's signed thinking blocks echoed, and
  :class:`~llm.types.Message` does not carry them).
* **Prompt caching.** With ``enable_caching``, ``cache_control`` (ephemeral, ``cache_ttl``)
  goes on the last tool, the last system block and, in a conversation (an assistant turn
  exists), on the last block of the latest user turn, but only where the prefix up to that
  point (counted with :mod:`llm.tokens`) reaches the model's ``min_cacheable_tokens``.
* **Usage.** Anthropic's ``input_tokens`` excludes cache reads and writes; we add them back.
  Thinking tokens come from ``usage.output_tokens_details.thinking_tokens`` when the API
  reports it; older responses do not, and then they are estimated from the thinking text
  with :func:`llm.tokens.count_text_tokens` (capped at ``output_tokens``).
  ``redacted_thinking`` blocks carry no readable text (their ``data`` is encrypted) but
  are billed as output: each answer with such blocks adds the output tokens that its
  visible parts (text, tool-call arguments, readable thinking, counted the same way) do not
  account for, at least one token per redacted block; the total stays capped at
  ``output_tokens``. It is an estimate, as exact as the local token counter.
* **Request ids.** From the ``request-id`` header; an error answer without that header
  (proxies, gateways) still names its id in the body's ``request_id``, which is used then.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx2

from llm.config import key_hint
from llm.exceptions import (
    AuthenticationError,
    ConfigurationError,
    ContextLengthError,
    InvalidRequestError,
    LLMError,
    LLMTimeoutError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    RateLimitError,
)
from llm.providers.base import (
    ProviderAdapter,
    ProviderRequest,
    ProviderResult,
    RateLimitSnapshot,
    StreamItem,
)
from llm.providers.common import (
    field_of,
    int_header,
    message_tokens,
    parse_json_arguments,
    prefix_tokens_through_system,
    redact_secret,
    seconds_until,
    split_system,
    standard_base64,
    tool_tokens,
    validate_image,
)
from llm.retry import parse_retry_after
from llm.tokens import REQUEST_OVERHEAD, count_text_tokens, count_tool_call_tokens
from llm.types import (
    FinishReason,
    ImageContent,
    Message,
    MessageRole,
    TextContent,
    ToolCall,
    ToolResultContent,
    Usage,
)

# The SDK warns on its own about deprecated model ids; the service already warns once per
# model with the registry's retirement date and replacement, so the SDK's copy is muted.
warnings.filterwarnings(
    "ignore", message=r"The model '.*' is deprecated", category=DeprecationWarning
)

PROVIDER = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
#: Used when a request names no timeout; an explicit value also turns off the SDK's
#: refusal of long non-streaming requests.
DEFAULT_TIMEOUT_S = 600.0
#: reasoning_effort -> thinking.budget_tokens (the API's minimum budget is 1024).
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
MAX_CACHE_BREAKPOINTS = 4

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}

_temperature_warned = False


# --------------------------------------------------------------------------- requests


def _warn_temperature_dropped() -> None:
    global _temperature_warned
    if _temperature_warned:
        return
    _temperature_warned = True
    warnings.warn(
        "temperature is not sent to Anthropic: API version 2026-10-21 (the anthropic 2.x "
        "SDK default) rejects sampling parameters",
        UserWarning,
        stacklevel=3,
    )


def _image_block(image: ImageContent) -> dict[str, Any]:
    validate_image(image)
    source = {"type": "base64", "media_type": image.media_type, "data": standard_base64(image)}
    return {"type": "image", "source": source}


def _tool_result_block(call_id: str, content: str, is_error: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block


def _part_block(part: TextContent | ImageContent | ToolResultContent) -> dict[str, Any] | None:
    if isinstance(part, TextContent):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImageContent):
        return _image_block(part)
    return _tool_result_block(part.tool_call_id, part.content, part.is_error)


def _message_blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == MessageRole.TOOL and message.tool_call_id:
        return [_tool_result_block(message.tool_call_id, message.text())]
    blocks = [block for part in message.parts() if (block := _part_block(part)) is not None]
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return blocks


def _wire_role(message: Message) -> str:
    return "assistant" if message.role == MessageRole.ASSISTANT else "user"


def build_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Non-system messages as API turns; consecutive same-role turns are merged into one."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        blocks = _message_blocks(message)
        if not blocks:
            continue
        role = _wire_role(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _tool_choice(choice: str | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _in_tool_loop(messages: Iterable[Message]) -> bool:
    """Whether the latest assistant turn called tools (its results are being sent back)."""
    assistants = [msg for msg in messages if msg.role == MessageRole.ASSISTANT]
    return bool(assistants and assistants[-1].tool_calls)


def _thinking(req: ProviderRequest, tool_choice: dict[str, Any] | None) -> dict[str, Any] | None:
    if req.reasoning_effort is None or not req.model.capabilities.reasoning:
        return None
    if tool_choice is not None and tool_choice["type"] in ("any", "tool"):
        return None  # the API allows only auto/none tool choice with thinking
    if _in_tool_loop(req.messages):
        return None  # the API would want the signed thinking blocks of that turn echoed back
    return {"type": "enabled", "budget_tokens": THINKING_BUDGETS[req.reasoning_effort]}


def _cache_control(req: ProviderRequest) -> dict[str, Any]:
    return {"type": "ephemeral", "ttl": req.cache_ttl}


def _reaches_minimum(req: ProviderRequest, prefix_tokens: int) -> bool:
    """Whether a prefix (plus the request overhead that opens every prompt) can be cached."""
    minimum = req.model.capabilities.min_cacheable_tokens
    return minimum is None or REQUEST_OVERHEAD + prefix_tokens >= minimum


def _latest_user_turn_prefix(req: ProviderRequest, conversation: list[Message]) -> int | None:
    """Tokens through the latest user turn, or None when there is no user turn."""
    last_user = max(
        (i for i, msg in enumerate(conversation) if msg.role != MessageRole.ASSISTANT),
        default=None,
    )
    if last_user is None:
        return None
    body = sum(message_tokens(msg) for msg in conversation[: last_user + 1])
    return prefix_tokens_through_system(req) + body


def _place_cache_breakpoints(req: ProviderRequest, kwargs: dict[str, Any]) -> None:
    """Put ``cache_control`` on up to four blocks whose prefix reaches the model's minimum."""
    marks: list[dict[str, Any]] = []
    tools = kwargs.get("tools") or []
    if tools and _reaches_minimum(req, tool_tokens(req)):
        marks.append(tools[-1])
    system = kwargs.get("system") or []
    if system and _reaches_minimum(req, prefix_tokens_through_system(req)):
        marks.append(system[-1])
    _, conversation = split_system(req.messages)
    if any(msg.role == MessageRole.ASSISTANT for msg in conversation):
        prefix = _latest_user_turn_prefix(req, conversation)
        user_turns = [turn for turn in kwargs["messages"] if turn["role"] == "user"]
        if prefix is not None and user_turns and _reaches_minimum(req, prefix):
            marks.append(user_turns[-1]["content"][-1])
    for block in marks[:MAX_CACHE_BREAKPOINTS]:
        block["cache_control"] = _cache_control(req)


def _max_tokens_and_thinking(req: ProviderRequest, thinking: dict[str, Any] | None) -> int:
    if thinking is None or req.max_tokens > thinking["budget_tokens"]:
        return req.max_tokens
    return thinking["budget_tokens"] + req.max_tokens


def _request_thinking(req: ProviderRequest) -> dict[str, Any] | None:
    """The ``thinking`` block of ``req`` (None: no thinking), given the tool choice sent."""
    tool_choice = _tool_choice(req.tool_choice) if req.tools else None
    return _thinking(req, tool_choice)


def output_token_limit(req: ProviderRequest) -> int:
    """The ``max_tokens`` :func:`build_request` sends: the most output (thinking included) the
    answer can be billed for."""
    return _max_tokens_and_thinking(req, _request_thinking(req))


def build_request(req: ProviderRequest) -> dict[str, Any]:
    """The keyword arguments for ``client.messages.create`` (without ``stream``/``timeout``)."""
    system, conversation = split_system(req.messages)
    kwargs: dict[str, Any] = {"model": req.model.api_id, "messages": build_messages(conversation)}
    if system:
        kwargs["system"] = [{"type": "text", "text": system}]
    if req.tools:
        kwargs["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in req.tools
        ]
        tool_choice = _tool_choice(req.tool_choice)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
    thinking = _request_thinking(req)
    if thinking is not None:
        kwargs["thinking"] = thinking
    kwargs["max_tokens"] = _max_tokens_and_thinking(req, thinking)
    if req.structured_output_schema is not None:
        schema_format = {"type": "json_schema", "schema": req.structured_output_schema}
        kwargs["output_config"] = {"format": schema_format}
    if req.temperature is not None:
        _warn_temperature_dropped()
    if req.enable_caching:
        _place_cache_breakpoints(req, kwargs)
    return kwargs


def build_count_request(req: ProviderRequest) -> dict[str, Any]:
    """The keyword arguments for ``client.messages.count_tokens``."""
    kwargs = build_request(req)
    for name in ("max_tokens", "metadata", "stop_sequences"):
        kwargs.pop(name, None)
    return kwargs


# --------------------------------------------------------------------------- responses


def estimate_reasoning(
    output: int, thinking_text: str | None, *, redacted_blocks: int = 0, visible_tokens: int = 0
) -> int:
    """Reasoning tokens when the API does not report them (see the module docstring)."""
    readable = count_text_tokens(thinking_text) if thinking_text else 0
    estimate = readable
    if redacted_blocks:
        unaccounted = output - readable - visible_tokens
        estimate += max(unaccounted, redacted_blocks)
    return min(output, estimate)


def convert_usage(
    usage: Any,
    thinking_text: str | None = None,
    *,
    redacted_blocks: int = 0,
    visible_tokens: int = 0,
) -> Usage:
    """Anthropic usage (SDK object or dict) in our convention (see :mod:`llm.types`).

    ``redacted_blocks`` and ``visible_tokens`` (tokens of the answer's text and tool-call
    arguments) feed the reasoning estimate when the API reports no thinking tokens.
    """
    uncached = field_of(usage, "input_tokens") or 0
    cache_write = field_of(usage, "cache_creation_input_tokens") or 0
    cache_read = field_of(usage, "cache_read_input_tokens") or 0
    output = field_of(usage, "output_tokens") or 0
    write_1h = field_of(field_of(usage, "cache_creation"), "ephemeral_1h_input_tokens") or 0
    reported = field_of(field_of(usage, "output_tokens_details"), "thinking_tokens")
    if reported is not None:
        reasoning = reported
    else:
        reasoning = estimate_reasoning(
            output, thinking_text, redacted_blocks=redacted_blocks, visible_tokens=visible_tokens
        )
    return Usage(
        input_tokens=uncached + cache_write + cache_read,
        output_tokens=output,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        reasoning_tokens=reasoning,
    )


def parse_rate_limits(
    headers: Mapping[str, str] | None, *, now: datetime | None = None
) -> RateLimitSnapshot | None:
    """The ``anthropic-ratelimit-*`` headers as a snapshot (resets in seconds from ``now``)."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    if not any(key.startswith("anthropic-ratelimit-") for key in lowered):
        return None
    moment = now or datetime.now(UTC)
    fields: dict[str, Any] = {}
    for ours, theirs in (
        ("requests", "requests"),
        ("input_tokens", "input-tokens"),
        ("output_tokens", "output-tokens"),
    ):
        prefix = f"anthropic-ratelimit-{theirs}-"
        fields[f"{ours}_limit"] = int_header(lowered, prefix + "limit")
        fields[f"{ours}_remaining"] = int_header(lowered, prefix + "remaining")
        fields[f"{ours}_reset_s"] = seconds_until(lowered.get(prefix + "reset"), moment)
    return RateLimitSnapshot(**fields)


def _finish(stop_reason: str | None) -> FinishReason:
    if stop_reason is None:
        return "stop"
    return FINISH_REASONS.get(stop_reason, "other")


def _request_id(headers: Mapping[str, str] | None) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == "request-id":
            return value
    return None


class _Answer:
    """The parts of one answer, gathered from a ``Message`` or from stream events."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.thinking: list[str] = []
        #: ``redacted_thinking`` blocks seen (encrypted; counted for the reasoning estimate)
        self.redacted = 0
        #: content index -> {"id", "name", and "input" (a dict) or "json" (fragments)}
        self.tools: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.model: str | None = None
        self.message_id: str | None = None
        self.request_id: str | None = None

    def _merge_usage(self, usage: Any) -> None:
        data = usage.model_dump(exclude_none=True) if hasattr(usage, "model_dump") else dict(usage)
        self.usage.update(data)

    def _tool_calls(self) -> tuple[ToolCall, ...]:
        calls = []
        for _, tool in sorted(self.tools.items()):
            raw = tool["input"] if "input" in tool else "".join(tool["json"])
            calls.append(
                ToolCall(id=tool["id"], name=tool["name"], arguments=parse_json_arguments(raw))
            )
        return tuple(calls)

    def result(self, headers: Mapping[str, str] | None, now: datetime | None) -> ProviderResult:
        thinking_text = "".join(self.thinking) or None
        text = "".join(self.texts)
        calls = self._tool_calls()
        visible = 0
        if self.redacted:
            visible = count_text_tokens(text) + sum(
                count_tool_call_tokens(call.name, call.arguments) for call in calls
            )
        usage = convert_usage(
            self.usage, thinking_text, redacted_blocks=self.redacted, visible_tokens=visible
        )
        return ProviderResult(
            text=text,
            tool_calls=calls,
            usage=usage,
            finish_reason=_finish(self.stop_reason),
            raw_finish_reason=self.stop_reason,
            reasoning_text=thinking_text,
            request_id=_request_id(headers) or self.request_id,
            model_version=self.model,
            rate_limit=parse_rate_limits(headers, now=now),
            provider_details={"message_id": self.message_id, "stop_sequence": self.stop_sequence},
        )


def parse_response(
    message: Any, headers: Mapping[str, str] | None = None, *, now: datetime | None = None
) -> ProviderResult:
    """A ``Message`` from ``messages.create`` (plus the response headers) as a result."""
    answer = _Answer()
    for index, block in enumerate(message.content):
        if block.type == "text":
            answer.texts.append(block.text)
        elif block.type == "thinking":
            answer.thinking.append(block.thinking)
        elif block.type == "redacted_thinking":
            answer.redacted += 1
        elif block.type == "tool_use":
            answer.tools[index] = {"id": block.id, "name": block.name, "input": block.input}
    answer._merge_usage(message.usage)
    answer.stop_reason, answer.stop_sequence = message.stop_reason, message.stop_sequence
    answer.model, answer.message_id = message.model, message.id
    answer.request_id = getattr(message, "_request_id", None)
    return answer.result(headers, now)


# --------------------------------------------------------------------------- errors

_PROMPT_TOO_LONG = re.compile(r"prompt is too long:\s*(\d+)\s*tokens\s*>\s*(\d+)")
_INPUT_PLUS_MAX = re.compile(r"exceed context limit:\s*(\d+)\s*\+\s*(\d+)\s*>\s*(\d+)")


def _context_numbers(message: str) -> tuple[int, int] | None:
    if match := _PROMPT_TOO_LONG.search(message):
        return int(match.group(1)), int(match.group(2))
    if match := _INPUT_PLUS_MAX.search(message):
        used = int(match.group(1)) + int(match.group(2))
        return used, int(match.group(3))
    return None


def _suggestions(model: str) -> list[str]:
    try:
        from llm.registry import resolve_model
    except ImportError:
        return []
    try:
        resolve_model(model)
    except ModelNotFoundError as exc:
        return list(exc.suggestions)
    except Exception:  # the registry is advisory here; never mask the real error
        return []
    return []


def _is_quota(exc: anthropic.APIStatusError, message: str) -> bool:
    code = getattr(exc, "error_code", None)
    if code in ("enforced_spend_limit_reached", "contract_spend_limit_reached"):
        return True
    return "spend limit" in message.lower()


def _body_request_id(exc: anthropic.APIStatusError) -> str | None:
    """The ``request_id`` an error body carries (used when the header is missing)."""
    body = getattr(exc, "body", None)
    value = body.get("request_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def _status_error(exc: anthropic.APIStatusError, model: str) -> LLMError:
    status = exc.status_code
    message = getattr(exc, "api_message", None) or f"HTTP {status} from Anthropic"
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "model": model,
        "status": status,
        "request_id": exc.request_id or _body_request_id(exc),
    }
    error_type = getattr(exc, "type", None)
    if status == 529 or error_type == "overloaded_error":
        retry = parse_retry_after(exc.response.headers)
        return ProviderOverloadedError(message, retry_after_s=retry, **common)
    if status in (401, 403) or error_type in ("authentication_error", "permission_error"):
        return AuthenticationError(message, **common)
    if status == 404:
        return ModelNotFoundError(message, suggestions=_suggestions(model), **common)
    if status == 429 or error_type == "rate_limit_error":
        retry = parse_retry_after(exc.response.headers)
        quota = _is_quota(exc, message)
        return RateLimitError(message, retry_after_s=retry, quota_exhausted=quota, **common)
    if status == 400 and (numbers := _context_numbers(message)):
        return ContextLengthError(message, tokens_used=numbers[0], max_tokens=numbers[1], **common)
    if status == 408:
        return LLMTimeoutError(message, **common)
    if 400 <= status < 500 and status != 409:
        return InvalidRequestError(message, **common)
    return ProviderError(message, **common)


def map_error(exc: BaseException, *, model: str) -> LLMError:
    """One SDK or transport exception as an :mod:`llm.exceptions` error (status first)."""
    if isinstance(exc, LLMError):
        return exc
    common: dict[str, Any] = {"provider": PROVIDER, "model": model}
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, model)
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return LLMTimeoutError("request to Anthropic timed out", **common)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return ProviderConnectionError(
            f"connection to Anthropic failed ({type(exc).__name__})", **common
        )
    return ProviderError(f"unexpected Anthropic failure ({type(exc).__name__})", **common)


# --------------------------------------------------------------------------- streaming


class _StreamState(_Answer):
    """An answer assembled from raw stream events."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = False

    def on_event(self, event: Any) -> str | None:
        """Apply one event; return new answer text, if it carried some."""
        kind = event.type
        if kind == "message_start":
            self.model, self.message_id = event.message.model, event.message.id
            self._merge_usage(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.tools[event.index] = {"id": block.id, "name": block.name, "json": []}
            elif block.type == "redacted_thinking":
                self.redacted += 1
        elif kind == "content_block_delta":
            return self._on_delta(event.index, event.delta)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason
            self.stop_sequence = event.delta.stop_sequence
            self._merge_usage(event.usage)
        elif kind == "message_stop":
            self.finished = True
        return None

    def _on_delta(self, index: int, delta: Any) -> str | None:
        if delta.type == "text_delta":
            self.texts.append(delta.text)
            return delta.text
        if delta.type == "thinking_delta":
            self.thinking.append(delta.thinking)
        elif delta.type == "input_json_delta" and index in self.tools:
            self.tools[index]["json"].append(delta.partial_json)
        return None


# --------------------------------------------------------------------------- adapter


class AnthropicAdapter(ProviderAdapter):
    """Anthropic Messages API through ``anthropic.AsyncAnthropic`` (created on first use)."""

    provider = PROVIDER

    _sdk_client: anthropic.AsyncAnthropic | None = None

    def _client(self) -> anthropic.AsyncAnthropic:
        if self._sdk_client is None:
            key = self.settings.api_key(PROVIDER)
            if not key:
                raise ConfigurationError(f"{key_hint(PROVIDER)} is not set", provider=PROVIDER)
            self._sdk_client = anthropic.AsyncAnthropic(
                api_key=key,
                base_url=self.settings.base_url(PROVIDER) or DEFAULT_BASE_URL,
                max_retries=0,
                http_client=self.http_client,
            )
        return self._sdk_client

    def _mapped(self, exc: BaseException, req: ProviderRequest) -> LLMError:
        return redact_secret(map_error(exc, model=req.model.name), self.settings.api_key(PROVIDER))

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        kwargs = build_request(request)
        client = self._client()
        try:
            raw = await client.messages.with_raw_response.create(
                **kwargs, timeout=request.timeout or DEFAULT_TIMEOUT_S
            )
            message = await raw.parse()
        except Exception as exc:
            raise self._mapped(exc, request) from None
        return parse_response(message, raw.headers)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamItem]:
        kwargs = build_request(request)
        client = self._client()
        state = _StreamState()
        try:
            events = await client.messages.create(
                **kwargs, stream=True, timeout=request.timeout or DEFAULT_TIMEOUT_S
            )
            async with events:
                async for event in events:
                    chunk = state.on_event(event)
                    if chunk:
                        yield chunk
        except Exception as exc:
            raise self._mapped(exc, request) from None
        if not state.finished:
            raise ProviderConnectionError(
                "Anthropic stream ended before message_stop",
                provider=PROVIDER,
                model=request.model.name,
            )
        yield state.result(events.response.headers, None)

    async def count_tokens(self, request: ProviderRequest) -> int:
        kwargs = build_count_request(request)
        client = self._client()
        try:
            counted = await client.messages.count_tokens(
                **kwargs, timeout=request.timeout or DEFAULT_TIMEOUT_S
            )
        except Exception as exc:
            raise self._mapped(exc, request) from None
        return counted.input_tokens
