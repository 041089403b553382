"""The Gemini adapter: ``ProviderRequest`` → ``generateContent`` → ``ProviderResult``.

Owns the ``google.genai.Client`` (created lazily on the first call) and the request,
response, stream and error mappings for the Gemini Developer API. The client gets the
adapter's ``httpx2.AsyncClient`` through ``HttpOptions.httpx_async_client``: the SDK then
uses it for every async call (it skips aiohttp whenever a custom httpx client is given) and
sends to ``base_url`` when one is configured. No ``retry_options`` are set, so the SDK makes
exactly one attempt. google-genai 3.x speaks API version ``v1`` by default.

Mapping notes:

* System messages → ``system_instruction``; ASSISTANT → role ``model``; images →
  ``inline_data`` parts (decoded bytes); assistant tool calls → ``function_call`` parts;
  TOOL messages → ``function_response`` parts in a user turn, with the response wrapped as
  ``{"result": text}`` (``{"error": text}`` for a failed call) because Gemini wants an object,
  and the function name taken from the matching earlier tool call. Consecutive turns of the
  same role are merged (Gemini expects alternating turns).
* Gemini 3 models (``reasoning_style == "gemini_level"``) require the thought signature of a
  function call to come back with it. Our neutral ``ToolCall`` does not carry it, so replayed
  calls get Google's documented placeholder ``skip_thought_signature_validator``.
* Tools → ``function_declarations`` with ``parameters_json_schema`` (plain JSON Schema);
  tool choice → ``function_calling_config`` mode ``AUTO``/``ANY``/``NONE`` (a named tool is
  ``ANY`` + ``allowed_function_names``). Structured output → ``response_mime_type``
  ``application/json`` + ``response_json_schema``.
* ``reasoning_effort`` → ``thinking_config`` with ``include_thoughts`` false:
  ``gemini_budget`` models (2.5) get a ``thinking_budget`` from :data:`THINKING_BUDGETS`,
  ``gemini_level`` models (3.x) get ``thinking_level``.
* **Thoughts count against ``maxOutputTokens``** (Gemini's rule), so a thinking request
  sent with ``maxOutputTokens = max_tokens`` can spend the whole limit on thoughts and
  answer ``MAX_TOKENS`` with no text. As the Anthropic adapter does, ``max_tokens`` stays
  the answer's: ``maxOutputTokens`` is ``max_tokens`` plus a thinking allowance
  (:func:`thinking_allowance`: the 2.5 budget, :data:`THINKING_BUDGETS` of the effort for a
  3.x level, the ``high`` allowance when no effort is given to a model that thinks by
  default, :func:`thinks_by_default`: 3.x, 2.5 Pro and Flash), capped at the model's output
  limit; when the cap bites, a 2.5 budget shrinks to the room left (never below the
  ``minimal`` budget). What the caller gets: the answer can use up to ``max_tokens`` (plus
  any allowance the thoughts leave unused); thoughts are billed as output and reported in
  ``reasoning_tokens``. A 3.x level or a default budget is a target, not a hard cap, so a
  model that thinks past its allowance can still end with ``finish_reason="length"`` and
  short or empty text; ``reasoning_tokens`` then shows where the tokens went.
* Usage: ``promptTokenCount`` (which includes ``cachedContentTokenCount``) → input;
  ``cachedContentTokenCount`` → cached; ``candidatesTokenCount + thoughtsTokenCount`` →
  output (Gemini counts thoughts separately); ``thoughtsTokenCount`` → reasoning.
* ``count_tokens``: the Developer API's ``countTokens`` takes contents only, so the answer is
  its count of the contents plus the local estimate for system instruction, tools and schema.
* Explicit caches: see :mod:`llm.providers.google_cache`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llm.config import Settings, key_hint
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
from llm.models import ModelInfo
from llm.providers.base import ProviderAdapter, ProviderRequest, ProviderResult, StreamItem
from llm.providers.common import (
    output_limit,
    prefix_tokens_through_system,
    scrub_message,
    split_system,
    validate_image,
)
from llm.providers.google_cache import STORAGE_KEY, CacheDecision, ExplicitCacheManager
from llm.retry import parse_google_retry_delay, parse_retry_after
from llm.tokens import REQUEST_OVERHEAD, count_schema_tokens, decode_base64
from llm.types import (
    FinishReason,
    ImageContent,
    Message,
    MessageRole,
    ToolCall,
    ToolResultContent,
    Usage,
)

PROVIDER = "google"

#: Thinking budgets (tokens) for Gemini 2.5 models by effort. 512 is the smallest budget
#: every 2.5 model accepts (Flash-Lite's floor); 24576 is Flash's ceiling.
THINKING_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
#: Placeholder Google documents for function calls whose real signature is not available.
SKIP_SIGNATURE = b"skip_thought_signature_validator"

_FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}


# --- request mapping -----------------------------------------------------------------------


def _image_part(image: ImageContent) -> dict[str, Any]:
    validate_image(image)
    return {"inline_data": {"mime_type": image.media_type, "data": decode_base64(image.data)}}


def _function_response(name: str, call_id: str, content: str, is_error: bool) -> dict[str, Any]:
    response = {"error": content} if is_error else {"result": content}
    return {"function_response": {"name": name, "id": call_id, "response": response}}


class _ContentBuilder:
    """Turns neutral messages into Gemini ``contents``, merging same-role neighbours."""

    def __init__(self, model: ModelInfo) -> None:
        self.contents: list[dict[str, Any]] = []
        self.call_names: dict[str, str] = {}
        self.signed = model.capabilities.reasoning_style == "gemini_level"

    def add(self, message: Message) -> None:
        if message.role == MessageRole.ASSISTANT:
            self._append("model", self._assistant_parts(message))
        elif message.role == MessageRole.TOOL:
            self._append("user", self._tool_parts(message))
        else:
            self._append("user", self._user_parts(message))

    def _append(self, role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})

    def _user_parts(self, message: Message) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for part in message.parts():
            if isinstance(part, ImageContent):
                parts.append(_image_part(part))
            elif isinstance(part, ToolResultContent):
                parts.append(
                    self._result_part(part.tool_call_id, part.content, part.name, part.is_error)
                )
            else:
                parts.append({"text": part.text})
        return parts

    def _assistant_parts(self, message: Message) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if text := message.text():
            parts.append({"text": text})
        for call in message.tool_calls:
            self.call_names[call.id] = call.name
            part: dict[str, Any] = {
                "function_call": {"name": call.name, "args": call.arguments, "id": call.id}
            }
            if self.signed:
                part["thought_signature"] = SKIP_SIGNATURE
            parts.append(part)
        return parts

    def _tool_parts(self, message: Message) -> list[dict[str, Any]]:
        results = [part for part in message.parts() if isinstance(part, ToolResultContent)]
        if results:
            return [
                self._result_part(part.tool_call_id, part.content, part.name, part.is_error)
                for part in results
            ]
        return [self._result_part(message.tool_call_id, message.text(), message.name, False)]

    def _result_part(
        self, call_id: str | None, content: str, name: str | None, is_error: bool
    ) -> dict[str, Any]:
        resolved = name or self.call_names.get(call_id or "")
        if not resolved:
            raise InvalidRequestError(
                "a tool result must name its function or answer an earlier tool call"
            )
        return _function_response(resolved, call_id or "", content, is_error)


def map_contents(request: ProviderRequest) -> tuple[str | None, list[dict[str, Any]]]:
    """The system instruction and the ``contents`` list for ``request``."""
    system, messages = split_system(request.messages)
    builder = _ContentBuilder(request.model)
    for message in messages:
        builder.add(message)
    return system, builder.contents


def map_tools(request: ProviderRequest) -> list[dict[str, Any]]:
    """One ``Tool`` holding every function declaration."""
    declarations = []
    for tool in request.tools:
        declaration: dict[str, Any] = {"name": tool.name, "parameters_json_schema": tool.parameters}
        if tool.description:
            declaration["description"] = tool.description
        declarations.append(declaration)
    return [{"function_declarations": declarations}]


def map_tool_config(choice: str | None) -> dict[str, Any] | None:
    """``function_calling_config`` for a tool choice (None leaves the default, AUTO)."""
    if choice is None:
        return None
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if choice in modes:
        return {"function_calling_config": {"mode": modes[choice]}}
    return {"function_calling_config": {"mode": "ANY", "allowed_function_names": [choice]}}


def thinks_by_default(model: ModelInfo) -> bool:
    """Whether the model thinks when the request says nothing about thinking: every 3.x
    (level-style) model and the 2.5 models, except 2.5 Flash-Lite, which thinks only when
    given a budget (Google's thinking guide)."""
    caps = model.capabilities
    if caps.reasoning_style == "gemini_level" or caps.reasoning_always_on:
        return True
    return caps.reasoning_style == "gemini_budget" and "-lite" not in model.api_id


def thinking_allowance(model: ModelInfo, effort: str | None) -> int:
    """Output tokens set aside for thoughts on top of ``max_tokens`` (0: no thinking expected)."""
    if model.capabilities.reasoning_style not in ("gemini_budget", "gemini_level"):
        return 0
    if effort is not None:
        return THINKING_BUDGETS[effort]
    return THINKING_BUDGETS["high"] if thinks_by_default(model) else 0


def max_output_tokens(model: ModelInfo, max_tokens: int, effort: str | None) -> int:
    """``maxOutputTokens``: the answer's ``max_tokens`` plus the thinking allowance, capped
    at the model's output limit (never below ``max_tokens``)."""
    return output_limit(model, max_tokens, thinking_allowance(model, effort))


def thinking_config(
    model: ModelInfo, effort: str | None, max_tokens: int | None = None
) -> dict[str, Any] | None:
    """``thinking_config`` for an effort, by the model's reasoning style (None: model default).

    A 2.5 budget is cut to the room the output limit leaves above ``max_tokens``.
    """
    style = model.capabilities.reasoning_style
    if effort is None or style not in ("gemini_budget", "gemini_level"):
        return None
    if style == "gemini_level":
        return {"thinking_level": effort.upper(), "include_thoughts": False}
    budget = THINKING_BUDGETS[effort]
    room = model.max_output_tokens - (max_tokens or 0)
    if room < budget:
        budget = max(room, THINKING_BUDGETS["minimal"])
    return {"thinking_budget": budget, "include_thoughts": False}


def _static_prefix(request: ProviderRequest, system: str | None) -> dict[str, Any]:
    prefix: dict[str, Any] = {}
    if system is not None:
        prefix["system_instruction"] = system
    if request.tools:
        prefix["tools"] = map_tools(request)
        if (tool_config := map_tool_config(request.tool_choice)) is not None:
            prefix["tool_config"] = tool_config
    return prefix


def output_token_limit(request: ProviderRequest) -> int:
    """The ``max_output_tokens`` :func:`build_config` sends: the most output (thoughts
    included) the answer can be billed for."""
    return max_output_tokens(request.model, request.max_tokens, request.reasoning_effort)


def build_config(request: ProviderRequest, system: str | None) -> dict[str, Any]:
    """The ``GenerateContentConfig`` fields for ``request``, as a dict."""
    effort = request.reasoning_effort
    config: dict[str, Any] = {
        "max_output_tokens": output_token_limit(request),
        "automatic_function_calling": {"disable": True},
    }
    if request.cached_content:
        config["cached_content"] = request.cached_content
    else:
        config.update(_static_prefix(request, system))
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.structured_output_schema is not None:
        config["response_mime_type"] = "application/json"
        config["response_json_schema"] = request.structured_output_schema
    if (thinking := thinking_config(request.model, effort, request.max_tokens)) is not None:
        config["thinking_config"] = thinking
    if request.timeout is not None:
        config["http_options"] = {"timeout": int(request.timeout * 1000)}
    return config


def build_request(req: ProviderRequest) -> dict[str, Any]:
    """The keyword arguments for ``client.aio.models.generate_content`` (and ``_stream``)."""
    system, contents = map_contents(req)
    if not contents:
        raise InvalidRequestError("Gemini needs at least one user or assistant message")
    return {"model": req.model.api_id, "contents": contents, "config": build_config(req, system)}


def cache_create_config(request: ProviderRequest, ttl_s: int, key: str) -> dict[str, Any]:
    """The ``CreateCachedContentConfig`` for the static prefix of ``request``."""
    system, _ = split_system(request.messages)
    config = _static_prefix(request, system)
    config.update(ttl=f"{ttl_s}s", display_name=f"llm-prefix-{key[:16]}")
    return config


# --- response mapping ----------------------------------------------------------------------


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def parse_usage(metadata: Any) -> Usage:
    """``usageMetadata`` in the neutral convention (thoughts are added to output)."""
    if metadata is None:
        return Usage()
    thoughts = metadata.thoughts_token_count or 0
    return Usage(
        input_tokens=metadata.prompt_token_count or 0,
        output_tokens=(metadata.candidates_token_count or 0) + thoughts,
        cached_tokens=metadata.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )


def map_finish_reason(raw: str | None, *, has_tool_calls: bool) -> FinishReason:
    """Gemini ``finishReason`` in the neutral vocabulary."""
    if raw is None or raw == "STOP":
        return "tool_calls" if has_tool_calls else "stop"
    return _FINISH_REASONS.get(raw, "other")


class _PartCollector:
    """Accumulates text, thought text and function calls from candidate parts."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thoughts: list[str] = []
        self.calls: list[ToolCall] = []

    def add(self, parts: Any) -> str:
        """Absorb parts; return the new visible text."""
        added = []
        for part in parts or ():
            if part.function_call is not None:
                call = part.function_call
                call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
                self.calls.append(
                    ToolCall(id=call_id, name=call.name or "", arguments=call.args or {})
                )
            elif part.text:
                (self.thoughts if part.thought else added).append(part.text)
        self.text.extend(added)
        return "".join(added)


def _blocked_reason(response: Any) -> str | None:
    feedback = getattr(response, "prompt_feedback", None)
    return _enum_name(feedback.block_reason) if feedback is not None else None


def _result(
    collector: _PartCollector, raw_finish: str | None, response: Any, usage: Any
) -> ProviderResult:
    finish = map_finish_reason(raw_finish, has_tool_calls=bool(collector.calls))
    return ProviderResult(
        text="".join(collector.text),
        tool_calls=tuple(collector.calls),
        usage=parse_usage(usage),
        finish_reason=finish,
        raw_finish_reason=raw_finish,
        reasoning_text="".join(collector.thoughts) or None,
        request_id=response.response_id,
        model_version=response.model_version,
    )


def _blocked_result(response: Any, reason: str | None) -> ProviderResult:
    """No candidates: a blocked prompt is a content filter; anything else is ``other``."""
    return ProviderResult(
        usage=parse_usage(response.usage_metadata),
        finish_reason="content_filter" if reason else "other",
        raw_finish_reason=reason,
        request_id=response.response_id,
        model_version=response.model_version,
    )


def parse_response(response: Any) -> ProviderResult:
    """A ``GenerateContentResponse`` as a :class:`ProviderResult`."""
    if not response.candidates:
        return _blocked_result(response, _blocked_reason(response))
    candidate = response.candidates[0]
    collector = _PartCollector()
    collector.add(candidate.content.parts if candidate.content else None)
    return _result(
        collector, _enum_name(candidate.finish_reason), response, response.usage_metadata
    )


class StreamAssembler:
    """Collects streamed ``GenerateContentResponse`` chunks into the final result."""

    def __init__(self) -> None:
        self.collector = _PartCollector()
        self.finish: str | None = None
        self.blocked: str | None = None
        self.last: Any = None
        self.usage: Any = None

    def add(self, chunk: Any) -> str:
        """Absorb one chunk; return the visible text it adds."""
        self.last = chunk
        self.usage = chunk.usage_metadata or self.usage
        if not chunk.candidates:
            self.blocked = _blocked_reason(chunk) or self.blocked
            return ""
        candidate = chunk.candidates[0]
        if candidate.finish_reason is not None:
            self.finish = _enum_name(candidate.finish_reason)
        return self.collector.add(candidate.content.parts if candidate.content else None)

    def result(self) -> ProviderResult:
        """The assembled answer; raises ``ProviderConnectionError`` if the stream was cut."""
        if self.blocked is not None:
            return _blocked_result(self.last, self.blocked)
        if self.last is None or self.finish is None:
            raise ProviderConnectionError(
                "the stream ended before a finish reason arrived", provider=PROVIDER
            )
        return _result(self.collector, self.finish, self.last, self.usage)


# --- error mapping -------------------------------------------------------------------------

_CONTEXT_NUMBERS = re.compile(
    r"input token count(?: \((\d+)\))? exceeds the maximum number of tokens allowed \((\d+)\)"
)
_scrub = scrub_message


def parse_context_numbers(message: str) -> tuple[int | None, int | None]:
    """(tokens_used, max_tokens) from Gemini's context-length wording, or (None, None)."""
    match = _CONTEXT_NUMBERS.search(message or "")
    if not match:
        return None, None
    used = int(match.group(1)) if match.group(1) else None
    return used, int(match.group(2))


def _error_details(exc: genai_errors.APIError) -> list[dict[str, Any]]:
    body = exc.details if isinstance(exc.details, dict) else {}
    inner = body.get("error", body)
    details = inner.get("details") if isinstance(inner, dict) else None
    return [item for item in details or () if isinstance(item, dict)]


def _is_daily_quota(details: list[dict[str, Any]]) -> bool:
    for item in details:
        for violation in item.get("violations") or ():
            if isinstance(violation, dict) and "PerDay" in str(violation.get("quotaId", "")):
                return True
    return False


def _is_bad_key(exc: genai_errors.APIError, details: list[dict[str, Any]]) -> bool:
    if "API key not valid" in (exc.message or ""):
        return True
    return any(item.get("reason") == "API_KEY_INVALID" for item in details)


def _retry_after(exc: genai_errors.APIError, details: list[dict[str, Any]]) -> float | None:
    delay = parse_google_retry_delay(details)
    if delay is None and exc.response is not None:
        delay = parse_retry_after(getattr(exc.response, "headers", None) or {})
    return delay


def _map_api_error(exc: genai_errors.APIError, common: dict[str, Any]) -> LLMError:
    code, details = exc.code, _error_details(exc)
    message = _scrub(exc.message)
    if code in (401, 403) or (code == 400 and _is_bad_key(exc, details)):
        return AuthenticationError(
            f"Gemini rejected the credentials (HTTP {code}, {exc.status})", **common
        )
    if code == 404:
        return ModelNotFoundError(
            f"Gemini does not know this model or resource: {message}", **common
        )
    if code == 429:
        return RateLimitError(
            message,
            retry_after_s=_retry_after(exc, details),
            quota_exhausted=_is_daily_quota(details),
            **common,
        )
    if code == 503:
        return ProviderOverloadedError(message, retry_after_s=_retry_after(exc, details), **common)
    if code >= 500 or code == 408:
        return ProviderError(message, **common)
    used, limit = parse_context_numbers(exc.message or "")
    if limit is not None:
        return ContextLengthError(message, tokens_used=used, max_tokens=limit, **common)
    return InvalidRequestError(message, **common)


def map_error(exc: Exception, *, model: str) -> LLMError:
    """Any exception from the SDK or the transport as an :mod:`llm.exceptions` error."""
    if isinstance(exc, LLMError):
        return exc
    common: dict[str, Any] = {"provider": PROVIDER, "model": model}
    if isinstance(exc, genai_errors.APIError):
        common["status"] = exc.code
        return _map_api_error(exc, common)
    if isinstance(exc, httpx2.TimeoutException | asyncio.TimeoutError):
        return LLMTimeoutError("the request to Gemini timed out", **common)
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return ProviderConnectionError(
            f"connection to Gemini failed ({type(exc).__name__})", **common
        )
    if isinstance(exc, ValueError):
        return InvalidRequestError(
            f"the Gemini SDK refused the request: {_scrub(str(exc))}", **common
        )
    return ProviderError(f"unexpected failure talking to Gemini ({type(exc).__name__})", **common)


# --- the adapter ---------------------------------------------------------------------------


class GoogleAdapter(ProviderAdapter):
    """Gemini through ``google.genai``. Apart from ``__init__``, the public surface is the
    base class (plus ``cache_manager``, the explicit-cache policy state)."""

    provider = PROVIDER

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx2.AsyncClient | None = None,
        max_connections: int | None = None,
        cache_manager: ExplicitCacheManager | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(settings, http_client=http_client, max_connections=max_connections)
        self._client: genai.Client | None = None
        if cache_manager is None:
            cache_manager = ExplicitCacheManager(clock=clock) if clock else ExplicitCacheManager()
        self.cache_manager = cache_manager

    def _get_client(self) -> genai.Client:
        if self._client is None:
            key = self.settings.api_key(PROVIDER)
            if not key:
                raise ConfigurationError(
                    f"no Gemini API key: set {key_hint(PROVIDER)}", provider=PROVIDER
                )
            options = types.HttpOptions(
                base_url=self.settings.base_url(PROVIDER) or None,
                httpx_async_client=self.http_client,
            )
            self._client = genai.Client(api_key=key, http_options=options)
        return self._client

    async def _prepare(
        self, client: genai.Client, request: ProviderRequest
    ) -> tuple[ProviderRequest, dict[str, Any]]:
        """Apply the explicit-cache policy; returns the request to send and extra details."""

        async def create(decision: CacheDecision) -> tuple[str, int | None]:
            config = cache_create_config(request, decision.ttl_s, decision.key)
            cache = await client.aio.caches.create(model=request.model.api_id, config=config)
            metadata = cache.usage_metadata
            return cache.name, metadata.total_token_count if metadata else None

        return await self.cache_manager.apply(request, create)

    def _forget_cache(self, details: dict[str, Any], exc: Exception) -> bool:
        """True (and the cache forgotten) when a request on our cache failed for its sake."""
        if "cache_key" not in details or not isinstance(exc, genai_errors.APIError):
            return False
        if exc.code not in (403, 404):
            return False
        self.cache_manager.invalidate(details["cache_key"])
        return True

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        client = self._get_client()
        sent, details = await self._prepare(client, request)
        try:
            response = await client.aio.models.generate_content(**build_request(sent))
        except Exception as exc:
            if not self._forget_cache(details, exc):
                raise map_error(exc, model=request.model.name) from None
            return await self.generate(request)
        result = parse_response(response)
        return _with_details(result, details)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamItem]:
        client = self._get_client()
        sent, details = await self._prepare(client, request)
        assembler = StreamAssembler()
        try:
            chunks = await client.aio.models.generate_content_stream(**build_request(sent))
            async for chunk in chunks:
                if text := assembler.add(chunk):
                    yield text
        except Exception as exc:
            self._forget_cache(details, exc)
            raise map_error(exc, model=request.model.name) from None
        try:
            result = assembler.result()
        except LLMError as exc:
            exc.model = request.model.name
            raise
        yield _with_details(result, details)

    async def count_tokens(self, request: ProviderRequest) -> int:
        """Gemini's count of the contents plus the local estimate of the rest (see module doc)."""
        client = self._get_client()
        kwargs = build_request(request.model_copy(update={"cached_content": None}))
        try:
            counted = await client.aio.models.count_tokens(
                model=kwargs["model"], contents=kwargs["contents"]
            )
        except Exception as exc:
            raise map_error(exc, model=request.model.name) from None
        rest = prefix_tokens_through_system(request)
        if request.structured_output_schema is not None:
            rest += count_schema_tokens(request.structured_output_schema)
        return (counted.total_tokens or REQUEST_OVERHEAD) + rest


def _with_details(result: ProviderResult, details: dict[str, Any]) -> ProviderResult:
    if not details:
        return result
    hidden = ("cache_key", STORAGE_KEY)
    public = {key: value for key, value in details.items() if key not in hidden}
    update: dict[str, Any] = {"provider_details": {**result.provider_details, **public}}
    if STORAGE_KEY in details:  # the storage this call created: a typed, billed field
        update["cache_storage_token_hours"] = Decimal(str(details[STORAGE_KEY]))
    return result.model_copy(update=update)
