"""The emulator's internal, wire-neutral request and result types.

Each wire module (``anthropic_wire``, ``openai_wire``, ``gemini_wire``) is a pure translator:
it parses an HTTP request body into an :class:`EmuRequest`, and renders an
:class:`EmuResult` (or an :class:`EmuError`) back into that provider's exact JSON or SSE
bytes. The engine (``engine.py``) owns everything in between: token counting, answer
synthesis, prompt caching, rate limits, faults and timing. The server (``server.py``) routes
HTTP to the wire modules and the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EmuProvider = Literal["anthropic", "openai", "google"]
EmuApi = Literal["messages", "chat", "responses", "gemini"]
ErrorKind = Literal[
    "authentication",  # 401 (Gemini: 400 API_KEY_INVALID)
    "permission",  # 403
    "not_found",  # 404 unknown model / cache
    "invalid_request",  # 400
    "context_length",  # 400, provider's own wording with the numbers
    "rate_limit",  # 429 with retry-after
    "overloaded",  # Anthropic 529, others 503
    "server_error",  # 500
]


@dataclass(frozen=True)
class Segment:
    """One unit of the prompt in cache order (tools, then system, then messages).

    ``key`` is the exact text used for prefix hashing (it must change whenever the content
    changes); ``tokens`` is its token count; ``cache_ttl`` is set on Anthropic blocks that
    carry ``cache_control`` (a breakpoint after this segment).
    """

    key: str
    tokens: int
    cache_ttl: Literal["5m", "1h"] | None = None


@dataclass(frozen=True)
class EmuTool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class EmuRequest:
    provider: EmuProvider
    api: EmuApi
    #: The model as named in the request (path or body).
    model: str
    segments: tuple[Segment, ...]
    #: Text of the last user turn: the answer is derived from it (and emulator directives).
    last_user_text: str
    max_tokens: int | None = None
    stream: bool = False
    json_schema: dict[str, Any] | None = None
    tools: tuple[EmuTool, ...] = ()
    #: "auto", "any" (some tool must be called), "none", or a tool name to force.
    tool_choice: str = "auto"
    #: The last turn is a tool result: in auto mode the model answers it in text.
    after_tool_result: bool = False
    #: False when the request switched parallel tool calls off (at most one call).
    parallel_tool_calls: bool = True
    #: Reasoning asked for: an effort word ("minimal".."high") or a token budget.
    reasoning_effort: str | None = None
    reasoning_budget: int | None = None
    include_thoughts: bool = False
    #: Gemini explicit cache name (``cachedContents/…``).
    cached_content: str | None = None
    stop_sequences: tuple[str, ...] = ()
    #: Raw fields a wire module wants echoed back (ids, response-shape options).
    echo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmuToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class EmuResult:
    """The engine's answer. Token counts follow the engine's convention:

    ``input_tokens`` is the whole prompt, ``cached_tokens`` and ``cache_write_tokens``
    (of which ``cache_write_1h_tokens``) are parts of it; ``output_tokens`` includes
    ``reasoning_tokens``. Wire modules convert to their provider's convention.
    """

    request_id: str
    model_version: str
    text: str
    tool_calls: tuple[EmuToolCall, ...]
    thinking_text: str | None
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    #: "stop", "length" or "tool_calls".
    finish: str = "stop"
    #: Rate-limit header values (provider-neutral) for wire modules to render.
    limits: dict[str, Any] = field(default_factory=dict)
    #: Streaming: split the answer into these chunks (text) in order.
    text_chunks: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmuError(Exception):
    kind: ErrorKind
    message: str
    #: Seconds to wait, for rate_limit and overloaded.
    retry_after_s: float | None = None
    #: Numbers for context_length.
    tokens_used: int | None = None
    max_tokens: int | None = None
    request_id: str = ""
    limits: dict[str, Any] = field(default_factory=dict)
