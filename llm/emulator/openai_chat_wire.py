"""OpenAI Chat Completions on the wire: ``POST /v1/chat/completions`` parsing and rendering.

Owns: turning a Chat Completions request body into an :class:`EmuRequest` (segments counted
by :mod:`llm.tokens` rules, in prompt order) and rendering an :class:`EmuResult` as a
``chat.completion`` object or as the ``chat.completion.chunk`` SSE frames ending in
``data: [DONE]`` (wire-formats.md §2.2-2.4). Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from llm import tokens
from llm.emulator.openai_common import (
    PromptBuilder,
    arguments_json,
    arguments_object,
    bad_value,
    call_id,
    check_effort,
    data_frame,
    fingerprint,
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

_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


# --- parsing -------------------------------------------------------------------------------


def parse_chat(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> EmuRequest:
    """A Chat Completions request body as an :class:`EmuRequest` (api ``chat``).

    Raises ``EmuError(kind="invalid_request")`` with OpenAI's wording for malformed bodies.
    """
    model = require_model(body)
    messages = _require_messages(body)
    tools = _parse_tools(body.get("tools"))
    builder = PromptBuilder()
    for tool in tools:
        builder.add_tool(tool)
    last_user_text = ""
    for index, message in enumerate(messages):
        role, parts = _parse_message(message, f"messages[{index}]")
        builder.add_turn(role, parts)
        if role == "user":
            last_user_text = text_of(parts)
    schema = _parse_response_format(body.get("response_format"))
    if schema is not None:
        builder.add_schema(schema)
    stream, include_usage = _parse_stream(body)
    return EmuRequest(
        provider="openai",
        api="chat",
        model=model,
        segments=builder.segments(),
        last_user_text=last_user_text,
        max_tokens=optional_int(body, "max_completion_tokens") or optional_int(body, "max_tokens"),
        stream=stream,
        json_schema=schema,
        tools=tools,
        tool_choice=_parse_tool_choice(body.get("tool_choice"), tools),
        after_tool_result=messages[-1].get("role") in ("tool", "function"),
        parallel_tool_calls=body.get("parallel_tool_calls") is not False,
        reasoning_effort=check_effort(body.get("reasoning_effort"), "reasoning_effort"),
        stop_sequences=_parse_stop(body.get("stop")),
        echo={
            "include_usage": include_usage,
            "service_tier": body.get("service_tier"),
            "instruction_role": _instruction_role(messages),
        },
    )


def _require_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array", messages)
    if not messages:
        raise invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise wrong_type(f"messages[{index}]", "an object", message)
    return messages


def _instruction_role(messages: list[dict[str, Any]]) -> tuple[int, str] | None:
    """(index, role) of the first ``system``/``developer`` message (some models refuse them)."""
    for index, message in enumerate(messages):
        if message.get("role") in ("system", "developer"):
            return index, str(message["role"])
    return None


def _parse_message(message: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    role = message.get("role")
    if role is None:
        raise missing(f"{where}.role")
    if role not in _ROLES:
        raise bad_value(f"{where}.role", role, _ROLES)
    content = message.get("content")
    if content is None and role != "assistant":
        raise missing(f"{where}.content")
    if role in ("tool", "function"):
        text = _joined_text(content, f"{where}.content")
        tool_call_id = message.get("tool_call_id") or message.get("name") or ""
        return role, [{"type": "tool_result", "tool_call_id": tool_call_id, "text": text}]
    parts = _content_parts(content, f"{where}.content", allow_images=role == "user")
    if role == "assistant":
        parts += _assistant_tool_calls(message.get("tool_calls"), f"{where}.tool_calls")
    return role, parts


def _content_parts(content: object, where: str, *, allow_images: bool) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise wrong_type(where, "one of a string or array of objects", content)
    return [_content_part(part, f"{where}[{i}]", allow_images) for i, part in enumerate(content)]


def _content_part(part: object, where: str, allow_images: bool) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise wrong_type(where, "an object", part)
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise wrong_type(f"{where}.{kind}", "a string", text)
        return {"type": "text", "text": text}
    if kind == "image_url" and allow_images:
        image = part.get("image_url")
        if not isinstance(image, dict):
            raise wrong_type(f"{where}.image_url", "an object", image)
        count, digest = image_tokens_from_url(image.get("url"), f"{where}.image_url.url")
        return {"type": "image", "digest": digest, "tokens": count}
    if kind == "file" and allow_images:
        return _file_part(part.get("file"), f"{where}.file")
    if kind == "input_audio" and allow_images:
        return _audio_part(part.get("input_audio"), f"{where}.input_audio")
    allowed = ("text", "image_url", "input_audio", "file") if allow_images else ("text", "refusal")
    raise bad_value(f"{where}.type", kind, allowed)


def _decoded(data: str, param: str, what: str) -> bytes:
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        raise invalid(
            f"Invalid '{param}': the {what} is not valid base64.", param=param, code="invalid_value"
        ) from None


def _audio_part(audio: object, where: str) -> dict[str, Any]:
    """An ``input_audio`` part, accepted as the real API does; billed one token per 1,000
    decoded bytes (a rough stand-in for the provider's audio tokens)."""
    if not isinstance(audio, dict):
        raise wrong_type(where, "an object", audio)
    data = audio.get("data")
    if not isinstance(data, str):
        raise missing(f"{where}.data")
    raw = _decoded(data, f"{where}.data", "audio data")
    return {
        "type": "image",
        "digest": hashlib.sha256(raw).hexdigest(),
        "tokens": 1 + len(raw) // 1000,
    }


def _file_part(file: object, where: str) -> dict[str, Any]:
    """A ``file`` part (a PDF or other document, inline or by id), accepted as the real API
    does. Billed as one token per four decoded bytes (at least an image's minimum): a rough
    stand-in, since the real count depends on the document's text and pages."""
    if not isinstance(file, dict):
        raise wrong_type(where, "an object", file)
    file_id = file.get("file_id")
    if isinstance(file_id, str) and file_id:
        digest = hashlib.sha256(file_id.encode()).hexdigest()
        return {"type": "image", "digest": digest, "tokens": tokens.MIN_IMAGE_TOKENS}
    data = file.get("file_data")
    if not isinstance(data, str):
        raise missing(f"{where}.file_data")
    raw = _decoded(data, f"{where}.file_data", "file data")
    size = max(tokens.MIN_IMAGE_TOKENS, len(raw) // 4)
    return {"type": "image", "digest": hashlib.sha256(raw).hexdigest(), "tokens": size}


def _joined_text(content: object, where: str) -> str:
    parts = _content_parts(content, where, allow_images=False)
    return "\n\n".join(p["text"] for p in parts)


def _assistant_tool_calls(calls: object, where: str) -> list[dict[str, Any]]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise wrong_type(where, "an array", calls)
    parts = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise missing(f"{where}[{index}].function.name")
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id", ""),
                "name": function["name"],
                "arguments": arguments_object(function.get("arguments", "{}")),
            }
        )
    return parts


def _parse_tools(tools: object) -> tuple[EmuTool, ...]:
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise wrong_type("tools", "an array", tools)
    parsed = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise wrong_type(f"tools[{index}]", "an object", tool)
        if tool.get("type", "function") != "function":
            raise bad_value(f"tools[{index}].type", tool.get("type"), ("function",))
        function = tool.get("function")
        if not isinstance(function, dict):
            raise missing(f"tools[{index}].function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise missing(f"tools[{index}].function.name")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        parsed.append(EmuTool(name, function.get("description") or "", parameters))
    return tuple(parsed)


def _parse_tool_choice(choice: object, tools: tuple[EmuTool, ...]) -> str:
    if choice is None or choice == "auto":
        return "auto"
    if choice == "none":
        return "none"
    if choice == "required":
        named = "any"
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise missing("tool_choice.function.name")
        named = function["name"]
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        mode = (choice.get("allowed_tools") or {}).get("mode", "auto")
        return "any" if mode == "required" else "auto"
    else:
        raise bad_value("tool_choice", choice, ("none", "auto", "required"))
    return _check_forced(named, tools)


def _check_forced(named: str, tools: tuple[EmuTool, ...]) -> str:
    if not tools:
        raise invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
        )
    if named != "any" and named not in {t.name for t in tools}:
        raise invalid(
            f"Invalid value for 'tool_choice': tool '{named}' is not in 'tools'.",
            param="tool_choice",
            code="invalid_value",
        )
    return named


def _parse_response_format(fmt: object) -> dict[str, Any] | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise wrong_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise bad_value("response_format.type", kind, ("text", "json_object", "json_schema"))
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise missing("response_format.json_schema")
    if not isinstance(spec.get("name"), str):
        raise missing("response_format.json_schema.name")
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise wrong_type("response_format.json_schema.schema", "an object", schema)
    return schema


def _parse_stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = bool(body.get("stream") or False)
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    if not isinstance(options, dict):
        raise wrong_type("stream_options", "an object", options)
    return stream, bool(options.get("include_usage"))


def _parse_stop(stop: object) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise wrong_type("stop", "one of a string or array of strings", stop)
    if len(stop) > 4:
        raise invalid(
            "Invalid 'stop': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    return tuple(stop)


# --- rendering -----------------------------------------------------------------------------


def chat_usage(res: EmuResult) -> dict[str, Any]:
    """The ``usage`` object: prompt includes cached, completion includes reasoning."""
    return {
        "prompt_tokens": res.input_tokens,
        "completion_tokens": res.output_tokens,
        "total_tokens": res.input_tokens + res.output_tokens,
        "prompt_tokens_details": {"cached_tokens": res.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": res.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_calls(res: EmuResult) -> list[dict[str, Any]]:
    return [
        {
            "id": call_id(call.id),
            "type": "function",
            "function": {"name": call.name, "arguments": arguments_json(call.arguments)},
        }
        for call in res.tool_calls
    ]


def _envelope(req: EmuRequest, res: EmuResult, obj: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + id_suffix(res.request_id),
        "object": obj,
        "created": int(time.time()),
        "model": res.model_version,
        "service_tier": service_tier(req.echo.get("service_tier")),
        "system_fingerprint": fingerprint(res.model_version),
    }


def render_chat(req: EmuRequest, res: EmuResult) -> dict[str, Any]:
    """The ``chat.completion`` object for a non-streaming request."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": res.text if (res.text or not res.tool_calls) else None,
        "refusal": None,
        "annotations": [],
    }
    if res.tool_calls:
        message["tool_calls"] = _tool_calls(res)
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _FINISH.get(res.finish, "stop"),
    }
    return {**_envelope(req, res, "chat.completion"), "choices": [choice], "usage": chat_usage(res)}


def stream_chat(req: EmuRequest, res: EmuResult) -> list[bytes]:
    """The SSE frames of a streamed answer, in order, ending with ``data: [DONE]``."""
    base = _envelope(req, res, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return data_frame({**base, "choices": [choice], "usage": None})

    has_text = bool(res.text) or not res.tool_calls
    frames = [chunk({"role": "assistant", "content": "" if has_text else None, "refusal": None})]
    frames += [chunk({"content": piece}) for piece in text_chunks(res)]
    for index, call in enumerate(_tool_calls(res)):
        function = call["function"]
        head = {**call, "index": index, "function": {"name": function["name"], "arguments": ""}}
        frames.append(chunk({"tool_calls": [head]}))
        for fragment in split_fragments(function["arguments"]):
            frames.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            )
    frames.append(chunk({}, _FINISH.get(res.finish, "stop")))
    if req.echo.get("include_usage"):
        frames.append(data_frame({**base, "choices": [], "usage": chat_usage(res)}))
    frames.append(b"data: [DONE]\n\n")
    return frames
