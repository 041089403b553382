"""The OpenAI adapter: ``ProviderRequest`` → Chat Completions → ``ProviderResult``.

Owns the ``openai.AsyncOpenAI`` client (created lazily on the first call, with the adapter's
``httpx2.AsyncClient`` and ``max_retries=0``), the request mapping, the response and stream
mapping, the ``x-ratelimit-*`` header reading and the error mapping into
:mod:`llm.exceptions`.

**Why Chat Completions and not Responses.** Chat Completions is the wire format every
OpenAI-compatible server speaks (vLLM, llama.cpp, Ollama, LiteLLM proxies, Azure, our
emulator), so pointing ``OPENAI_BASE_URL`` at any such server just works. It carries
everything this layer needs: tools, forced tool choice, strict JSON-schema output,
``reasoning_effort``, images as data URLs, and usage (cached and reasoning tokens) at the end
of a stream with ``stream_options.include_usage``. The trade-off: the Responses API can keep
the model's encrypted reasoning between turns (``store``/``include=["reasoning.encrypted_content"]``)
so multi-turn tool loops on reasoning models re-think less; Chat Completions drops the
reasoning after each turn. We accept that cost for portability; the request mapping is
isolated here, so a Responses variant could be added beside it.

Mapping notes:

* Reasoning models (``reasoning_always_on`` or ``sampling_params`` false in the registry)
  take system text as role ``developer``, get ``reasoning_effort`` and never ``temperature``.
  Other models take role ``system`` and ``temperature`` if set. Both get
  ``max_completion_tokens`` (``max_tokens`` is deprecated and rejected by o-series models);
  on a reasoning model it is ``max_tokens`` plus a reasoning allowance by effort
  (:func:`max_completion_tokens`), since reasoning counts against it.
* Strict mode (tools and ``response_format``) is only switched on when the schema already
  obeys OpenAI's strict rules (:func:`is_strict_schema`: every object closes
  ``additionalProperties`` and requires all its properties; no ``allOf``/``not``/conditional
  keywords). Otherwise ``strict`` is false: rewriting the user's schema to fit would change
  its meaning (optional fields would become required).
* Usage: ``prompt_tokens`` (which includes cache reads) → ``input_tokens``;
  ``prompt_tokens_details.cached_tokens`` → ``cached_tokens``;
  ``prompt_tokens_details.cache_write_tokens`` (newest models only) → ``cache_write_tokens``;
  ``completion_tokens`` (which includes reasoning) → ``output_tokens``;
  ``completion_tokens_details.reasoning_tokens`` → ``reasoning_tokens``.
* Rate-limit headers: OpenAI's ``*-tokens`` budget counts prompt tokens plus the requested
  ``max_completion_tokens``; we report it in the ``input_tokens_*`` fields of
  :class:`RateLimitSnapshot` (there is no separate output budget on OpenAI).
* Token counting: Chat Completions has no count endpoint, so ``count_tokens`` returns the
  local estimate of :func:`llm.providers.common.estimate_prompt_tokens`.
* A 429 "Request too large … on tokens per min (TPM): Limit N, Requested M" is one request
  bigger than the account's per-minute budget: :class:`~llm.exceptions.RequestTooLargeError`
  (an ``InvalidRequestError``), never retried and no rate-limit penalty for the account.
* Tool calls without an ``id`` (some compatible servers) get a generated ``call_…`` id.
* Errors chain ``from None``: SDK exceptions (whose text may quote a masked key) are never
  attached to ours; key-like strings are scrubbed from provider messages.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import openai

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
    RequestTooLargeError,
)
from llm.models import ModelInfo
from llm.providers.base import (
    ProviderAdapter,
    ProviderRequest,
    ProviderResult,
    RateLimitSnapshot,
    StreamItem,
    ToolSpec,
)
from llm.providers.common import (
    estimate_prompt_tokens,
    image_data_url,
    output_limit,
    parse_json_arguments,
    scrub_message,
    validate_image,
)
from llm.retry import parse_retry_after
from llm.types import (
    FinishReason,
    ImageContent,
    Message,
    MessageRole,
    ToolCall,
    ToolResultContent,
    Usage,
)

PROVIDER = "openai"

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
}

#: Keywords OpenAI strict mode does not accept anywhere in a schema.
_STRICT_UNSUPPORTED = frozenset(
    {"allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
     "patternProperties", "unevaluatedProperties", "propertyNames"}
)  # fmt: skip
#: Keywords whose values are sub-schemas (a dict of them, a list of them, or one).
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")
_SCHEMA_SINGLE = ("items", "additionalItems", "contains")


# --- request mapping -----------------------------------------------------------------------


def is_reasoning_model(model: ModelInfo) -> bool:
    """True for o-series/GPT-5 style models: developer role, reasoning_effort, no sampling."""
    caps = model.capabilities
    return caps.reasoning_always_on or not caps.sampling_params


def is_strict_schema(schema: Any) -> bool:
    """Whether ``schema`` already satisfies OpenAI strict mode (see the module docstring)."""
    if not isinstance(schema, dict):
        return isinstance(schema, bool)
    if _STRICT_UNSUPPORTED & schema.keys():
        return False
    if _is_object_schema(schema):
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(is_strict_schema(sub) for sub in _sub_schemas(schema))


def _strict_root(schema: dict[str, Any]) -> bool:
    """Strict mode also needs an object at the root (tool parameters, response formats)."""
    return _is_object_schema(schema) and is_strict_schema(schema)


def _is_object_schema(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        return True
    return kind is None and "properties" in schema


def _sub_schemas(schema: dict[str, Any]) -> list[Any]:
    subs: list[Any] = []
    for key in _SCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, dict):
            subs.extend(value.values())
    for key in _SCHEMA_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            subs.extend(value)
    for key in _SCHEMA_SINGLE:
        if key in schema:
            subs.append(schema[key])
    return subs


def _image_part(image: ImageContent) -> dict[str, Any]:
    validate_image(image)
    return {"type": "image_url", "image_url": {"url": image_data_url(image)}}


def _tool_message(tool_call_id: str | None, content: str) -> dict[str, Any]:
    if not tool_call_id:
        raise InvalidRequestError("a tool result needs the id of the tool call it answers")
    return {"role": "tool", "tool_call_id": tool_call_id, "content": content}


def _user_messages(message: Message) -> list[dict[str, Any]]:
    """A USER turn; tool-result parts inside it become separate ``tool`` messages first."""
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, ToolResultContent):
            out.append(_tool_message(part.tool_call_id, part.content))
        elif isinstance(part, ImageContent):
            parts.append(_image_part(part))
        else:
            parts.append({"type": "text", "text": part.text})
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_message(message: Message) -> dict[str, Any]:
    text = message.text()
    mapped: dict[str, Any] = {"role": "assistant", "content": text or None}
    if message.tool_calls:
        mapped["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    elif not text:
        mapped["content"] = ""
    return mapped


def _tool_messages(message: Message) -> list[dict[str, Any]]:
    results = [part for part in message.parts() if isinstance(part, ToolResultContent)]
    if results:
        return [_tool_message(part.tool_call_id, part.content) for part in results]
    return [_tool_message(message.tool_call_id, message.text())]


def map_messages(messages: tuple[Message, ...], *, system_role: str) -> list[dict[str, Any]]:
    """Neutral messages as Chat Completions ``messages`` (system text under ``system_role``)."""
    mapped: list[dict[str, Any]] = []
    for message in messages:
        if message.role == MessageRole.SYSTEM:
            mapped.append({"role": system_role, "content": message.text()})
        elif message.role == MessageRole.USER:
            mapped.extend(_user_messages(message))
        elif message.role == MessageRole.ASSISTANT:
            mapped.append(_assistant_message(message))
        else:
            mapped.extend(_tool_messages(message))
    return mapped


def map_tool(tool: ToolSpec) -> dict[str, Any]:
    """One tool definition; ``strict`` only when its parameters are strict-compatible."""
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    if _strict_root(tool.parameters):
        function["strict"] = True
    return {"type": "function", "function": function}


def map_tool_choice(choice: str | None) -> str | dict[str, Any] | None:
    """``auto``/``none``/``required`` pass through; any other value forces that tool."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def map_response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` for a JSON schema; strict only when the schema allows it."""
    return {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": _strict_root(schema)},
    }


#: Reasoning tokens set aside on top of ``max_tokens`` for a reasoning model, by effort
#: (reasoning counts against ``max_completion_tokens``; ``medium`` is OpenAI's default effort).
REASONING_ALLOWANCE = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


def max_completion_tokens(req: ProviderRequest, reasoning: bool) -> int:
    """``max_completion_tokens``: the answer's ``max_tokens``, plus on a reasoning model the
    effort's :data:`REASONING_ALLOWANCE` (capped at the model's output limit), so that the
    reasoning does not eat the answer (a JSON answer cut short fails its schema)."""
    if not reasoning:
        return req.max_tokens
    allowance = REASONING_ALLOWANCE[req.reasoning_effort or "medium"]
    return output_limit(req.model, req.max_tokens, allowance)


def output_token_limit(req: ProviderRequest) -> int:
    """The ``max_completion_tokens`` :func:`build_request` sends: the most output (reasoning
    included) the answer can be billed for."""
    return max_completion_tokens(req, is_reasoning_model(req.model))


def build_request(req: ProviderRequest) -> dict[str, Any]:
    """The keyword arguments for ``client.chat.completions.create`` (without streaming)."""
    reasoning = is_reasoning_model(req.model)
    kwargs: dict[str, Any] = {
        "model": req.model.api_id,
        "messages": map_messages(req.messages, system_role="developer" if reasoning else "system"),
        "max_completion_tokens": output_token_limit(req),
    }
    if req.reasoning_effort is not None and (reasoning or req.model.capabilities.reasoning):
        kwargs["reasoning_effort"] = req.reasoning_effort
    if req.temperature is not None and not reasoning:
        kwargs["temperature"] = req.temperature
    if req.tools:
        kwargs["tools"] = [map_tool(tool) for tool in req.tools]
        if (choice := map_tool_choice(req.tool_choice)) is not None:
            kwargs["tool_choice"] = choice
    if req.structured_output_schema is not None:
        kwargs["response_format"] = map_response_format(req.structured_output_schema)
    if req.timeout is not None:
        kwargs["timeout"] = req.timeout
    return kwargs


# --- response mapping ----------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def parse_usage(usage: Any) -> Usage:
    """An SDK ``CompletionUsage`` (or its dict) in the neutral convention."""
    if usage is None:
        return Usage()
    prompt_details = _get(usage, "prompt_tokens_details")
    completion_details = _get(usage, "completion_tokens_details")
    return Usage(
        input_tokens=_get(usage, "prompt_tokens") or 0,
        output_tokens=_get(usage, "completion_tokens") or 0,
        cached_tokens=_get(prompt_details, "cached_tokens") or 0,
        cache_write_tokens=_get(prompt_details, "cache_write_tokens") or 0,
        reasoning_tokens=_get(completion_details, "reasoning_tokens") or 0,
    )


def map_finish_reason(raw: str | None) -> FinishReason:
    """Chat Completions ``finish_reason`` in the neutral vocabulary."""
    if raw is None:
        return "stop"
    return _FINISH_REASONS.get(raw, "other")


def parse_go_duration(value: str | None) -> float | None:
    """Seconds in a Go duration (``"6m0s"``, ``"12ms"``, ``"1.5s"``) or a bare number."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    if not text or not _GO_DURATION.fullmatch(text):
        return None
    return sum(float(number) * _GO_UNITS[unit] for number, unit in _GO_PART.findall(text))


_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s))+")


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_rate_limit_headers(headers: Mapping[str, str] | None) -> RateLimitSnapshot | None:
    """The ``x-ratelimit-*`` headers as a snapshot (None when the answer carried none)."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    if not any(key.startswith("x-ratelimit-") for key in lowered):
        return None
    return RateLimitSnapshot(
        requests_limit=_int_header(lowered, "x-ratelimit-limit-requests"),
        requests_remaining=_int_header(lowered, "x-ratelimit-remaining-requests"),
        requests_reset_s=parse_go_duration(lowered.get("x-ratelimit-reset-requests")),
        input_tokens_limit=_int_header(lowered, "x-ratelimit-limit-tokens"),
        input_tokens_remaining=_int_header(lowered, "x-ratelimit-remaining-tokens"),
        input_tokens_reset_s=parse_go_duration(lowered.get("x-ratelimit-reset-tokens")),
    )


def _fresh_call_id() -> str:
    """An id for a tool call that came without one (some compatible servers omit it): the
    caller needs one to send the result back."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _parse_tool_calls(raw_calls: Any) -> tuple[ToolCall, ...]:
    calls = []
    for call in raw_calls or ():
        function = _get(call, "function")
        calls.append(
            ToolCall(
                id=_get(call, "id") or _fresh_call_id(),
                name=_get(function, "name") or "",
                arguments=parse_json_arguments(_get(function, "arguments")),
            )
        )
    return tuple(calls)


def _reasoning_text(message: Any) -> str | None:
    """``reasoning_content`` that some OpenAI-compatible servers add (never OpenAI itself)."""
    extra = getattr(message, "model_extra", None) or {}
    value = extra.get("reasoning_content") or extra.get("reasoning")
    return value if isinstance(value, str) and value else None


def parse_response(completion: Any, *, headers: Mapping[str, str] | None = None) -> ProviderResult:
    """A ``ChatCompletion`` (and its HTTP headers) as a :class:`ProviderResult`."""
    choice = (completion.choices or [None])[0]
    message = _get(choice, "message")
    raw_finish = _get(choice, "finish_reason")
    finish = map_finish_reason(raw_finish)
    details: dict[str, Any] = {}
    refusal = _get(message, "refusal")
    if refusal:
        finish = "content_filter"
        details["refusal"] = refusal
    headers = headers or {}
    return ProviderResult(
        text=_get(message, "content") or "",
        tool_calls=_parse_tool_calls(_get(message, "tool_calls")),
        usage=parse_usage(completion.usage),
        finish_reason=finish,
        raw_finish_reason=raw_finish,
        reasoning_text=_reasoning_text(message),
        request_id=headers.get("x-request-id") or getattr(completion, "_request_id", None),
        model_version=completion.model,
        rate_limit=parse_rate_limit_headers(headers),
        provider_details=details,
    )


class StreamAssembler:
    """Collects ``chat.completion.chunk`` objects into the final :class:`ProviderResult`."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: Any = None
        self.model: str | None = None
        self.refusal_parts: list[str] = []

    def add(self, chunk: Any) -> str:
        """Absorb one chunk; return the text it adds (possibly empty)."""
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        text = ""
        for choice in chunk.choices or ():
            if choice.finish_reason:
                self.finish = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                text += delta.content
            if delta.refusal:
                self.refusal_parts.append(delta.refusal)
            if reasoning := _reasoning_text(delta):
                self.reasoning_parts.append(reasoning)
            for call in delta.tool_calls or ():
                self._add_tool_delta(call)
        if text:
            self.text_parts.append(text)
        return text

    def _add_tool_delta(self, call: Any) -> None:
        slot = self.tool_calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
        if call.id:
            slot["id"] = call.id
        function = call.function
        if function is not None:
            if function.name:
                slot["name"] += function.name
            if function.arguments:
                slot["arguments"] += function.arguments

    def result(self, headers: Mapping[str, str] | None = None) -> ProviderResult:
        """The assembled answer; raises ``ProviderConnectionError`` if the stream was cut.

        A stream is complete when a ``finish_reason`` arrived or, failing that, its usage
        chunk (sent last, after the final choice, when ``include_usage`` is on): some
        OpenAI-compatible servers end with usage and ``[DONE]`` but never set a finish
        reason. Such an answer is kept (finish ``tool_calls`` if it called tools, else
        ``stop``; ``raw_finish_reason`` None), never discarded and bought again.
        """
        if self.finish is None and self.usage is None:
            raise ProviderConnectionError(
                "the stream ended before a finish reason or its usage arrived", provider=PROVIDER
            )
        calls = tuple(
            ToolCall(
                id=slot["id"] or _fresh_call_id(),
                name=slot["name"],
                arguments=parse_json_arguments(slot["arguments"]),
            )
            for _, slot in sorted(self.tool_calls.items())
        )
        if self.finish is None:
            finish: FinishReason = "tool_calls" if calls else "stop"
        else:
            finish = map_finish_reason(self.finish)
        details: dict[str, Any] = {}
        if self.refusal_parts:
            finish = "content_filter"
            details["refusal"] = "".join(self.refusal_parts)
        headers = headers or {}
        return ProviderResult(
            text="".join(self.text_parts),
            tool_calls=calls,
            usage=parse_usage(self.usage),
            finish_reason=finish,
            raw_finish_reason=self.finish,
            reasoning_text="".join(self.reasoning_parts) or None,
            request_id=headers.get("x-request-id"),
            model_version=self.model,
            rate_limit=parse_rate_limit_headers(headers),
            provider_details=details,
        )


# --- error mapping -------------------------------------------------------------------------

_CONTEXT_NUMBERS = re.compile(
    r"maximum context length is (\d+) tokens.*?(?:resulted in|requested) (\d+) tokens", re.S
)
#: OpenAI's 429 for one request larger than a per-minute limit (never cured by waiting).
_TOO_LARGE = re.compile(r"Request too large\b(?:.*?Limit (\d+), Requested (\d+))?", re.I | re.S)
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.I)
scrub = scrub_message  # kept under its old name for callers and tests


def parse_context_numbers(message: str) -> tuple[int | None, int | None]:
    """(tokens_used, max_tokens) from OpenAI's context-length wording, or (None, None)."""
    match = _CONTEXT_NUMBERS.search(message or "")
    if not match:
        return None, None
    return int(match.group(2)), int(match.group(1))


def _retry_hint(exc: openai.APIStatusError) -> float | None:
    delay = parse_retry_after(exc.response.headers)
    if delay is not None:
        return delay
    match = _TRY_AGAIN.search(exc.message or "")
    if not match:
        return None
    value = float(match.group(1))
    return value / 1000.0 if match.group(2).lower() == "ms" else value


def _map_status_error(exc: openai.APIStatusError, common: dict[str, Any]) -> LLMError:
    status, code = exc.status_code, exc.code
    message = scrub(exc.message)
    if status in (401, 403):
        return AuthenticationError(
            f"OpenAI rejected the credentials (HTTP {status}, {code})", **common
        )
    if status == 404:
        return ModelNotFoundError(f"OpenAI does not know this model or path: {message}", **common)
    if status == 429:
        if too_large := _TOO_LARGE.search(exc.message or ""):
            limit, requested = too_large.groups()
            return RequestTooLargeError(
                message,
                limit_tokens=int(limit) if limit else None,
                requested_tokens=int(requested) if requested else None,
                **common,
            )
        quota = "insufficient_quota" in (code, exc.type)
        return RateLimitError(
            message, retry_after_s=_retry_hint(exc), quota_exhausted=quota, **common
        )
    if status in (400, 413, 422):
        used, limit = parse_context_numbers(exc.message or "")
        if code == "context_length_exceeded" or limit is not None:
            return ContextLengthError(message, tokens_used=used, max_tokens=limit, **common)
        return InvalidRequestError(message, **common)
    if status in (503, 529):
        return ProviderOverloadedError(message, retry_after_s=_retry_hint(exc), **common)
    if status >= 500 or status in (408, 409):
        return ProviderError(message, **common)
    return InvalidRequestError(message, **common)


def map_error(exc: Exception, *, model: str) -> LLMError:
    """Any exception from the SDK or the transport as an :mod:`llm.exceptions` error."""
    if isinstance(exc, LLMError):
        return exc
    common: dict[str, Any] = {"provider": PROVIDER, "model": model}
    if isinstance(exc, openai.APIStatusError):
        common.update(status=exc.status_code, request_id=exc.request_id)
        return _map_status_error(exc, common)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | asyncio.TimeoutError):
        return LLMTimeoutError("the request to OpenAI timed out", **common)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | ConnectionError):
        return ProviderConnectionError(
            f"connection to OpenAI failed ({type(exc).__name__})", **common
        )
    if isinstance(exc, openai.APIError):
        return ProviderError(scrub(exc.message), **common)
    return ProviderError(f"unexpected failure talking to OpenAI ({type(exc).__name__})", **common)


# --- the adapter ---------------------------------------------------------------------------


class OpenAIAdapter(ProviderAdapter):
    """Chat Completions through ``openai.AsyncOpenAI``. Apart from ``__init__``, the public
    surface is the base class."""

    provider = PROVIDER

    _client: openai.AsyncOpenAI | None = None

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            key = self.settings.api_key(PROVIDER)
            if not key:
                raise ConfigurationError(
                    f"no OpenAI API key: set {key_hint(PROVIDER)}", provider=PROVIDER
                )
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.settings.base_url(PROVIDER) or None,
                max_retries=0,
                http_client=self.http_client,
            )
        return self._client

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        client = self._get_client()
        kwargs = build_request(request)
        try:
            raw = await client.chat.completions.with_raw_response.create(**kwargs)
            completion = raw.parse()
        except Exception as exc:
            raise map_error(exc, model=request.model.name) from None
        return parse_response(completion, headers=raw.headers)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamItem]:
        client = self._get_client()
        kwargs = build_request(request)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        try:
            stream = await client.chat.completions.create(**kwargs)
        except Exception as exc:
            raise map_error(exc, model=request.model.name) from None
        assembler = StreamAssembler()
        try:
            async for chunk in stream:
                if text := assembler.add(chunk):
                    yield text
        except Exception as exc:
            raise map_error(exc, model=request.model.name) from None
        finally:
            await stream.close()
        try:
            result = assembler.result(headers=stream.response.headers)
        except LLMError as exc:
            exc.model = request.model.name
            raise
        yield result

    async def count_tokens(self, request: ProviderRequest) -> int:
        """Chat Completions has no count endpoint: the local estimate by :mod:`llm.tokens`."""
        return estimate_prompt_tokens(request)
