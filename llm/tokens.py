"""A deterministic token counter shared by the emulator and the client-side estimators.

Real tokenizers differ per provider and are not available offline. This one is a stable
approximation (about four characters per token for English, one token per punctuation
mark): the emulator bills with it, and the runtime's rate-limit reservations and the batch
job's ``--dry-run`` estimate with it, so estimates against the emulator are exact and
against real providers are close.

Counting rules, the same for every provider (the emulator's wire modules and the client-side
estimator both follow them, so their counts agree):

* ``REQUEST_OVERHEAD`` once per request;
* each tool: :func:`count_tool_tokens`;
* the system prompt, if any: ``MESSAGE_OVERHEAD`` + its text tokens;
* each message: ``MESSAGE_OVERHEAD`` + its parts: text :func:`count_text_tokens`, image
  :func:`count_image_tokens`, tool call :func:`count_tool_call_tokens`, tool result text
  :func:`count_text_tokens`, echoed thinking text :func:`count_text_tokens`;
* a structured-output schema: :func:`count_schema_tokens` (counted last, never cached).

Images are counted from their pixel size when the PNG/JPEG/GIF/WebP header can be read
(Anthropic's rule, ``width * height / 750``, capped), otherwise from their byte size.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct

_TOKEN_RE = re.compile(r"\w{1,4}|[^\w\s]")

#: Fixed overhead per message (role markers and separators).
MESSAGE_OVERHEAD = 4
#: Fixed overhead per request.
REQUEST_OVERHEAD = 3
#: Bounds for one image.
MIN_IMAGE_TOKENS = 85
MAX_IMAGE_TOKENS = 1600


def tokenize(text: str) -> list[str]:
    """Split text into tokens."""
    return _TOKEN_RE.findall(text)


def count_text_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    return sum(1 for _ in _TOKEN_RE.finditer(text))


def decode_base64(data: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding.

    Raises ``ValueError`` if the text is not base64.
    """
    cleaned = "".join(data.split())
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.b64decode(cleaned, altchars=b"-_", validate=True)
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("image data is not valid base64") from exc


def image_dimensions(raw: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG, GIF, JPEG or WebP header, or None."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) >= 24:
        return struct.unpack(">II", raw[16:24])
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        return struct.unpack("<HH", raw[6:10])
    if raw.startswith(b"RIFF") and raw[8:12] == b"WEBP" and len(raw) >= 30:
        if raw[12:16] == b"VP8X":
            w = int.from_bytes(raw[24:27], "little") + 1
            h = int.from_bytes(raw[27:30], "little") + 1
            return w, h
        return None
    if raw.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(raw):
            if raw[i] != 0xFF:
                return None
            marker = raw[i + 1]
            length = int.from_bytes(raw[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", raw[i + 5 : i + 9])
                return w, h
            i += 2 + length
    return None


def count_image_tokens(data: str) -> int:
    """Tokens for one base64 image. Raises ``ValueError`` for data that is not base64."""
    raw = decode_base64(data)
    dims = image_dimensions(raw)
    if dims is not None:
        width, height = dims
        estimate = (width * height) // 750
    else:
        estimate = len(raw) // 100
    return max(MIN_IMAGE_TOKENS, min(MAX_IMAGE_TOKENS, estimate))


def _compact_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def count_tool_tokens(name: str, description: str, parameters: object) -> int:
    """Tokens for one tool definition (name, description, JSON-schema parameters)."""
    return count_text_tokens(f"{name} {description} {_compact_json(parameters)}")


def count_tool_call_tokens(name: str, arguments: object) -> int:
    """Tokens for one tool call echoed back in an assistant turn."""
    return count_text_tokens(f"{name} {_compact_json(arguments)}")


def count_schema_tokens(schema: object) -> int:
    """Tokens a structured-output JSON schema adds to the prompt."""
    return count_text_tokens(_compact_json(schema))
