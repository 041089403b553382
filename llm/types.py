"""Provider-neutral value types: messages, content parts, usage, cost and responses.

Every type here is an immutable pydantic model that serialises to plain JSON, so it can
cross a Ray process boundary, land in a Parquet row, or be written to a JSON file.

Usage convention (the same for every provider; adapters translate into it):

* ``input_tokens`` counts every prompt token, including tokens read from and written to
  the prompt cache. (Anthropic reports uncached input separately; we add the two back.)
* ``cached_tokens`` is the part of ``input_tokens`` read from the cache.
* ``cache_write_tokens`` is the part of ``input_tokens`` written to the cache;
  ``cache_write_1h_tokens`` is the part of that written with a one-hour TTL (Anthropic).
* ``output_tokens`` counts every generated token, reasoning included.
* ``reasoning_tokens`` is the part of ``output_tokens`` spent on reasoning/thinking.
* ``total_tokens = input_tokens + output_tokens``.

Money is :class:`decimal.Decimal` throughout, in US dollars, so sums are exact.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

ZERO = Decimal("0")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MessageRole(StrEnum):
    """Who speaks a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class TextContent(_Frozen):
    """A run of text inside a message."""

    type: Literal["text"] = "text"
    text: str


class ImageContent(_Frozen):
    """An inline image: base64 ``data`` (standard or URL-safe alphabet) and its MIME type."""

    type: Literal["image"] = "image"
    data: str
    media_type: str = "image/png"


class ToolCall(_Frozen):
    """A tool invocation the assistant asked for; ``arguments`` is the parsed JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResultContent(_Frozen):
    """The result of a tool call, sent back to the model in a TOOL (or USER) message."""

    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    content: str
    name: str | None = None
    is_error: bool = False


ContentPart = Annotated[TextContent | ImageContent | ToolResultContent, Field(discriminator="type")]


class Message(_Frozen):
    """One conversation turn.

    ``content`` is a plain string or a list of parts. An assistant turn that called tools
    carries them in ``tool_calls``; a TOOL turn names the call it answers with
    ``tool_call_id`` (or carries :class:`ToolResultContent` parts).
    """

    role: MessageRole
    content: str | list[ContentPart] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @field_validator("tool_calls", mode="before")
    @classmethod
    def _tool_calls_from_dicts(cls, value: Any) -> Any:
        if value is None:
            return ()
        return tuple(value)

    def text(self) -> str:
        """All text of this message, parts joined with blank lines."""
        if isinstance(self.content, str):
            return self.content
        chunks = []
        for part in self.content:
            if isinstance(part, TextContent):
                chunks.append(part.text)
            elif isinstance(part, ToolResultContent):
                chunks.append(part.content)
        return "\n\n".join(chunks)

    def parts(self) -> list[TextContent | ImageContent | ToolResultContent]:
        """The content as a list of parts (a string becomes one text part)."""
        if isinstance(self.content, str):
            return [TextContent(text=self.content)] if self.content else []
        return list(self.content)


class Usage(_Frozen):
    """Token counts of one call, in the convention of this module's docstring."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Prompt tokens billed at the plain input rate."""
        return self.input_tokens - self.cached_tokens - self.cache_write_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


class Cost(_Frozen):
    """What one call cost, in USD. ``total_cost`` is the sum of the four parts."""

    input_cost: Decimal = ZERO
    output_cost: Decimal = ZERO
    cache_read_cost: Decimal = ZERO
    cache_write_cost: Decimal = ZERO

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_cost(self) -> Decimal:
        return self.input_cost + self.output_cost + self.cache_read_cost + self.cache_write_cost

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            input_cost=self.input_cost + other.input_cost,
            output_cost=self.output_cost + other.output_cost,
            cache_read_cost=self.cache_read_cost + other.cache_read_cost,
            cache_write_cost=self.cache_write_cost + other.cache_write_cost,
        )


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "other"]


class LLMResponse(_Frozen):
    """The answer to one ``generate`` call, the same shape for every provider."""

    text: str = ""
    model: str
    provider: str
    usage: Usage = Field(default_factory=Usage)
    cost: Cost | None = None
    #: What prompt caching saved on the call(s), in USD (negative when write surcharges
    #: dominate), priced with ``cost``; ``None`` when the response was not priced.
    cache_savings: Decimal | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    structured_output: Any = None
    finish_reason: FinishReason = "stop"
    raw_finish_reason: str | None = None
    reasoning_text: str | None = None
    latency_s: float = 0.0
    request_id: str | None = None
    attempts: int = 1
    metadata: dict[str, Any] = Field(default_factory=dict)

    def __repr__(self) -> str:  # keep prompts/answers out of logs by default
        return (
            f"LLMResponse(model={self.model!r}, provider={self.provider!r}, "
            f"finish_reason={self.finish_reason!r}, text=<{len(self.text)} chars>, "
            f"tool_calls={len(self.tool_calls)}, usage={self.usage!r}, cost={self.cost!r}, "
            f"request_id={self.request_id!r})"
        )

    __str__ = __repr__
