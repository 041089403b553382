"""Replaying recorded real HTTP exchanges (``../shared/replay-corpus``) to the adapters.

The corpus holds VCR cassettes recorded against the real Anthropic, OpenAI and Gemini APIs
by other projects (see its README). This module reads them, decides which exchanges this
project can express (:func:`unsupported`), serves one recorded response to the official SDK
through an ``httpx2.MockTransport`` (:class:`ReplayTransport`), and computes from the raw
recorded bytes what a faithful client must report (:func:`expected`): the oracle is written
from the wire formats, independently of the adapters' parsing code.

The corpus lives outside the project (development and CI only); :data:`CORPUS` is ``None``
in a user's clone and the replay tests skip.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import yaml

from llm.types import FinishReason, Usage

#: Gemini models that think (2.5 and later).
GEMINI_THINKING = re.compile(r"gemini-(2\.5|[3-9])")
_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATE = _ROOT / ".." / "shared" / "replay-corpus"
#: The corpus folder, or None when it is absent (a user's clone).
CORPUS: Path | None = _CANDIDATE.resolve() if _CANDIDATE.is_dir() else None


@dataclass(frozen=True)
class Exchange:
    """One recorded request and the response the real API sent back."""

    cassette: str
    index: int
    method: str
    url: str
    request_body: Any
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    @property
    def case_id(self) -> str:
        return f"{self.cassette}#{self.index}"

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def operation(self) -> str | None:
        """``anthropic.messages``, ``openai.chat``, ``google.generate``, ``google.stream``,
        or None for endpoints this project never calls."""
        path = self.path
        if self.host == "api.anthropic.com" and path == "/v1/messages":
            return "anthropic.messages"
        if path.endswith("/chat/completions"):
            return "openai.chat"
        if "/models/" in path and path.endswith(":generateContent"):
            return "google.generate"
        if "/models/" in path and path.endswith(":streamGenerateContent"):
            return "google.stream"
        return None

    @property
    def provider(self) -> str | None:
        op = self.operation
        return op.split(".")[0] if op else None

    @property
    def stream(self) -> bool:
        if self.operation == "google.stream":
            return True
        body = self.request_body if isinstance(self.request_body, dict) else {}
        return bool(body.get("stream"))

    @property
    def model(self) -> str:
        if self.provider == "google":
            return self.path.rsplit("/models/", 1)[1].split(":")[0]
        body = self.request_body if isinstance(self.request_body, dict) else {}
        if body.get("model"):
            return str(body["model"])
        try:  # a few recordings kept no request body; the answer names the model
            answer = self.json_body()
        except ValueError:
            return ""
        return str(answer.get("model") or "") if isinstance(answer, dict) else ""

    def json_body(self) -> Any:
        return json.loads(self.body)


def _first(values: Any) -> str:
    if isinstance(values, list):
        return str(values[0]) if values else ""
    return str(values)


def _raw_bytes(container: dict[str, Any], parsed_key: str) -> bytes:
    if parsed_key in container:
        parsed = container[parsed_key]
        return parsed.encode() if isinstance(parsed, str) else json.dumps(parsed).encode()
    body = container.get("body")
    if isinstance(body, dict):
        body = body.get("string")
    if body is None:
        return b""
    raw = body if isinstance(body, bytes) else str(body).encode()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw


def _request_body(request: dict[str, Any]) -> Any:
    if "parsed_body" in request:
        return request["parsed_body"]
    raw = _raw_bytes(request, "parsed_body")
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def load_cassette(path: Path) -> list[Exchange]:
    """The request/response exchanges of one cassette (bodies decompressed)."""
    data = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    exchanges: list[Exchange] = []
    name = str(path.relative_to(CORPUS)) if CORPUS else path.name
    for index, item in enumerate((data or {}).get("interactions") or ()):
        if "request" not in item or "response" not in item:
            continue
        request, response = item["request"], item["response"]
        status = response.get("status")
        code = status.get("code") if isinstance(status, dict) else status
        headers = {
            key.lower(): _first(value)
            for key, value in (response.get("headers") or {}).items()
            if key.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        }
        exchanges.append(
            Exchange(
                cassette=name,
                index=index,
                method=request["method"],
                url=request["uri"],
                request_body=_request_body(request),
                status=int(code),
                headers=headers,
                body=_raw_bytes(response, "parsed_body"),
            )
        )
    return exchanges


def all_exchanges() -> list[Exchange]:
    """Every exchange of the corpus (empty when it is absent)."""
    if CORPUS is None:
        return []
    out: list[Exchange] = []
    for path in sorted(CORPUS.rglob("*.yaml")):
        out.extend(load_cassette(path))
    return out


# --- which exchanges the project can express -------------------------------------------------

_ANTHROPIC_FEATURES = ("mcp_servers", "container", "context_management")
_ANTHROPIC_BLOCKS = ("server_tool_use", "mcp_tool_use", "container_upload", "compaction")
_GOOGLE_SERVER_TOOLS = ("googleSearch", "urlContext", "codeExecution", "fileSearch", "googleMaps")


def _anthropic_unsupported(ex: Exchange) -> str | None:
    body = ex.request_body if isinstance(ex.request_body, dict) else {}
    for name in _ANTHROPIC_FEATURES:
        if name in body:
            return f"request uses {name} (no such feature in ProviderRequest)"
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") not in (None, "custom"):
            return f"server tool {tool.get('type')} (the project sends only custom tools)"
    if ex.status == 200 and any(
        block.get("type") in _ANTHROPIC_BLOCKS or str(block.get("type", "")).endswith("_result")
        for block in _anthropic_blocks(ex)
    ):
        return "answer carries server-tool blocks"
    return None


def _openai_unsupported(ex: Exchange) -> str | None:
    body = ex.request_body if isinstance(ex.request_body, dict) else {}
    if (body.get("n") or 1) > 1:
        return "n > 1 (the project asks for one choice)"
    if "web_search_options" in body:
        return "web search (billed per search; the project sends no web_search_options)"
    if ex.status == 200 and not _looks_like_json_or_sse(ex.body):
        return "the recorded answer is not a Chat Completions body"
    return None


def _google_unsupported(ex: Exchange) -> str | None:
    body = ex.request_body if isinstance(ex.request_body, dict) else {}
    for tool in body.get("tools") or ():
        for name in _GOOGLE_SERVER_TOOLS:
            if isinstance(tool, dict) and name in tool:
                return f"server tool {name} (the project sends only function declarations)"
    return None


def _looks_like_json_or_sse(raw: bytes) -> bool:
    text = raw.lstrip()
    return text[:1] in (b"{", b"[") or text.startswith(b"data:") or text.startswith(b"event:")


def unsupported(ex: Exchange) -> str | None:
    """Why the project cannot express ``ex`` (None when it can)."""
    op = ex.operation
    if op is None:
        return f"endpoint {ex.host}{ex.path} is not one the project calls"
    if ex.provider == "anthropic":
        return _anthropic_unsupported(ex)
    if ex.provider == "openai":
        return _openai_unsupported(ex)
    return _google_unsupported(ex)


# --- the oracle: what the recorded bytes say -------------------------------------------------


@dataclass
class Expected:
    """What a faithful client must report for one recorded answer."""

    text: str = ""
    #: (name, arguments) of each call; ids are compared separately where the wire has them.
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_ids: list[str | None] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    raw_finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    #: True when the exact reasoning count is not on the wire (estimated by the adapter).
    reasoning_estimated: bool = False
    #: Reasoning happened (thinking blocks, thought parts): reasoning_tokens must be > 0.
    reasoning_seen: bool = False
    request_id: str | None = None
    error: str | None = None
    error_message: str | None = None


def sse_events(raw: bytes) -> Iterator[Any]:
    """The JSON ``data:`` payloads of an SSE body (``[DONE]`` and blanks skipped)."""
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(
            line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")
        )
        if data and data != "[DONE]":
            yield json.loads(data)


def _anthropic_blocks(ex: Exchange) -> list[dict[str, Any]]:
    if ex.stream:
        return [
            event["content_block"]
            for event in sse_events(ex.body)
            if event.get("type") == "content_block_start"
        ]
    try:
        return list(ex.json_body().get("content") or ())
    except ValueError:
        return []


ANTHROPIC_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}
OPENAI_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
GOOGLE_FILTERS = {
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
}  # fmt: skip


def _anthropic_usage(raw: dict[str, Any]) -> Usage:
    uncached = raw.get("input_tokens") or 0
    write = raw.get("cache_creation_input_tokens") or 0
    read = raw.get("cache_read_input_tokens") or 0
    details = raw.get("output_tokens_details") or {}
    return Usage(
        input_tokens=uncached + write + read,
        output_tokens=raw.get("output_tokens") or 0,
        cached_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=(raw.get("cache_creation") or {}).get("ephemeral_1h_input_tokens")
        or 0,
        reasoning_tokens=details.get("thinking_tokens") or 0,
    )


def _anthropic_expected(ex: Exchange) -> Expected:
    if ex.stream:
        message: dict[str, Any] = {"content": [], "usage": {}}
        partial: dict[int, list[str]] = {}
        for event in sse_events(ex.body):
            kind = event.get("type")
            if kind == "message_start":
                message.update({k: v for k, v in event["message"].items() if k != "content"})
                message["usage"] = dict(event["message"].get("usage") or {})
            elif kind == "content_block_start":
                message["content"].append(dict(event["content_block"]))
            elif kind == "content_block_delta":
                block, delta = message["content"][-1], event["delta"]
                if delta["type"] == "text_delta":
                    block["text"] = block.get("text", "") + delta["text"]
                elif delta["type"] == "thinking_delta":
                    block["thinking"] = block.get("thinking", "") + delta["thinking"]
                elif delta["type"] == "input_json_delta":
                    partial.setdefault(len(message["content"]) - 1, []).append(
                        delta["partial_json"]
                    )
            elif kind == "message_delta":
                message.update(event.get("delta") or {})
                message["usage"].update(
                    {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
                )
        for index, parts in partial.items():
            joined = "".join(parts)
            message["content"][index]["input"] = json.loads(joined) if joined else {}
    else:
        message = ex.json_body()
    blocks = message.get("content") or []
    thinking = [b for b in blocks if b.get("type") in ("thinking", "redacted_thinking")]
    usage = _anthropic_usage(message.get("usage") or {})
    reported = "thinking_tokens" in (
        (message.get("usage") or {}).get("output_tokens_details") or {}
    )
    stop = message.get("stop_reason")
    calls = [b for b in blocks if b.get("type") == "tool_use"]
    return Expected(
        text="".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
        tool_calls=[(b["name"], b.get("input") or {}) for b in calls],
        tool_ids=[b["id"] for b in calls],
        finish_reason=ANTHROPIC_FINISH.get(stop, "other") if stop else "stop",
        raw_finish_reason=stop,
        usage=usage,
        reasoning_estimated=bool(thinking) and not reported,
        reasoning_seen=bool(thinking),
        request_id=ex.headers.get("request-id"),
    )


def _openai_usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt.get("cached_tokens") or 0,
        cache_write_tokens=prompt.get("cache_write_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def _openai_expected(ex: Exchange) -> Expected:
    text, refusal, finish, usage = "", "", None, None
    calls: dict[int, dict[str, Any]] = {}
    if ex.stream:
        for chunk in sse_events(ex.body):
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta") or {}
                text += delta.get("content") or ""
                refusal += delta.get("refusal") or ""
                for call in delta.get("tool_calls") or ():
                    slot = calls.setdefault(call["index"], {"id": None, "name": "", "args": ""})
                    slot["id"] = call.get("id") or slot["id"]
                    function = call.get("function") or {}
                    slot["name"] += function.get("name") or ""
                    slot["args"] += function.get("arguments") or ""
    else:
        body = ex.json_body()
        choice = (body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        text, refusal = message.get("content") or "", message.get("refusal") or ""
        finish, usage = choice.get("finish_reason"), body.get("usage")
        for index, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            calls[index] = {
                "id": call.get("id"),
                "name": function.get("name") or "",
                "args": function.get("arguments") or "",
            }
    ordered = [calls[i] for i in sorted(calls)]
    mapped: FinishReason
    if finish is None:
        mapped = "tool_calls" if ordered else "stop"
    else:
        mapped = OPENAI_FINISH.get(finish, "other")
    if refusal:
        mapped = "content_filter"
    return Expected(
        text=text,
        tool_calls=[(c["name"], json.loads(c["args"]) if c["args"] else {}) for c in ordered],
        tool_ids=[c["id"] for c in ordered],
        finish_reason=mapped,
        raw_finish_reason=finish,
        usage=_openai_usage(usage),
        request_id=ex.headers.get("x-request-id"),
    )


def google_chunks(raw: bytes) -> list[dict[str, Any]]:
    """A Gemini stream body as its chunks, whether recorded as SSE or as one JSON array."""
    text = raw.lstrip()
    if text.startswith(b"["):
        return list(json.loads(text))
    return list(sse_events(raw))


def _google_usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    thoughts = raw.get("thoughtsTokenCount") or 0
    return Usage(
        input_tokens=raw.get("promptTokenCount") or 0,
        output_tokens=(raw.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=raw.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def _google_expected(ex: Exchange) -> Expected:
    chunks = google_chunks(ex.body) if ex.stream else [ex.json_body()]
    text, thought, finish, usage, blocked = "", False, None, None, None
    calls: list[tuple[str, dict[str, Any]]] = []
    ids: list[str | None] = []
    for chunk in chunks:
        usage = chunk.get("usageMetadata") or usage
        candidates = chunk.get("candidates") or []
        if not candidates:
            blocked = (chunk.get("promptFeedback") or {}).get("blockReason") or blocked
            continue
        candidate = candidates[0]
        finish = candidate.get("finishReason") or finish
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                call = part["functionCall"]
                calls.append((call.get("name") or "", call.get("args") or {}))
                ids.append(call.get("id"))
            elif part.get("text"):
                if part.get("thought"):
                    thought = True
                else:
                    text += part["text"]
    mapped: FinishReason
    if blocked is not None or (not ex.stream and not chunks[0].get("candidates")):
        mapped = "content_filter" if blocked else "other"
        finish = blocked
    elif finish in (None, "STOP"):
        mapped = "tool_calls" if calls else "stop"
    elif finish == "MAX_TOKENS":
        mapped = "length"
    else:
        mapped = "content_filter" if finish in GOOGLE_FILTERS else "other"
    expected_usage = _google_usage(usage)
    return Expected(
        text=text,
        tool_calls=calls,
        tool_ids=ids,
        finish_reason=mapped,
        raw_finish_reason=finish,
        usage=expected_usage,
        reasoning_seen=thought or expected_usage.reasoning_tokens > 0,
        request_id=chunks[-1].get("responseId") if chunks else None,
    )


def _error_expected(ex: Exchange) -> Expected:
    try:
        body = ex.json_body()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    request_id = ex.headers.get("request-id") or ex.headers.get("x-request-id")
    if ex.provider == "anthropic":
        request_id = request_id or body.get("request_id")
    return Expected(
        error=ERROR_BY_STATUS.get(ex.status, "ProviderError"),
        error_message=error.get("message"),
        request_id=request_id,
    )


#: The typed error every provider's status maps to (400 may also be ContextLengthError).
ERROR_BY_STATUS = {
    400: "InvalidRequestError",
    401: "AuthenticationError",
    403: "AuthenticationError",
    404: "ModelNotFoundError",
    422: "InvalidRequestError",
    429: "RateLimitError",
    500: "ProviderError",
    503: "ProviderOverloadedError",
    529: "ProviderOverloadedError",
}


def expected(ex: Exchange) -> Expected:
    """What the recorded answer of ``ex`` says, in the project's neutral terms."""
    if ex.status >= 400:
        return _error_expected(ex)
    if ex.provider == "anthropic":
        return _anthropic_expected(ex)
    if ex.provider == "openai":
        return _openai_expected(ex)
    return _google_expected(ex)


# --- serving a recorded answer to the SDK ----------------------------------------------------


class ReplayTransport:
    """An ``httpx2.MockTransport`` handler answering every call with one recorded response.

    It checks that the SDK called the recorded operation for the recorded model (so the
    answer is the one the real API gave to such a request) and counts the calls: a
    finished answer must be bought once.
    """

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.calls = 0
        self.bodies: list[Any] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        ex = self.exchange
        sent = Exchange(
            cassette="",
            index=0,
            method=request.method,
            url=str(request.url),
            request_body=json.loads(request.content) if request.content else None,
            status=0,
            headers={},
            body=b"",
        )
        self.bodies.append(sent.request_body)
        if ex.provider == "anthropic" and sent.path.endswith("/v1/messages"):
            op = "anthropic.messages"
        else:
            op = sent.operation
        if op != ex.operation:
            return httpx2.Response(599, text=f"replay: expected {ex.operation}, got {op}")
        if ex.model and sent.model != ex.model:
            return httpx2.Response(599, text=f"replay: expected {ex.model}, got {sent.model}")
        body, headers = ex.body, dict(ex.headers)
        if op == "google.stream" and body.lstrip().startswith(b"["):
            body = b"".join(
                b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in json.loads(body)
            )
            headers["content-type"] = "text/event-stream"
        return httpx2.Response(ex.status, headers=headers, content=body)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))
