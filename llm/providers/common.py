"""Helpers shared by the provider adapters: prompt-token estimates, system-prompt splitting,
tool-argument parsing and inline-image checks.

Token estimates follow the counting rules of :mod:`llm.tokens` (the emulator's wire modules
follow the same rules, so against the emulator the estimate equals its count):
``REQUEST_OVERHEAD`` once, each tool, the system prompt as one message, each other message
as ``MESSAGE_OVERHEAD`` plus its parts, and the structured-output schema last.

The estimate counts the caller's messages as given. A provider that merges consecutive
same-role turns on the wire (Anthropic, Gemini) sees fewer messages, so for such requests the
estimate can be ``MESSAGE_OVERHEAD`` per merge above the provider's own count; callers use
it for reservations, where erring high is safe.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llm.exceptions import InvalidRequestError, LLMError
from llm.models import ModelInfo
from llm.providers.base import ProviderRequest
from llm.tokens import (
    MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    count_image_tokens,
    count_schema_tokens,
    count_text_tokens,
    count_tool_call_tokens,
    count_tool_tokens,
    decode_base64,
)
from llm.types import ImageContent, Message, MessageRole, TextContent, ToolResultContent

#: Media types every provider accepts for inline images.
SUPPORTED_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: Largest decoded image we send.
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def split_system(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """All SYSTEM messages' text joined with blank lines (None if none), and the rest in order."""
    system_texts: list[str] = []
    others: list[Message] = []
    for message in messages:
        if message.role == MessageRole.SYSTEM:
            system_texts.append(message.text())
        else:
            others.append(message)
    if not system_texts:
        return None, others
    return "\n\n".join(system_texts), others


def parse_json_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """Tool-call arguments as a dict: JSON text is parsed, a dict passes through.

    Text that is not a JSON object is kept as ``{"_raw": raw}`` so nothing is lost.
    """
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_raw": raw}


def _part_tokens(part: TextContent | ImageContent | ToolResultContent) -> int:
    if isinstance(part, TextContent):
        return count_text_tokens(part.text)
    if isinstance(part, ImageContent):
        try:
            return count_image_tokens(part.data)
        except ValueError:
            return 0
    return count_text_tokens(part.content)


def message_tokens(message: Message) -> int:
    """Tokens of one non-system message: overhead, parts and echoed tool calls."""
    total = MESSAGE_OVERHEAD + sum(_part_tokens(part) for part in message.parts())
    for call in message.tool_calls:
        total += count_tool_call_tokens(call.name, call.arguments)
    return total


def tool_tokens(request: ProviderRequest) -> int:
    """Tokens of the request's tool definitions."""
    return sum(
        count_tool_tokens(tool.name, tool.description, tool.parameters) for tool in request.tools
    )


def prefix_tokens_through_system(request: ProviderRequest) -> int:
    """Tokens of the static prefix (tools, then the system prompt) that prompt caching reuses."""
    total = tool_tokens(request)
    system, _ = split_system(request.messages)
    if system is not None:
        total += MESSAGE_OVERHEAD + count_text_tokens(system)
    return total


def estimate_prompt_tokens(request: ProviderRequest) -> int:
    """Prompt tokens of ``request`` by the counting rules of :mod:`llm.tokens`."""
    total = REQUEST_OVERHEAD + prefix_tokens_through_system(request)
    _, messages = split_system(request.messages)
    total += sum(message_tokens(message) for message in messages)
    if request.structured_output_schema is not None:
        total += count_schema_tokens(request.structured_output_schema)
    return total


def _decoded_image(image: ImageContent) -> bytes:
    try:
        return decode_base64(image.data)
    except ValueError:
        raise InvalidRequestError("image data is not valid base64") from None


def validate_image(image: ImageContent) -> None:
    """Raise :class:`InvalidRequestError` for bad base64, an unsupported type, > 20 MB, or
    bytes that are not an image of the declared type (checked by their magic bytes)."""
    if image.media_type not in SUPPORTED_IMAGE_TYPES:
        allowed = ", ".join(sorted(SUPPORTED_IMAGE_TYPES))
        raise InvalidRequestError(
            f"unsupported image media type {image.media_type!r} (use one of {allowed})"
        )
    raw = _decoded_image(image)
    if len(raw) > MAX_IMAGE_BYTES:
        raise InvalidRequestError(
            f"image is {len(raw)} bytes decoded; the limit is {MAX_IMAGE_BYTES} bytes"
        )
    actual = sniff_image_type(raw)
    if actual is None:
        raise InvalidRequestError("image data is not a PNG, JPEG, GIF or WebP image")
    if actual != image.media_type:
        raise InvalidRequestError(f"image data is {actual} but media_type says {image.media_type}")


def sniff_image_type(raw: bytes) -> str | None:
    """The MIME type told by the file's magic bytes (PNG, JPEG, GIF, WebP), or None."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if raw[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if raw.startswith(b"RIFF") and raw[8:12] == b"WEBP":
        return "image/webp"
    return None


def standard_base64(image: ImageContent) -> str:
    """The image bytes re-encoded in the standard base64 alphabet, padded."""
    return base64.b64encode(_decoded_image(image)).decode("ascii")


def image_data_url(image: ImageContent) -> str:
    """``data:<mime>;base64,<standard base64>`` (URL-safe input is converted)."""
    return f"data:{image.media_type};base64,{standard_base64(image)}"


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]`` (SDK objects and plain dicts alike); None-safe."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header value, or None when absent or not an integer."""
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def seconds_until(timestamp: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` to an RFC 3339 ``timestamp`` (0.0 if past; None if unreadable)."""
    if not timestamp:
        return None
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def redact_secret(error: LLMError, secret: str | None) -> LLMError:
    """``error`` with every occurrence of ``secret`` in its message replaced by ``***``."""
    if secret and secret in error.message:
        error.message = error.message.replace(secret, "***")
        error.args = (error.message,)
    return error


_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk)-[\w\-*.]{4,}|\bAIza[\w\-]{4,}")
_MAX_MESSAGE = 500


def scrub_message(message: str | None) -> str:
    """A provider error message safe to show: key-like strings masked, length bounded."""
    text = _KEY_LIKE.sub("[redacted]", message or "")
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def output_limit(model: ModelInfo, max_tokens: int, reasoning_allowance: int) -> int:
    """The provider's output limit for an answer of ``max_tokens`` on a model whose reasoning
    counts against that limit (Gemini ``maxOutputTokens``, OpenAI ``max_completion_tokens``):
    ``max_tokens`` plus the tokens set aside for reasoning, capped at the model's output limit
    and never below ``max_tokens``. Without it a thinking model can spend the whole limit on
    thoughts and answer with nothing (``finish_reason="length"``)."""
    return max(max_tokens, min(max_tokens + reasoning_allowance, model.max_output_tokens))
