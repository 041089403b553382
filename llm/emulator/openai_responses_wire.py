"""OpenAI Responses API on the wire: ``POST /v1/responses`` parsing and rendering.

Owns: turning a Responses request body (``input`` string or items, ``instructions``, flat
function tools, ``text.format``, ``reasoning``) into an :class:`EmuRequest`, and rendering
an :class:`EmuResult` as a ``response`` object or as the typed SSE event sequence
(``response.created`` … ``response.completed``/``response.incomplete``, no ``[DONE]``),
per wire-formats.md §2.5. Pure functions, no I/O.

Counting: an assistant turn may arrive as several items (``reasoning``, a ``message`` and
``function_call`` items); consecutive ones are one turn with one ``MESSAGE_OVERHEAD``, as
the same turn would be in Chat Completions. Each ``function_call_output`` is its own turn.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from llm.emulator.openai_common import (
    PromptBuilder,
    arguments_json,
    arguments_object,
    bad_value,
    call_id,
    check_effort,
    event_frame,
    id_suffix,
    image_tokens_from_url,
    invalid,
    missing,
    optional_int,
    require_model,
    service_tier,
    split_fragments,
    text_chunks,
    text_of,
    wrong_type,
)
from llm.emulator.protocol import EmuRequest, EmuResult, EmuTool

_ROLES = ("user", "assistant", "system", "developer")
_ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
_ECHOED = (
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "parallel_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "store",
    "temperature",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
)

Turn = tuple[str, list[dict[str, Any]]]


# --- parsing -------------------------------------------------------------------------------


def parse_responses(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> EmuRequest:
    """A Responses request body as an :class:`EmuRequest` (api ``responses``).

    Raises ``EmuError(kind="invalid_request")`` with OpenAI's wording for malformed bodies.
    """
    model = require_model(body)
    if body.get("previous_response_id"):
        raise invalid(
            f"Previous response with id '{body['previous_response_id']}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    tools = _parse_tools(body.get("tools"))
    builder = PromptBuilder()
    for tool in tools:
        builder.add_tool(tool)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise wrong_type("instructions", "a string", instructions)
        builder.add_turn("system", [{"type": "text", "text": instructions}])
    items = _input_items(body.get("input"))
    last_user_text = ""
    for role, parts in _group_turns(items):
        builder.add_turn(role, parts)
        if role == "user":
            last_user_text = text_of(parts)
    fmt = _text_format(body.get("text"))
    schema = _schema_of(fmt)
    if schema is not None:
        builder.add_schema(schema)
    reasoning = _reasoning(body.get("reasoning"))
    return EmuRequest(
        provider="openai",
        api="responses",
        model=model,
        segments=builder.segments(),
        last_user_text=last_user_text,
        max_tokens=optional_int(body, "max_output_tokens", minimum=16),
        stream=bool(body.get("stream") or False),
        json_schema=schema,
        tools=tools,
        tool_choice=_parse_tool_choice(body.get("tool_choice"), tools),
        after_tool_result=items[-1].get("type") == "function_call_output",
        parallel_tool_calls=body.get("parallel_tool_calls") is not False,
        reasoning_effort=reasoning["effort"],
        include_thoughts=reasoning["summary"] is not None,
        echo=_echo(body, tools, fmt, reasoning),
    )


def _input_items(value: object) -> list[dict[str, Any]]:
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise wrong_type("input", "one of a string or array of objects", value)
    if not value:
        raise invalid(
            "Invalid 'input': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="input",
            code="empty_array",
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise wrong_type(f"input[{index}]", "an object", item)
    return value


def _group_turns(items: list[dict[str, Any]]) -> list[Turn]:
    """Prompt turns from input items; an assistant's consecutive items form one turn."""
    turns: list[Turn] = []
    open_assistant: list[dict[str, Any]] | None = None
    for index, item in enumerate(items):
        where = f"input[{index}]"
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind not in _ITEM_TYPES:
            raise bad_value(f"{where}.type", kind, _ITEM_TYPES)
        if kind == "function_call_output":
            open_assistant = None
            turns.append(("tool", [_tool_result(item, where)]))
            continue
        if kind == "message":
            role, parts = _message(item, where)
            if role != "assistant":
                open_assistant = None
                turns.append((role, parts))
                continue
        else:
            parts = [_function_call(item, where)] if kind == "function_call" else _thinking(item)
        if open_assistant is None or _starts_new_turn(kind, open_assistant):
            open_assistant = []
            turns.append(("assistant", open_assistant))
        open_assistant.extend(parts)
    return turns


def _starts_new_turn(kind: str, current: list[dict[str, Any]]) -> bool:
    """Reasoning opens a turn; a message joins a turn that so far holds only reasoning."""
    only_thinking = all(p["type"] == "thinking" for p in current)
    return kind != "function_call" and not only_thinking


def _message(item: dict[str, Any], where: str) -> Turn:
    role = item.get("role")
    if role is None:
        raise missing(f"{where}.role")
    if role not in _ROLES:
        raise bad_value(f"{where}.role", role, _ROLES)
    content = item.get("content")
    if content is None:
        raise missing(f"{where}.content")
    if isinstance(content, str):
        return role, [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise wrong_type(f"{where}.content", "one of a string or array of objects", content)
    return role, [_content_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]


def _content_part(part: object, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise wrong_type(where, "an object", part)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "refusal"):
        text = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(text, str):
            raise wrong_type(f"{where}.text", "a string", text)
        return {"type": "text", "text": text}
    if kind == "input_image":
        if part.get("image_url") is None:
            raise missing(f"{where}.image_url")
        count, digest = image_tokens_from_url(part["image_url"], f"{where}.image_url")
        return {"type": "image", "digest": digest, "tokens": count}
    allowed = ("input_text", "input_image", "output_text", "refusal")
    raise bad_value(f"{where}.type", kind, allowed)


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    for name in ("call_id", "name", "arguments"):
        if not isinstance(item.get(name), str):
            raise missing(f"{where}.{name}")
    return {
        "type": "tool_call",
        "id": item["call_id"],
        "name": item["name"],
        "arguments": arguments_object(item["arguments"]),
    }


def _tool_result(item: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(item.get("call_id"), str):
        raise missing(f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, list):
        parts = [_content_part(p, f"{where}.output[{i}]") for i, p in enumerate(output)]
        if any(p["type"] != "text" for p in parts):
            raise invalid(
                f"Invalid '{where}.output': the emulator accepts only text tool output.",
                param=f"{where}.output",
                code="invalid_value",
            )
        output = text_of(parts)
    if not isinstance(output, str):
        raise wrong_type(f"{where}.output", "one of a string or array of objects", output)
    return {"type": "tool_result", "tool_call_id": item["call_id"], "text": output}


def _thinking(item: dict[str, Any]) -> list[dict[str, Any]]:
    summary = item.get("summary") or []
    texts = [s.get("text", "") for s in summary if isinstance(s, dict)]
    return [{"type": "thinking", "text": text} for text in texts]


def _parse_tools(tools: object) -> tuple[EmuTool, ...]:
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise wrong_type("tools", "an array", tools)
    parsed = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise wrong_type(f"tools[{index}]", "an object", tool)
        if tool.get("type") != "function":
            raise invalid(
                f"Invalid value: '{tool.get('type')}'. The emulator supports only "
                "'function' tools.",
                param=f"tools[{index}].type",
                code="invalid_value",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise missing(f"tools[{index}].name")
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        parsed.append(EmuTool(name, tool.get("description") or "", parameters))
    return tuple(parsed)


def _parse_tool_choice(choice: object, tools: tuple[EmuTool, ...]) -> str:
    if choice is None or choice == "auto":
        return "auto"
    if choice == "none":
        return "none"
    if choice == "required":
        named = "any"
    elif isinstance(choice, dict) and choice.get("type") == "function":
        if not isinstance(choice.get("name"), str):
            raise missing("tool_choice.name")
        named = choice["name"]
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return "any" if choice.get("mode") == "required" else "auto"
    else:
        raise bad_value("tool_choice", choice, ("none", "auto", "required"))
    if not tools or (named != "any" and named not in {t.name for t in tools}):
        raise invalid(
            f"Tool choice '{named}' not found in 'tools' parameter.",
            param="tool_choice",
            code="invalid_value",
        )
    return named


def _text_format(text: object) -> dict[str, Any]:
    if text is None:
        return {"type": "text"}
    if not isinstance(text, dict):
        raise wrong_type("text", "an object", text)
    fmt = text.get("format") or {"type": "text"}
    if not isinstance(fmt, dict):
        raise wrong_type("text.format", "an object", fmt)
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise bad_value("text.format.type", kind, ("text", "json_object", "json_schema"))
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise missing("text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            raise missing("text.format.schema")
    return fmt


def _schema_of(fmt: dict[str, Any]) -> dict[str, Any] | None:
    if fmt["type"] == "json_schema":
        return fmt["schema"]
    return {"type": "object"} if fmt["type"] == "json_object" else None


def _reasoning(value: object) -> dict[str, Any]:
    if value is None:
        return {"effort": None, "summary": None}
    if not isinstance(value, dict):
        raise wrong_type("reasoning", "an object", value)
    effort = check_effort(value.get("effort"), "reasoning.effort")
    return {"effort": effort, "summary": value.get("summary")}


def _echo(
    body: dict[str, Any], tools: tuple[EmuTool, ...], fmt: dict[str, Any], reasoning: dict
) -> dict[str, Any]:
    echo = {name: body.get(name) for name in _ECHOED}
    echo["tool_choice"] = body.get("tool_choice") or "auto"
    echo["tools"] = [
        {
            "type": "function",
            "name": t.name,
            "description": t.description or None,
            "parameters": t.parameters,
            "strict": _strict_of(body, t.name),
        }
        for t in tools
    ]
    echo["text"] = {"format": fmt, "verbosity": (body.get("text") or {}).get("verbosity")}
    echo["reasoning"] = reasoning
    return echo


def _strict_of(body: dict[str, Any], name: str) -> bool:
    for tool in body.get("tools") or []:
        if tool.get("name") == name:
            return bool(tool.get("strict", True))
    return True


# --- rendering -----------------------------------------------------------------------------


def responses_usage(res: EmuResult) -> dict[str, Any]:
    """The ``usage`` object: input includes cached, output includes reasoning."""
    return {
        "input_tokens": res.input_tokens,
        "input_tokens_details": {
            "cached_tokens": res.cached_tokens,
            "cache_write_tokens": res.cache_write_tokens,
        },
        "output_tokens": res.output_tokens,
        "output_tokens_details": {"reasoning_tokens": res.reasoning_tokens},
        "total_tokens": res.input_tokens + res.output_tokens,
    }


def _status(res: EmuResult) -> str:
    return "incomplete" if res.finish == "length" else "completed"


def _response(
    req: EmuRequest, res: EmuResult, status: str, output: list[dict[str, Any]]
) -> dict[str, Any]:
    echo = req.echo
    now = int(time.time())
    done = status in ("completed", "incomplete")
    return {
        "id": "resp_" + id_suffix(res.request_id),
        "object": "response",
        "created_at": now,
        "status": status,
        "background": False,
        "completed_at": now if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": echo.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "max_tool_calls": echo.get("max_tool_calls"),
        "metadata": echo.get("metadata") or {},
        "model": res.model_version,
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "prompt_cache_key": echo.get("prompt_cache_key"),
        "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": echo.get("safety_identifier"),
        "service_tier": service_tier(echo.get("service_tier")),
        "store": echo.get("store") is not False,
        "temperature": echo.get("temperature") if echo.get("temperature") is not None else 1.0,
        "text": _text_echo(echo),
        "tool_choice": echo.get("tool_choice") or "auto",
        "tools": echo.get("tools") or [],
        "top_logprobs": echo.get("top_logprobs") or 0,
        "top_p": echo.get("top_p") if echo.get("top_p") is not None else 1.0,
        "truncation": echo.get("truncation") or "disabled",
        "usage": responses_usage(res) if done else None,
        "user": echo.get("user"),
    }


def _text_echo(echo: dict[str, Any]) -> dict[str, Any]:
    text = echo.get("text") or {}
    return {
        "format": text.get("format") or {"type": "text"},
        "verbosity": text.get("verbosity") or "medium",
    }


def _output_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _output_items(req: EmuRequest, res: EmuResult) -> list[dict[str, Any]]:
    """The finished output items: reasoning, message, function calls (in that order)."""
    suffix = id_suffix(res.request_id)
    items: list[dict[str, Any]] = []
    if res.reasoning_tokens > 0:
        summary = []
        if req.include_thoughts and res.thinking_text:
            summary = [{"type": "summary_text", "text": res.thinking_text}]
        items.append({"id": "rs_" + suffix, "type": "reasoning", "summary": summary})
    if res.text or not res.tool_calls:
        items.append(
            {
                "id": "msg_" + suffix,
                "type": "message",
                "status": _status(res),
                "role": "assistant",
                "content": [_output_part(res.text)],
            }
        )
    for index, call in enumerate(res.tool_calls):
        items.append(
            {
                "id": f"fc_{index}{suffix}",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id(call.id),
                "name": call.name,
                "arguments": arguments_json(call.arguments),
            }
        )
    return items


def render_responses(req: EmuRequest, res: EmuResult) -> dict[str, Any]:
    """The ``response`` object for a non-streaming request."""
    return _response(req, res, _status(res), _output_items(req, res))


class _Events:
    """Accumulates Responses SSE frames, numbering them with ``sequence_number``."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def emit(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": len(self.frames), **fields}
        self.frames.append(event_frame(kind, payload))


def stream_responses(req: EmuRequest, res: EmuResult) -> list[bytes]:
    """The SSE events of a streamed answer, in order, ending with the final response."""
    events = _Events()
    opening = _response(req, res, "in_progress", [])
    events.emit("response.created", response=opening)
    events.emit("response.in_progress", response=opening)
    final_items = _output_items(req, res)
    for index, item in enumerate(final_items):
        if item["type"] == "message":
            _emit_message(events, index, item, res)
        elif item["type"] == "function_call":
            _emit_function_call(events, index, item)
        else:
            added = {**item, "summary": []}
            events.emit("response.output_item.added", output_index=index, item=added)
            events.emit("response.output_item.done", output_index=index, item=item)
    status = _status(res)
    events.emit(f"response.{status}", response=_response(req, res, status, final_items))
    return events.frames


def _emit_message(events: _Events, index: int, item: dict[str, Any], res: EmuResult) -> None:
    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
    added = {**item, "status": "in_progress", "content": []}
    events.emit("response.output_item.added", output_index=index, item=added)
    events.emit("response.content_part.added", **ids, part=_output_part(""))
    for piece in text_chunks(res):
        events.emit("response.output_text.delta", **ids, delta=piece, logprobs=[])
    events.emit("response.output_text.done", **ids, text=res.text, logprobs=[])
    events.emit("response.content_part.done", **ids, part=_output_part(res.text))
    events.emit("response.output_item.done", output_index=index, item=item)


def _emit_function_call(events: _Events, index: int, item: dict[str, Any]) -> None:
    ids = {"item_id": item["id"], "output_index": index}
    added = {**item, "status": "in_progress", "arguments": ""}
    events.emit("response.output_item.added", output_index=index, item=added)
    for fragment in split_fragments(item["arguments"]):
        events.emit("response.function_call_arguments.delta", **ids, delta=fragment)
    events.emit(
        "response.function_call_arguments.done",
        **ids,
        name=item["name"],
        arguments=item["arguments"],
    )
    events.emit("response.output_item.done", output_index=index, item=item)
