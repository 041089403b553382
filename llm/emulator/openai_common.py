"""Pieces shared by the OpenAI Chat Completions and Responses wire modules.

Owns: the OpenAI-flavoured request error (:class:`OpenAIRequestError`, which carries the
``param`` and ``code`` of the error body), the prompt segment builder that applies the
counting rules of :mod:`llm.tokens`, data-URL image parsing, small validators, id helpers
and SSE framing. Everything here is pure (no I/O).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from llm import tokens
from llm.emulator.protocol import EmuError, EmuResult, EmuTool, Segment

_JSON_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}
_DATA_URL_RE = re.compile(r"^data:(?P<mime>[^;,]+);base64,(?P<data>.*)$", re.DOTALL)
_REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class OpenAIRequestError(EmuError):
    """An ``invalid_request`` error with the ``param`` and ``code`` OpenAI puts in the body."""

    param: str | None = None
    code: str | None = None


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> EmuError:
    """A 400 ``invalid_request_error`` in OpenAI's wording."""
    return OpenAIRequestError(kind="invalid_request", message=message, param=param, code=code)


def type_name(value: object) -> str:
    """How OpenAI names the JSON type of ``value`` in its error messages."""
    return _JSON_TYPE_NAMES.get(type(value), "an unknown type")


def wrong_type(param: str, expected: str, value: object) -> EmuError:
    return invalid(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> EmuError:
    return invalid(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def bad_value(param: str, value: object, allowed: tuple[str, ...]) -> EmuError:
    choices = ", ".join(f"'{a}'" for a in allowed[:-1]) + f", and '{allowed[-1]}'"
    return invalid(
        f"Invalid value: '{value}'. Supported values are: {choices}.",
        param=param,
        code="invalid_value",
    )


def require_model(body: dict[str, Any]) -> str:
    """The request's ``model`` (a non-empty string)."""
    if not isinstance(body, dict):
        raise invalid("We could not parse the JSON body of your request.")
    model = body.get("model")
    if model is None or model == "":
        raise invalid("you must provide a model parameter")
    if not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    return model


def optional_int(body: dict[str, Any], name: str, minimum: int = 1) -> int | None:
    """An optional integer field with a lower bound."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(name, "an integer", value)
    if value < minimum:
        raise invalid(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    return value


def check_effort(effort: object, param: str) -> str | None:
    """A reasoning effort word, validated."""
    if effort is None:
        return None
    if effort not in _REASONING_EFFORTS:
        raise bad_value(param, effort, _REASONING_EFFORTS)
    return str(effort)


def image_tokens_from_url(url: object, param: str) -> tuple[int, str]:
    """(tokens, content digest) for an image given as a base64 data URL.

    A plain ``https://`` URL cannot be fetched offline; it is billed at the minimum image
    size. Anything else, or a data URL whose payload is not base64, is a 400.
    """
    if not isinstance(url, str):
        raise wrong_type(param, "a string", url)
    if url.startswith(("http://", "https://")):
        return tokens.MIN_IMAGE_TOKENS, _digest(url)
    match = _DATA_URL_RE.match(url)
    if match is None or not match["mime"].startswith("image/"):
        raise invalid(
            f"Invalid '{param}'. Expected a base64-encoded data URL with an image MIME type "
            "(e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got an invalid value.",
            param=param,
            code="invalid_value",
        )
    try:
        count = tokens.count_image_tokens(match["data"])
    except ValueError:
        raise invalid(
            "You uploaded an unsupported image. Please make sure your image is valid.",
            param=param,
            code="invalid_image_format",
        ) from None
    return count, _digest(match["data"])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_object(arguments: object) -> object:
    """A tool call's ``arguments`` JSON string parsed for counting (left as is if invalid)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def part_tokens(part: dict[str, Any]) -> int:
    """Tokens of one normalised content part (see :class:`PromptBuilder`)."""
    kind = part["type"]
    if kind == "image":
        return int(part["tokens"])
    if kind == "tool_call":
        return tokens.count_tool_call_tokens(part["name"], part["arguments"])
    return tokens.count_text_tokens(part["text"])


class PromptBuilder:
    """Collects prompt segments in cache order, counting them by :mod:`llm.tokens` rules.

    A turn's parts are normalised dicts: ``{"type": "text"|"thinking", "text"}``,
    ``{"type": "image", "digest", "tokens"}``, ``{"type": "tool_call", "id", "name",
    "arguments"}`` and ``{"type": "tool_result", "tool_call_id", "text"}``. A segment's key
    is the role plus the canonical JSON of its parts, so equal content gives equal keys.
    The first segment carries ``REQUEST_OVERHEAD``.
    """

    def __init__(self) -> None:
        self._segments: list[Segment] = [Segment(key="request", tokens=tokens.REQUEST_OVERHEAD)]

    def add_tool(self, tool: EmuTool) -> None:
        key = "tool:" + canonical_json([tool.name, tool.description, tool.parameters])
        count = tokens.count_tool_tokens(tool.name, tool.description, tool.parameters)
        self._segments.append(Segment(key=key, tokens=count))

    def add_turn(self, role: str, parts: list[dict[str, Any]]) -> None:
        key = canonical_json({"role": role, "parts": parts})
        count = tokens.MESSAGE_OVERHEAD + sum(part_tokens(p) for p in parts)
        self._segments.append(Segment(key=key, tokens=count))

    def add_schema(self, schema: dict[str, Any]) -> None:
        key = "schema:" + canonical_json(schema)
        self._segments.append(Segment(key=key, tokens=tokens.count_schema_tokens(schema)))

    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)


def text_of(parts: list[dict[str, Any]]) -> str:
    """The text parts of a turn joined with blank lines (as ``Message.text()`` does)."""
    return "\n\n".join(p["text"] for p in parts if p["type"] == "text")


# --- rendering helpers -------------------------------------------------------------------


def id_suffix(request_id: str) -> str:
    """A stable id body derived from the engine's request id."""
    cleaned = re.sub(r"[^A-Za-z0-9]", "", request_id.removeprefix("req_"))
    return cleaned or hashlib.sha256(request_id.encode()).hexdigest()[:24]


def call_id(tool_call_id: str) -> str:
    """An OpenAI-style ``call_...`` id for an engine tool-call id."""
    if tool_call_id.startswith("call_"):
        return tool_call_id
    body = re.sub(r"[^A-Za-z0-9]", "", tool_call_id.split("_", 1)[-1])
    return "call_" + (body or hashlib.sha256(tool_call_id.encode()).hexdigest()[:24])


def arguments_json(arguments: dict[str, Any]) -> str:
    """Tool-call arguments as the JSON string OpenAI sends."""
    return json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)


def service_tier(requested: object) -> str:
    """The tier a response reports: the one asked for, or "default" for auto/unset."""
    if requested in ("flex", "scale", "priority"):
        return str(requested)
    return "priority" if requested == "fast" else "default"


def fingerprint(model_version: str) -> str:
    return "fp_" + hashlib.sha256(model_version.encode()).hexdigest()[:10]


def text_chunks(res: EmuResult) -> tuple[str, ...]:
    """The streamed pieces of the answer text (the whole text if the engine gave none)."""
    if res.text_chunks:
        return res.text_chunks
    return (res.text,) if res.text else ()


def split_fragments(text: str, size: int = 16) -> list[str]:
    """Fixed-size fragments of a tool call's argument string, for streaming."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def data_frame(payload: object) -> bytes:
    """One ``data:``-only SSE frame."""
    return b"data: " + compact(payload).encode() + b"\n\n"


def event_frame(event: str, payload: object) -> bytes:
    """One SSE frame with an ``event:`` line."""
    return b"event: " + event.encode() + b"\ndata: " + compact(payload).encode() + b"\n\n"
