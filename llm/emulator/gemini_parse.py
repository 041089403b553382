"""Parsing half of the emulator's Gemini wire module: request JSON -> EmuRequest and segments.

Accepts both proto3-JSON spellings of every field (``inlineData``/``inline_data``,
``thinkingBudget``/``thinking_budget``…), because google-genai sends some nested objects in
snake_case, and both base64 alphabets. Prompt segments follow the counting rules of
:mod:`llm.tokens` in prompt order: the request overhead, tools, the system instruction, each
content, and the response schema last. A ``functionResponse`` counts as the text of its
canonical-JSON ``response`` object; ``fileData`` counts as one image of unknown size.
Segment keys are built from the normalised parts, so camelCase and snake_case spellings (and
both base64 alphabets) of the same content hash equal. Public names are re-exported by
:mod:`llm.emulator.gemini_wire`, which is what the server imports.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from llm import tokens
from llm.emulator.protocol import EmuError, EmuRequest, EmuTool, Segment

DEFAULT_CACHE_TTL_S = 3600.0
_CAMEL_RE = re.compile(r"_([a-z])")
_VALID_ROLES = {"user": "user", "model": "model", "function": "user"}


# --------------------------------------------------------------------------- field access


def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", camel).lower()


def _camel(name: str) -> str:
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


def _get(obj: Mapping[str, Any], camel: str, default: Any = None) -> Any:
    """A proto3-JSON field under its camelCase or snake_case name."""
    if camel in obj:
        return obj[camel]
    return obj.get(_snake(camel), default)


def _invalid(message: str) -> EmuError:
    return EmuError(kind="invalid_request", message=message)


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"Invalid JSON payload received. '{where}' must be an object.")
    return value


def _list(value: Any, where: str) -> list[Any]:
    """A repeated field. Like Google's own JSON parser, one object stands for a list of one
    (recorded: ``"tools": {"function_declarations": [...]}`` is accepted)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise _invalid(f"Invalid JSON payload received. '{where}' must be a list.")
    return value


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def api_key_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The API key from the ``x-goog-api-key`` header or the ``key`` query parameter."""
    for name, value in headers.items():
        if name.lower() == "x-goog-api-key" and value:
            return value
    return query.get("key") or None


def bare_model(model: str) -> str:
    """The model id without its ``models/`` prefix."""
    return model.removeprefix("models/")


# --------------------------------------------------------------------------- schemas

_SCHEMA_DROP = {"nullable", "propertyOrdering"}


def openapi_to_json_schema(schema: Any) -> Any:
    """Convert Gemini's OpenAPI-subset ``Schema`` (``STRING``, ``nullable``…) to JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for raw_key, value in schema.items():
        key = _camel(raw_key)
        if key in _SCHEMA_DROP:
            continue
        if key == "type":
            if isinstance(value, str) and value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: openapi_to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = openapi_to_json_schema(value)
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            out[key] = [openapi_to_json_schema(sub) for sub in value]
        else:
            out[key] = value
    if _get(schema, "nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _response_schema(gen: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """(JSON schema for structured output, whether the request carried a schema)."""
    plain = _get(gen, "responseJsonSchema")
    if plain is not None:
        return _object(plain, "generationConfig.responseJsonSchema"), True
    openapi = _get(gen, "responseSchema")
    if openapi is not None:
        converted = openapi_to_json_schema(_object(openapi, "generationConfig.responseSchema"))
        return converted, True
    if _get(gen, "responseMimeType") == "application/json":
        return {"type": "object"}, False
    return None, False


# --------------------------------------------------------------------------- parts


class _Part:
    """One parsed part: its normalised form (for the segment key) and its token count."""

    __slots__ = ("norm", "tokens", "text", "image_tokens", "is_function_response")

    def __init__(self, norm: dict[str, Any], count: int, text: str = "", image: int = 0) -> None:
        self.norm = norm
        self.tokens = count
        self.text = text
        self.image_tokens = image
        self.is_function_response = "functionResponse" in norm


def _inline_part(blob: dict[str, Any], where: str) -> _Part:
    data = _get(blob, "data", "")
    mime = _get(blob, "mimeType", "")
    if not isinstance(data, str):
        raise _invalid(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES)")
    try:
        raw = tokens.decode_base64(data)
        count = tokens.count_image_tokens(data)
    except ValueError as exc:
        raise _invalid(
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
        ) from exc
    digest = hashlib.sha256(raw).hexdigest()
    return _Part({"inlineData": {"mimeType": mime, "sha256": digest}}, count, image=count)


def _function_call_part(call: dict[str, Any], where: str) -> _Part:
    name = _get(call, "name")
    if not isinstance(name, str) or not name:
        raise _invalid(f"* GenerateContentRequest.{where}.function_call.name: Name is empty.")
    args = _object(_get(call, "args"), f"{where}.function_call.args")
    norm = {"functionCall": {"name": name, "args": args}}
    return _Part(norm, tokens.count_tool_call_tokens(name, args))


def _function_response_part(resp: dict[str, Any], where: str) -> _Part:
    name = _get(resp, "name")
    if not isinstance(name, str) or not name:
        raise _invalid(f"* GenerateContentRequest.{where}.function_response.name: Name is empty.")
    payload = _object(_get(resp, "response"), f"{where}.function_response.response")
    text = _canonical(payload)
    norm = {"functionResponse": {"name": name, "response": payload}}
    return _Part(norm, tokens.count_text_tokens(text))


def _parse_part(part: Any, where: str) -> _Part:
    if not isinstance(part, dict):
        raise _invalid(f"Invalid JSON payload received. '{where}' must be an object.")
    text = _get(part, "text")
    if isinstance(text, str):
        thought = bool(_get(part, "thought", False))
        return _Part({"text": text, "thought": thought}, tokens.count_text_tokens(text), text)
    if (blob := _get(part, "inlineData")) is not None:
        return _inline_part(_object(blob, f"{where}.inlineData"), where)
    if (file := _get(part, "fileData")) is not None:
        file = _object(file, f"{where}.fileData")
        norm = {"fileData": {"uri": _get(file, "fileUri", ""), "mime": _get(file, "mimeType")}}
        return _Part(norm, tokens.MIN_IMAGE_TOKENS, image=tokens.MIN_IMAGE_TOKENS)
    if (call := _get(part, "functionCall")) is not None:
        return _function_call_part(_object(call, f"{where}.functionCall"), where)
    if (resp := _get(part, "functionResponse")) is not None:
        return _function_response_part(_object(resp, f"{where}.functionResponse"), where)
    if (code := _get(part, "executableCode")) is not None:
        source = str(_get(_object(code, where), "code", ""))
        return _Part({"executableCode": source}, tokens.count_text_tokens(source))
    if (result := _get(part, "codeExecutionResult")) is not None:
        output = str(_get(_object(result, where), "output", ""))
        return _Part({"codeExecutionResult": output}, tokens.count_text_tokens(output))
    raise _invalid(
        f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
    )


class _Content:
    __slots__ = ("role", "parts")

    def __init__(self, role: str, parts: list[_Part]) -> None:
        self.role = role
        self.parts = parts

    def segment(self) -> Segment:
        norm = [part.norm for part in self.parts]
        count = tokens.MESSAGE_OVERHEAD + sum(part.tokens for part in self.parts)
        return Segment(key=f"content:{self.role}:{_canonical(norm)}", tokens=count)

    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if p.text and not p.norm.get("thought"))


def _parse_content(content: Any, where: str) -> _Content:
    content = _object(content, where)
    role = _get(content, "role") or "user"
    if role not in _VALID_ROLES:
        raise _invalid("Please use a valid role: user, model.")
    parts = _list(_get(content, "parts"), f"{where}.parts")
    if not parts:
        raise _invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
    parsed = [_parse_part(part, f"{where}.parts[{i}]") for i, part in enumerate(parts)]
    return _Content(_VALID_ROLES[role], parsed)


def _parse_contents(value: Any) -> list[_Content]:
    items = _list(value, "contents")
    return [_parse_content(item, f"contents[{i}]") for i, item in enumerate(items)]


def _system_segment(value: Any) -> Segment | None:
    if value is None:
        return None
    system = _parse_content({**_object(value, "systemInstruction"), "role": "user"}, "system")
    norm = [part.norm for part in system.parts]
    count = tokens.MESSAGE_OVERHEAD + sum(part.tokens for part in system.parts)
    return Segment(key=f"system:{_canonical(norm)}", tokens=count)


# --------------------------------------------------------------------------- tools


def _parse_tools(value: Any) -> tuple[tuple[EmuTool, ...], list[Segment]]:
    emu_tools: list[EmuTool] = []
    segments: list[Segment] = []
    for i, tool in enumerate(_list(value, "tools")):
        decls = _list(_get(_object(tool, f"tools[{i}]"), "functionDeclarations"), "tools")
        for j, decl in enumerate(decls):
            emu_tool = _parse_declaration(_object(decl, f"tools[{i}].functionDeclarations[{j}]"))
            emu_tools.append(emu_tool)
            spec = [emu_tool.name, emu_tool.description, emu_tool.parameters]
            count = tokens.count_tool_tokens(*spec)
            segments.append(Segment(key=f"tool:{_canonical(spec)}", tokens=count))
    return tuple(emu_tools), segments


def _parse_declaration(decl: dict[str, Any]) -> EmuTool:
    name = _get(decl, "name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}", name):
        raise _invalid(
            "* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid function "
            "name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, "
            "0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length "
            "of 128."
        )
    plain = _get(decl, "parametersJsonSchema")
    if plain is not None:
        params = _object(plain, "parametersJsonSchema")
    else:
        params = openapi_to_json_schema(_object(_get(decl, "parameters"), "parameters"))
    return EmuTool(
        name=name, description=str(_get(decl, "description", "") or ""), parameters=params
    )


def _tool_choice(tool_config: Mapping[str, Any]) -> str:
    calling = _object(_get(tool_config, "functionCallingConfig"), "functionCallingConfig")
    mode = str(_get(calling, "mode", "AUTO") or "AUTO").upper()
    if mode == "NONE":
        return "none"
    if mode == "ANY":
        names = _list(_get(calling, "allowedFunctionNames"), "allowedFunctionNames")
        return str(names[0]) if len(names) == 1 else "any"
    return "auto"


# --------------------------------------------------------------------------- requests


def _thinking(gen: Mapping[str, Any], echo: dict[str, Any]) -> dict[str, Any]:
    config = _object(_get(gen, "thinkingConfig"), "generationConfig.thinkingConfig")
    out: dict[str, Any] = {"include_thoughts": bool(_get(config, "includeThoughts", False))}
    budget = _get(config, "thinkingBudget")
    if budget is not None:
        budget = _int_field(budget, "thinking_budget")
        if budget >= 0:  # 0 turns thinking off; -1 (dynamic) leaves the model's default
            out["reasoning_budget"] = budget
        if budget == 0:
            echo["thinking_off"] = True
    level = _get(config, "thinkingLevel")
    if level is not None and (not isinstance(level, str) or level not in _THINKING_LEVELS):
        raise _invalid(
            "Invalid value at 'generation_config.thinking_config.thinking_level' "
            "(type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig."
            f'ThinkingConfig.ThinkingLevel), "{level}"'
        )
    if isinstance(level, str) and level != "THINKING_LEVEL_UNSPECIFIED":
        if budget is not None:
            raise _invalid("You can only set only one of thinking budget and thinking level.")
        out["reasoning_effort"] = level.lower()
    return out


#: The ``ThinkingLevel`` enum (google-genai 3.6.1); protobuf JSON takes the names only.
_THINKING_LEVELS = ("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH")


def _int_field(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _invalid(f"Invalid value at 'generation_config.{name}' (TYPE_INT32)")
    try:
        return int(value)
    except ValueError as exc:
        raise _invalid(f"Invalid value at 'generation_config.{name}' (TYPE_INT32)") from exc


def _max_tokens(gen: Mapping[str, Any]) -> int | None:
    value = _get(gen, "maxOutputTokens")
    if value is None:
        return None
    count = _int_field(value, "max_output_tokens")
    if count < 1:
        raise _invalid("max_output_tokens must be positive.")
    return count


def _check_cached_content(body: Mapping[str, Any]) -> str | None:
    cached = _get(body, "cachedContent")
    if cached is None:
        return None
    if any(_get(body, name) is not None for name in ("systemInstruction", "tools", "toolConfig")):
        raise _invalid(
            "CachedContent can not be used with GenerateContent request setting "
            "system_instruction, tools or tool_config.\n\nProposed fix: move those values to "
            "CachedContent from GenerateContent request."
        )
    return str(cached)


def parse_generate(
    body: dict, model: str, headers: Mapping[str, str], *, stream: bool = False
) -> EmuRequest:
    """Parse a ``generateContent`` body; ``model`` is the path's model (``models/`` optional)."""
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object.")
    contents = _parse_contents(_get(body, "contents"))
    if not contents:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
    cached_content = _check_cached_content(body)
    gen = _object(_get(body, "generationConfig"), "generationConfig")
    tools, tool_segments = _parse_tools(_get(body, "tools"))
    system = _system_segment(_get(body, "systemInstruction"))
    json_schema, schema_sent = _response_schema(gen)
    segments = [Segment(key="request", tokens=tokens.REQUEST_OVERHEAD), *tool_segments]
    segments += [system] if system else []
    segments += [content.segment() for content in contents]
    if schema_sent:
        key = f"schema:{_canonical(json_schema)}"
        segments.append(Segment(key=key, tokens=tokens.count_schema_tokens(json_schema)))
    echo: dict[str, Any] = {"image_tokens": _image_tokens(contents)}
    thinking = _thinking(gen, echo)
    stops = _list(_get(gen, "stopSequences"), "generationConfig.stopSequences")
    return EmuRequest(
        provider="google",
        api="gemini",
        model=bare_model(model),
        segments=tuple(segments),
        last_user_text=_last_user_text(contents),
        max_tokens=_max_tokens(gen),
        stream=stream,
        json_schema=json_schema,
        tools=tools,
        tool_choice=_tool_choice(_object(_get(body, "toolConfig"), "toolConfig")),
        after_tool_result=any(p.is_function_response for p in contents[-1].parts),
        cached_content=cached_content,
        stop_sequences=tuple(str(stop) for stop in stops),
        echo=echo,
        **thinking,
    )


def _image_tokens(contents: list[_Content]) -> int:
    return sum(part.image_tokens for content in contents for part in content.parts)


def _last_user_text(contents: list[_Content]) -> str:
    """Text of the last user content that has text (a pure tool-result turn is skipped)."""
    for content in reversed(contents):
        if content.role == "user" and (text := content.text()):
            return text
    return ""


def parse_count_tokens(body: dict, model: str, headers: Mapping[str, str]) -> EmuRequest:
    """Parse ``countTokens``: ``{"contents": [...]}`` or ``{"generateContentRequest": {...}}``."""
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object.")
    inner = _get(body, "generateContentRequest")
    if inner is not None:
        return parse_generate(_object(inner, "generateContentRequest"), model, headers)
    return parse_generate(body, model, headers)


# --------------------------------------------------------------------------- cached contents


def _parse_duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?s", value.strip()):
        seconds = float(value.strip()[:-1])
    else:
        raise _invalid(
            "Invalid value at 'cached_content.ttl' (type.googleapis.com/google.protobuf.Duration)"
        )
    return seconds


def _parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _invalid(
            "Invalid value at 'cached_content.expire_time' (type.googleapis.com/google.protobuf.Timestamp)"
        )
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _invalid(f"Invalid value at 'cached_content.expire_time': {value!r}") from exc
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def cache_ttl_from(body: Mapping[str, Any], *, now: datetime | None = None) -> float | None:
    """TTL seconds from ``ttl`` ("300s") or ``expireTime`` (RFC 3339), or None if neither."""
    ttl = _get(body, "ttl")
    if ttl is not None:
        seconds = _parse_duration(ttl)
    elif (expire := _get(body, "expireTime")) is not None:
        seconds = (_parse_timestamp(expire) - (now or datetime.now(UTC))).total_seconds()
    else:
        return None
    if seconds <= 0:
        raise _invalid("ttl must be positive and expire_time must be in the future.")
    return seconds


def parse_cached_content(
    body: dict, *, now: datetime | None = None
) -> tuple[str, tuple[Segment, ...], float, str | None]:
    """Parse ``POST cachedContents``: (model without ``models/``, segments, ttl s, display name).

    The segments (tools, system instruction, contents) carry no request overhead: a request
    that uses the cache adds its own.
    """
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object.")
    model = _get(body, "model")
    if not isinstance(model, str) or not model:
        raise _invalid("* CreateCachedContentRequest.cached_content.model: model is required.")
    _tools, segments = _parse_tools(_get(body, "tools"))
    system = _system_segment(_get(body, "systemInstruction"))
    segments += [system] if system else []
    segments += [content.segment() for content in _parse_contents(_get(body, "contents"))]
    if not segments:
        raise _invalid("Cached content must contain contents, a system instruction or tools.")
    ttl = cache_ttl_from(body, now=now)
    display = _get(body, "displayName")
    return bare_model(model), tuple(segments), ttl or DEFAULT_CACHE_TTL_S, display
