"""The adapter seam: one request in, one normalised result (or a stream of text) out.

An adapter is a translator around one official SDK. It owns the SDK client and the
``httpx2.AsyncClient`` pool under it, maps a :class:`ProviderRequest` to the SDK call, maps
the SDK's answer back to a :class:`ProviderResult`, and maps SDK errors into
:mod:`llm.exceptions` once, at this boundary. It does no retrying (SDK ``max_retries=0``),
no rate limiting, no cost accounting: those are policies that wrap the adapter. One
exception, part of an adapter's own cache policy rather than a retry policy: the Gemini
adapter sends a request once more, without its explicit cache, when Gemini answers 403/404
for a cache the adapter itself created and that is gone (:mod:`llm.providers.google_cache`).

``ProviderRequest`` and ``ProviderResult`` are small frozen values that pickle, so the
same request can be built in a driver and executed inside a Ray actor.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, ClassVar, Literal

import httpx2
from pydantic import BaseModel, ConfigDict, Field

from llm.config import Settings
from llm.models import ModelInfo
from llm.providers.http_pool import pooled_client
from llm.types import FinishReason, Message, ToolCall, Usage

ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolSpec(_Frozen):
    """A function the model may call: name, description, JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ProviderRequest(_Frozen):
    """Everything an adapter needs for one call, already validated and resolved."""

    model: ModelInfo
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    enable_caching: bool = False
    cache_ttl: Literal["5m", "1h"] = "5m"
    structured_output_schema: dict[str, Any] | None = None
    tools: tuple[ToolSpec, ...] = ()
    #: "auto", "required", "none", or the name of one tool to force.
    tool_choice: str | None = None
    reasoning_effort: ReasoningEffort | None = None
    timeout: float | None = None
    #: Gemini explicit cache to use (``cachedContents/…``), set by the cache policy.
    cached_content: str | None = None


class RateLimitSnapshot(_Frozen):
    """What the provider's rate-limit headers said on one answer (None where absent)."""

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    input_tokens_limit: int | None = None
    input_tokens_remaining: int | None = None
    input_tokens_reset_s: float | None = None
    output_tokens_limit: int | None = None
    output_tokens_remaining: int | None = None
    output_tokens_reset_s: float | None = None


class ProviderResult(_Frozen):
    """One finished answer, normalised; cost is computed by the caller from ``usage``."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Field(default_factory=Usage)
    finish_reason: FinishReason = "stop"
    raw_finish_reason: str | None = None
    reasoning_text: str | None = None
    request_id: str | None = None
    #: The model id the provider answered with (often the dated id).
    model_version: str | None = None
    rate_limit: RateLimitSnapshot | None = None
    #: Gemini explicit-cache storage this call created (tokens x hours the cache is kept),
    #: billed with the call's cache writes (:func:`llm.pricing.compute_cost`).
    cache_storage_token_hours: Decimal = Decimal(0)
    provider_details: dict[str, Any] = Field(default_factory=dict)


StreamItem = str | ProviderResult
"""A stream yields text chunks (``str``) and ends with exactly one ``ProviderResult``."""


class ProviderAdapter(abc.ABC):
    """Base class of the three adapters. Apart from ``__init__``, the public surface is this."""

    provider: ClassVar[str]

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx2.AsyncClient | None = None,
        max_connections: int | None = None,
    ) -> None:
        self.settings = settings
        limit = max_connections or settings.max_connections
        self._owns_http_client = http_client is None
        self.http_client = http_client or pooled_client(limit)

    @abc.abstractmethod
    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """Send one non-streaming request."""

    @abc.abstractmethod
    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamItem]:
        """Send one streaming request: yields text chunks, then one ``ProviderResult``."""

    @abc.abstractmethod
    async def count_tokens(self, request: ProviderRequest) -> int:
        """The provider's count of prompt tokens for ``request``."""

    async def aclose(self) -> None:
        """Close the connection pool if this adapter created it."""
        if self._owns_http_client:
            await self.http_client.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.settings.base_url(self.provider)!r})"
