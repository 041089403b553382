"""The emulator's OpenAI wire module: the one entry point the server uses for OpenAI.

Owns: API-key extraction (``Authorization: Bearer``), error bodies and status codes,
``x-ratelimit-*`` headers, and (re-exported from :mod:`openai_chat_wire` and
:mod:`openai_responses_wire`) parsing and rendering of Chat Completions and Responses
requests. All functions are pure; the server does the I/O.

Rate-limit headers: OpenAI has one ``tokens`` budget for input and output together, while
the engine keeps separate input and output budgets. ``x-ratelimit-*-tokens`` therefore
reports their sum (limit and remaining) and the later of the two resets; if only one of the
two budgets is set, it reports that one. A ``tokens_*`` key in ``limits`` wins over both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from llm.emulator.openai_chat_wire import parse_chat, render_chat, stream_chat
from llm.emulator.openai_common import OpenAIRequestError
from llm.emulator.openai_responses_wire import parse_responses, render_responses, stream_responses
from llm.emulator.protocol import EmuError

__all__ = [
    "OpenAIRequestError",
    "api_key_from",
    "go_duration",
    "limit_headers",
    "parse_chat",
    "parse_responses",
    "render_chat",
    "render_error",
    "render_responses",
    "stream_chat",
    "stream_responses",
]

_STATUS = {
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "invalid_request": 400,
    "context_length": 400,
    "rate_limit": 429,
    "overloaded": 503,
    "server_error": 500,
}
_MASKED_KEY = "sk-...****"


def api_key_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The bearer token of the ``Authorization`` header, or None (OpenAI ignores the query)."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def render_error(
    err: EmuError, *, api: str = "chat", model: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(HTTP status, JSON body, extra headers) for an emulator error, in OpenAI's form.

    ``api`` ("chat" or "responses") picks the context-length wording; ``model`` (the name
    in the request, if known) goes into the not-found and rate-limit messages.
    """
    status = _STATUS[err.kind]
    error = _error_body(err, api, model)
    headers = limit_headers(err.limits)
    if err.retry_after_s is not None and err.kind in ("rate_limit", "overloaded"):
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after_s)))
        headers["retry-after-ms"] = str(max(0, round(err.retry_after_s * 1000)))
    return status, {"error": error}, headers


def _error_body(err: EmuError, api: str, model: str | None) -> dict[str, Any]:
    kind = err.kind
    if kind == "authentication":
        return _auth_body(err)
    if kind == "not_found":
        message = err.message or "The requested model does not exist."
        if model is not None:
            message = f"The model `{model}` does not exist or you do not have access to it."
        return _body(message, "invalid_request_error", None, "model_not_found")
    if kind == "context_length":
        return _context_body(err, api)
    if kind == "rate_limit":
        return _rate_limit_body(err, model)
    if kind in _DEFAULTS:
        default, type_, code = _DEFAULTS[kind]
        return _body(err.message or default, type_, None, code)
    param = err.param if isinstance(err, OpenAIRequestError) else None
    code = err.code if isinstance(err, OpenAIRequestError) else None
    return _body(err.message, "invalid_request_error", param, code)


_DEFAULTS = {
    "permission": (
        "You are not allowed to sample from this model.",
        "invalid_request_error",
        "permission_denied",
    ),
    "overloaded": (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        "service_unavailable",
    ),
    "server_error": (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        "server_error",
    ),
}


def _auth_body(err: EmuError) -> dict[str, Any]:
    """A missing key keeps the engine's wording; a wrong one is named only masked."""
    if "provide an API key" in err.message:
        return _body(err.message, "invalid_request_error", None, None)
    message = (
        f"Incorrect API key provided: {_MASKED_KEY}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    return _body(message, "invalid_request_error", None, "invalid_api_key")


def _body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"message": message, "type": type_, "param": param, "code": code}


def _context_body(err: EmuError, api: str) -> dict[str, Any]:
    if api == "responses" or err.message.startswith(_RESPONSES_CONTEXT):
        message = _RESPONSES_CONTEXT + " Please adjust your input and try again."
        return _body(message, "invalid_request_error", "input", "context_length_exceeded")
    message = err.message
    if err.max_tokens is not None and err.tokens_used is not None:
        message = (
            f"This model's maximum context length is {err.max_tokens} tokens. However, your "
            f"messages resulted in {err.tokens_used} tokens. Please reduce the length of the "
            "messages."
        )
    return _body(message, "invalid_request_error", "messages", "context_length_exceeded")


_RESPONSES_CONTEXT = "Your input exceeds the context window of this model."


def _rate_limit_body(err: EmuError, model: str | None) -> dict[str, Any]:
    """The engine's message if it gave one, else one composed from the limit values."""
    limits = err.limits
    on_tokens = "token" in err.message.lower() or (
        not _exhausted(limits, "requests")
        and (_exhausted(limits, "input_tokens") or _exhausted(limits, "output_tokens"))
    )
    kind = "tokens" if on_tokens else "requests"
    message = err.message
    if not message:
        what, limit = ("tokens per min (TPM)", _tokens(limits, "limit"))
        if not on_tokens:
            what, limit = ("requests per min (RPM)", limits.get("requests_limit"))
        message = (
            f"Rate limit reached for {model or 'this model'} in organization org-emulator on {what}"
        )
        message += f": Limit {limit}." if limit is not None else "."
        if err.retry_after_s is not None:
            message += f" Please try again in {go_duration(err.retry_after_s)}."
    return _body(message, kind, None, "rate_limit_exceeded")


def _exhausted(limits: dict[str, Any], prefix: str) -> bool:
    remaining = limits.get(f"{prefix}_remaining")
    return remaining is not None and remaining <= 0


def _tokens(limits: dict[str, Any], suffix: str) -> Any:
    """The combined input+output token value for ``limit``, ``remaining`` or ``reset_s``."""
    if limits.get(f"tokens_{suffix}") is not None:
        return limits[f"tokens_{suffix}"]
    values = [limits.get(f"{side}_tokens_{suffix}") for side in ("input", "output")]
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if suffix == "reset_s" else sum(present)


def limit_headers(limits: Mapping[str, Any]) -> dict[str, str]:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the values present."""
    limits = dict(limits)
    values = {
        "limit-requests": limits.get("requests_limit"),
        "remaining-requests": limits.get("requests_remaining"),
        "reset-requests": limits.get("requests_reset_s"),
        "limit-tokens": _tokens(limits, "limit"),
        "remaining-tokens": _tokens(limits, "remaining"),
        "reset-tokens": _tokens(limits, "reset_s"),
    }
    headers = {}
    for name, value in values.items():
        if value is None:
            continue
        if name.startswith("reset"):
            headers[f"x-ratelimit-{name}"] = go_duration(float(value))
        else:
            headers[f"x-ratelimit-{name}"] = str(max(0, int(value)))
    return headers


def go_duration(seconds: float) -> str:
    """A duration the way Go prints it, to the millisecond: "12ms", "1s", "6m0s", "1h0m0s"."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    text = f"{whole}" + (f".{frac:03d}".rstrip("0") if frac else "") + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return text
