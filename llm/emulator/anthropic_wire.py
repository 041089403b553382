"""Anthropic Messages API wire format: request parsing and response/SSE/error rendering.

Pure functions, no I/O (see ``protocol.py``). Accepts both credentials (``x-api-key`` and
``Authorization: Bearer``) and both ``anthropic-version`` values; under ``2026-10-21``
``temperature``/``top_p``/``top_k`` get a 400. Token counts follow :mod:`llm.tokens`, one
:class:`Segment` per tool, system block and content block, in cache order. Responses use
Anthropic's usage convention: ``input_tokens`` excludes cache reads and writes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from llm.emulator.engine_answers import neutral_id
from llm.emulator.protocol import EmuError, EmuRequest, EmuResult, EmuTool, Segment
from llm.tokens import (
    MESSAGE_OVERHEAD,
    MIN_IMAGE_TOKENS,
    REQUEST_OVERHEAD,
    count_image_tokens,
    count_schema_tokens,
    count_text_tokens,
    count_tool_call_tokens,
    count_tool_tokens,
)

STRICT_VERSION = "2026-10-21"
MAX_BREAKPOINTS = 4
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_SAMPLING = ("temperature", "top_p", "top_k")
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERRORS = {
    "authentication": (401, "authentication_error"),
    "permission": (403, "permission_error"),
    "not_found": (404, "not_found_error"),
    "invalid_request": (400, "invalid_request_error"),
    "context_length": (400, "invalid_request_error"),
    "rate_limit": (429, "rate_limit_error"),
    "overloaded": (529, "overloaded_error"),
    "server_error": (500, "api_error"),
}


def _invalid(message: str) -> EmuError:
    return EmuError("invalid_request", message)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def api_key_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key from ``x-api-key`` or ``Authorization: Bearer``."""
    lowered = _lower(headers)
    if lowered.get("x-api-key"):
        return lowered["x-api-key"]
    auth = lowered.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


# --------------------------------------------------------------------------- parsing
def _ttl(block: Any, where: str) -> str | None:
    control = block.get("cache_control") if isinstance(block, dict) else None
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise _invalid(f"{where}.cache_control.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise _invalid(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")
    return ttl


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _block_key(role: str, block: dict[str, Any]) -> str:
    return role + "|" + _compact({k: v for k, v in block.items() if k != "cache_control"})


def _image_tokens(block: dict[str, Any], where: str) -> int:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid(f"{where}.source: Field required")
    if source.get("type") != "base64":
        return MIN_IMAGE_TOKENS
    if source.get("media_type") not in _IMAGE_TYPES:
        raise _invalid(
            f"{where}.source.base64.media_type: Input should be 'image/jpeg', "
            "'image/png', 'image/gif' or 'image/webp'"
        )
    data = source.get("data")
    try:
        if not isinstance(data, str) or not data:
            raise ValueError("empty")
        return count_image_tokens(data)
    except ValueError:
        raise _invalid(f"{where}.source.base64.data: The image data is not valid base64") from None


def _tool_result_tokens(block: dict[str, Any], where: str) -> int:
    content = block.get("content", "")
    if isinstance(content, str):
        return count_text_tokens(content)
    if not isinstance(content, list):
        raise _invalid(f"{where}.content: Input should be a valid string or list")
    total = 0
    for i, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image":
            total += _image_tokens(part, f"{where}.content.{i}")
        elif isinstance(part, dict):
            total += count_text_tokens(str(part.get("text", "")))
    return total


def _block_tokens(block: Any, where: str) -> int:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _invalid(f"{where}: Input should be a valid content block")
    kind = block["type"]
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.text: Field required")
        return count_text_tokens(block["text"])
    if kind == "image":
        return _image_tokens(block, where)
    if kind == "tool_use":
        return count_tool_call_tokens(str(block.get("name", "")), block.get("input", {}))
    if kind == "tool_result":
        return _tool_result_tokens(block, where)
    if kind == "thinking":
        return count_text_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return count_text_tokens(str(block.get("data", "")))
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return count_text_tokens(str(source.get("data", "")))
        return _image_tokens({"source": {**source, "media_type": "image/png"}}, where)
    raise _invalid(f"{where}.type: Input tag '{kind}' found is not supported")


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    raise _invalid(f"{where}.content: Input should be a valid string or list")


def _tools(body: dict[str, Any]) -> tuple[list[Segment], tuple[EmuTool, ...]]:
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise _invalid("tools: Input should be a valid list")
    segments, tools = [], []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _invalid(f"tools.{i}.name: Field required")
        if tool.get("type") not in (None, "custom"):
            continue  # server tools are accepted and never called
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"tools.{i}.custom.input_schema: Field required")
        name, description = tool["name"], str(tool.get("description", ""))
        tools.append(EmuTool(name, description, schema))
        key = "tool|" + _compact({"n": name, "d": description, "s": schema})
        segments.append(
            Segment(key, count_tool_tokens(name, description, schema), _ttl(tool, f"tools.{i}"))
        )
    return segments, tuple(tools)


def _system(body: dict[str, Any]) -> list[Segment]:
    system = body.get("system")
    if system is None or system == "" or system == []:
        return []
    blocks = _content_blocks(system, "system")
    segments = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _invalid(f"system.{i}.type: Input should be 'text'")
        tokens = _block_tokens(block, f"system.{i}") + (MESSAGE_OVERHEAD if i == 0 else 0)
        segments.append(Segment(_block_key("system", block), tokens, _ttl(block, f"system.{i}")))
    return segments


def _messages(body: dict[str, Any]) -> tuple[list[Segment], str, bool]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: at least one message is required")
    segments: list[Segment] = []
    last_user_text, after_tool = "", False
    for m, message in enumerate(messages):
        where = f"messages.{m}"
        if not isinstance(message, dict) or message.get("role") not in (
            "user",
            "assistant",
            "system",
        ):
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        role = message["role"]
        blocks = _content_blocks(message.get("content"), where)
        if not blocks:
            segments.append(Segment(f"{role}|empty", MESSAGE_OVERHEAD))
        for b, block in enumerate(blocks):
            tokens = _block_tokens(block, f"{where}.content.{b}")
            tokens += MESSAGE_OVERHEAD if b == 0 else 0
            ttl = _ttl(block, f"{where}.content.{b}")
            segments.append(Segment(_block_key(role, block), tokens, ttl))
        if role == "user":
            texts = [blk["text"] for blk in blocks if blk.get("type") == "text"]
            last_user_text = "\n".join(texts)
            after_tool = any(blk.get("type") == "tool_result" for blk in blocks)
    return segments, last_user_text, after_tool and messages[-1].get("role") == "user"


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config") or {}
    fmt = config.get("format") if isinstance(config, dict) else None
    where = "output_config.format"
    if fmt is None:
        fmt, where = body.get("output_format"), "output_format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _invalid(f"{where}.type: Input should be 'json_schema'")
    if not isinstance(fmt.get("schema"), dict):
        raise _invalid(f"{where}.schema: Field required")
    return fmt["schema"]


def _tool_choice(body: dict[str, Any]) -> str:
    choice = body.get("tool_choice")
    if choice is None:
        return "auto"
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "any", "none"):
        return kind
    if kind == "tool" and isinstance(choice.get("name"), str):
        return choice["name"]
    raise _invalid("tool_choice: Input should be auto, any, tool or none")


def _parallel(body: dict[str, Any]) -> bool:
    """False when ``tool_choice.disable_parallel_tool_use`` is set."""
    choice = body.get("tool_choice")
    return not (isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True)


def _effort(body: dict[str, Any]) -> str | None:
    """``output_config.effort``, validated as the real API does (a 400 otherwise); whether
    the model takes ``xhigh`` is checked by :mod:`llm.emulator.engine_reasoning`."""
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise _invalid(
            "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
        )
    return str(effort)


def _thinking(body: dict[str, Any], max_tokens: int, tool_choice: str) -> dict[str, Any]:
    thinking = body.get("thinking")
    if thinking is None or (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
        return {}
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        raise _invalid("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    shown = thinking.get("display") != "omitted"
    if thinking["type"] == "adaptive":
        # Adaptive thinking takes any tool choice; a forced one answers with the call
        # and no thinking (as recorded from the real API).
        effort = _effort(body) or "high"
        if tool_choice not in ("auto", "none"):
            return {}
        return {"reasoning_effort": effort, "include_thoughts": shown}
    if tool_choice not in ("auto", "none"):
        raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
        raise _invalid(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        )
    if budget >= max_tokens:
        raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    return {"reasoning_budget": budget, "include_thoughts": shown}


def _check_common(body: Any, headers: Mapping[str, str]) -> None:
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _invalid("model: Field required")
    if _lower(headers).get("anthropic-version") == STRICT_VERSION:
        for name in _SAMPLING:
            if name in body:
                raise _invalid(
                    f"{name}: This parameter is not supported with anthropic-version {STRICT_VERSION}."
                )


def _prompt(body: dict[str, Any]) -> tuple[list[Segment], tuple[EmuTool, ...], str, bool]:
    tool_segments, tools = _tools(body)
    message_segments, last_user_text, after_tool = _messages(body)
    auto_ttl = _ttl(body, "") if "cache_control" in body else None
    if auto_ttl and message_segments and message_segments[-1].cache_ttl is None:
        last = message_segments[-1]
        message_segments[-1] = Segment(last.key, last.tokens, auto_ttl)
    head = [Segment("anthropic|request", REQUEST_OVERHEAD)]
    segments = head + tool_segments + _system(body) + message_segments
    breakpoints = sum(1 for seg in segments if seg.cache_ttl)
    if breakpoints > MAX_BREAKPOINTS:
        raise _invalid(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    return segments, tools, last_user_text, after_tool


def _with_schema(segments: list[Segment], schema: dict[str, Any] | None) -> tuple[Segment, ...]:
    if schema is None:
        return tuple(segments)
    return (*segments, Segment("schema|" + _compact(schema), count_schema_tokens(schema)))


def parse_messages(body: Any, headers: Mapping[str, str]) -> EmuRequest:
    """``POST /v1/messages`` body → :class:`EmuRequest` (raises EmuError invalid_request)."""
    _check_common(body, headers)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise _invalid("max_tokens: Field required")
    segments, tools, last_user_text, after_tool = _prompt(body)
    tool_choice = _tool_choice(body)
    effort = _effort(body)
    schema = _schema(body)
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _invalid("stop_sequences: Input should be a valid list of strings")
    return EmuRequest(
        provider="anthropic",
        api="messages",
        model=body["model"],
        segments=_with_schema(segments, schema),
        last_user_text=last_user_text,
        max_tokens=max_tokens,
        stream=bool(body.get("stream", False)),
        json_schema=schema,
        tools=tools,
        tool_choice=tool_choice,
        after_tool_result=after_tool,
        parallel_tool_calls=_parallel(body),
        stop_sequences=tuple(stops),
        echo={"effort": effort},
        **_thinking(body, max_tokens, tool_choice),
    )


def parse_count_tokens(body: Any, headers: Mapping[str, str]) -> EmuRequest:
    """``POST /v1/messages/count_tokens`` body → :class:`EmuRequest`."""
    _check_common(body, headers)
    segments, tools, last_user_text, after_tool = _prompt(body)
    schema = _schema(body)
    return EmuRequest(
        provider="anthropic",
        api="messages",
        model=body["model"],
        segments=_with_schema(segments, schema),
        last_user_text=last_user_text,
        json_schema=schema,
        tools=tools,
        tool_choice=_tool_choice(body),
        after_tool_result=after_tool,
    )


# ------------------------------------------------------------------------- rendering
def _usage(res: EmuResult, output_tokens: int | None = None) -> dict[str, Any]:
    write_5m = res.cache_write_tokens - res.cache_write_1h_tokens
    usage: dict[str, Any] = {
        "input_tokens": res.input_tokens - res.cached_tokens - res.cache_write_tokens,
        "cache_creation_input_tokens": res.cache_write_tokens,
        "cache_read_input_tokens": res.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m,
            "ephemeral_1h_input_tokens": res.cache_write_1h_tokens,
        },
        "output_tokens": res.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }
    if res.reasoning_tokens and output_tokens is None:
        usage["output_tokens_details"] = {"thinking_tokens": res.reasoning_tokens}
    return usage


def _message_id(res: EmuResult) -> str:
    return "msg_01" + neutral_id(res.request_id, "message", length=22)


def _signature(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b64encode(b"\x12\x0c" + digest * 3).decode()


def _content(res: EmuResult) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if res.thinking_text is not None:
        blocks.append(
            {
                "type": "thinking",
                "thinking": res.thinking_text,
                "signature": _signature(res.thinking_text),
            }
        )
    if res.text or not res.tool_calls:
        blocks.append({"type": "text", "text": res.text})
    for call in res.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": "toolu_" + call.id,
                "name": call.name,
                "input": call.arguments,
            }
        )
    return blocks


def render_message(req: EmuRequest, res: EmuResult) -> dict[str, Any]:
    """The non-streaming ``Message`` JSON."""
    return {
        "id": _message_id(res),
        "type": "message",
        "role": "assistant",
        "model": res.model_version,
        "content": _content(res),
        "stop_reason": _STOP_REASONS.get(res.finish, "end_turn"),
        "stop_sequence": None,
        "stop_details": None,
        "usage": _usage(res),
    }


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _split(text: str, parts: int) -> list[str]:
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _block_frames(index: int, block: dict[str, Any], res: EmuResult) -> list[bytes]:
    kind = block["type"]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _split(block["thinking"], 4)]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "text":
        start = {"type": "text", "text": ""}
        chunks = res.text_chunks or ((block["text"],) if block["text"] else ())
        deltas = [{"type": "text_delta", "text": chunk} for chunk in chunks]
    else:
        start = {**block, "input": {}}
        payload = json.dumps(block["input"], ensure_ascii=False)
        deltas = [{"type": "input_json_delta", "partial_json": ""}]
        deltas += [{"type": "input_json_delta", "partial_json": p} for p in _split(payload, 3)]
    frames = [
        _frame(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
    ]
    if index == 0:
        frames.append(_frame("ping", {"type": "ping"}))
    frames += [
        _frame("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    ]
    frames.append(_frame("content_block_stop", {"type": "content_block_stop", "index": index}))
    return frames


_FINAL_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "output_tokens_details",
)


def stream_message(req: EmuRequest, res: EmuResult) -> list[bytes]:
    """The SSE frames of a streamed message, in order (one frame per list item)."""
    message = render_message(req, res)
    start = {**message, "content": [], "stop_reason": None, "usage": _usage(res, 1)}
    frames = [_frame("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        frames += _block_frames(index, block, res)
    # The real final usage repeats the flat counts only (no ``cache_creation`` breakdown,
    # no ``service_tier``), plus the thinking count when there was thinking.
    delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": message["stop_reason"],
            "stop_sequence": None,
            "stop_details": None,
        },
        "usage": {k: v for k, v in message["usage"].items() if k in _FINAL_USAGE_KEYS},
    }
    frames.append(_frame("message_delta", delta))
    frames.append(_frame("message_stop", {"type": "message_stop"}))
    return frames


def render_count_tokens(req: EmuRequest) -> dict[str, Any]:
    return {"input_tokens": sum(seg.tokens for seg in req.segments)}


def render_error(err: EmuError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, extra headers) for an error."""
    status, kind = _ERRORS.get(err.kind, (500, "api_error"))
    body = {
        "type": "error",
        "error": {"type": kind, "message": err.message},
        "request_id": err.request_id or None,
    }
    headers = dict(limit_headers(err.limits))
    if err.request_id:
        headers["request-id"] = err.request_id
    if status in (429, 529):
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after_s or 1)))
    return status, body, headers


def _rfc3339(seconds_from_now: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def limit_headers(limits: Mapping[str, Any]) -> dict[str, str]:
    """``anthropic-ratelimit-*`` headers for the limits that are on."""
    headers: dict[str, str] = {}
    present = []
    for name, label in (
        ("requests", "requests"),
        ("input_tokens", "input-tokens"),
        ("output_tokens", "output-tokens"),
    ):
        limit = limits.get(f"{name}_limit")
        if limit is None:
            continue
        remaining = limits.get(f"{name}_remaining") or 0
        reset = limits.get(f"{name}_reset_s") or 0.0
        prefix = f"anthropic-ratelimit-{label}"
        headers[f"{prefix}-limit"] = str(limit)
        headers[f"{prefix}-remaining"] = str(remaining)
        headers[f"{prefix}-reset"] = _rfc3339(reset)
        if name != "requests":
            present.append((remaining / limit if limit else 0.0, label))
    if present:
        _, tightest = min(present)
        for part in ("limit", "remaining", "reset"):
            headers[f"anthropic-ratelimit-tokens-{part}"] = headers[
                f"anthropic-ratelimit-{tightest}-{part}"
            ]
    return headers
