"""The emulator's Gemini wire module: generativelanguage API JSON and SSE <-> EmuRequest/EmuResult.

Pure functions, no I/O. The server routes ``/{v1|v1beta}/models/{m}:generateContent``,
``:streamGenerateContent?alt=sse``, ``:countTokens`` and ``/{v}/cachedContents[/{id}]`` here.
Parsing lives in :mod:`llm.emulator.gemini_parse` (re-exported below); this module renders.

Rendering follows the real API's shape: proto3 JSON omits zero counters, tool calls finish
with ``STOP``, thinking models sign their first ``functionCall`` part, streams are bare
``data:`` frames ending in ``\\r\\n\\r\\n`` with no terminator, and errors are
``google.rpc.Status`` bodies without rate-limit headers. A request with no API key at all gets
the API's 403 ``PERMISSION_DENIED`` ("unregistered callers"); a wrong key gets 400
``INVALID_ARGUMENT`` with an ``ErrorInfo`` ``API_KEY_INVALID`` detail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from llm import tokens
from llm.emulator.gemini_parse import (
    DEFAULT_CACHE_TTL_S,
    api_key_from,
    bare_model,
    cache_ttl_from,
    openapi_to_json_schema,
    parse_cached_content,
    parse_count_tokens,
    parse_generate,
)
from llm.emulator.protocol import EmuError, EmuRequest, EmuResult

__all__ = [
    "DEFAULT_CACHE_TTL_S",
    "MISSING_KEY_MESSAGE",
    "api_key_from",
    "cache_ttl_from",
    "limit_headers",
    "missing_key_error",
    "model_not_found_message",
    "openapi_to_json_schema",
    "parse_cached_content",
    "parse_count_tokens",
    "parse_generate",
    "render_cached_content",
    "render_count_tokens",
    "render_error",
    "render_generate",
    "stream_generate",
]

MISSING_KEY_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_INVALID_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
_RATE_LIMIT_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
_THINKING_FAMILY = re.compile(r"gemini-(2\.5|[3-9])")
_TYPE = "type.googleapis.com/google.rpc."


# --------------------------------------------------------------------------- cached contents


def _rfc3339(stamp: datetime) -> str:
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_cached_content(info: dict) -> dict:
    """The ``CachedContent`` resource JSON for create/get/patch/list responses."""
    out: dict[str, Any] = {"name": info["name"], "model": f"models/{bare_model(info['model'])}"}
    if info.get("display_name"):
        out["displayName"] = info["display_name"]
    out["createTime"] = _rfc3339(info["create_time"])
    out["updateTime"] = _rfc3339(info["update_time"])
    out["expireTime"] = _rfc3339(info["expire_time"])
    out["usageMetadata"] = {"totalTokenCount": int(info["total_tokens"])}
    return out


# --------------------------------------------------------------------------- responses


def _usage(req: EmuRequest, res: EmuResult, candidates: int | None = None) -> dict[str, Any]:
    """``usageMetadata``; ``candidates`` overrides the (cumulative) candidate count."""
    thoughts = res.reasoning_tokens
    cand = res.output_tokens - thoughts if candidates is None else candidates
    usage: dict[str, Any] = {"promptTokenCount": res.input_tokens}
    if cand > 0:
        usage["candidatesTokenCount"] = cand
    usage["totalTokenCount"] = res.input_tokens + cand + thoughts
    if res.cached_tokens > 0:
        usage["cachedContentTokenCount"] = res.cached_tokens
    usage["promptTokensDetails"] = _modalities(res.input_tokens, req.echo.get("image_tokens", 0))
    if res.cached_tokens > 0:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": res.cached_tokens}]
    if thoughts > 0:
        usage["thoughtsTokenCount"] = thoughts
    if _legacy(req):  # recorded: 1.x/2.0 itemise the answer; 2.5+ name the service tier
        if cand > 0:
            usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": cand}]
    else:
        usage["serviceTier"] = "standard"
    return usage


def _modalities(total: int, image: int) -> list[dict[str, Any]]:
    image = min(max(image, 0), total)
    details = [{"modality": "TEXT", "tokenCount": total - image}]
    if image:
        details.append({"modality": "IMAGE", "tokenCount": image})
    return details


def _signature(res: EmuResult) -> str:
    digest = hashlib.sha256(f"emu-thought:{res.request_id}".encode()).digest()
    return base64.b64encode(digest * 2).decode("ascii")


def _signs_calls(req: EmuRequest, res: EmuResult) -> bool:
    return res.reasoning_tokens > 0 or bool(_THINKING_FAMILY.match(req.model))


def _call_parts(req: EmuRequest, res: EmuResult) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in res.tool_calls:
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.arguments}}
        if not parts and _signs_calls(req, res):
            part["thoughtSignature"] = _signature(res)
        parts.append(part)
    return parts


def _signed_text(req: EmuRequest, res: EmuResult, text: str, *, signed: bool) -> dict[str, Any]:
    """A text part; after thinking (and without calls, which carry the signature) it bears
    the ``thoughtSignature``, as recorded: on the answer's part, or a stream's last empty one."""
    part: dict[str, Any] = {"text": text}
    if signed and res.reasoning_tokens > 0 and not _legacy(req):
        part["thoughtSignature"] = _signature(res)
    return part


def _thought_parts(req: EmuRequest, res: EmuResult) -> list[dict[str, Any]]:
    if req.include_thoughts and res.thinking_text:
        return [{"text": res.thinking_text, "thought": True}]
    return []


def _finish_reason(res: EmuResult) -> str:
    return "MAX_TOKENS" if res.finish == "length" else "STOP"


def _legacy(req: EmuRequest) -> bool:
    """Gemini 1.x/2.0: candidates carry no ``index``; whole answers carry ``avgLogprobs``."""
    return not _THINKING_FAMILY.match(bare_model(req.model))


def avg_logprobs(text: str) -> float:
    """A deterministic mean log-probability for ``text`` (real values: about -0.02 to -0.6)."""
    fraction = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2**32
    return -round(0.02 + 0.58 * fraction, 6)


def _envelope(
    req: EmuRequest,
    res: EmuResult,
    parts: list[dict[str, Any]],
    usage: dict[str, Any],
    finish: str | None,
    *,
    whole: bool = False,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    if not _legacy(req):
        candidate["index"] = 0
    elif whole:
        candidate["avgLogprobs"] = avg_logprobs(res.text)
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": res.model_version,
        "responseId": res.request_id,
    }


def render_generate(req: EmuRequest, res: EmuResult) -> dict:
    """The non-streaming ``GenerateContentResponse``."""
    parts = _thought_parts(req, res)
    calls = _call_parts(req, res)
    if res.text or not calls:
        parts.append(_signed_text(req, res, res.text, signed=not calls))
    parts += calls
    return _envelope(req, res, parts, _usage(req, res), _finish_reason(res), whole=True)


def _frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\r\n\r\n"


def stream_generate(req: EmuRequest, res: EmuResult) -> list[bytes]:
    """SSE frames for ``streamGenerateContent?alt=sse``: thoughts, text chunks, calls, finish."""
    final = res.output_tokens - res.reasoning_tokens
    frames: list[bytes] = []
    if thought := _thought_parts(req, res):
        frames.append(_frame(_envelope(req, res, thought, _usage(req, res, 0), None)))
    chunks = res.text_chunks or ((res.text,) if res.text else ())
    so_far = ""
    for chunk in chunks:
        so_far += chunk
        cumulative = min(final, tokens.count_text_tokens(so_far))
        usage = _usage(req, res, cumulative)
        frames.append(_frame(_envelope(req, res, [{"text": chunk}], usage, None)))
    if calls := _call_parts(req, res):
        frames.append(_frame(_envelope(req, res, calls, _usage(req, res), None)))
    last = _signed_text(req, res, "", signed=not res.tool_calls)
    end = _envelope(req, res, [last], _usage(req, res), _finish_reason(res))
    frames.append(_frame(end))
    return frames


def render_count_tokens(req: EmuRequest, cached_tokens: int) -> dict:
    """``countTokens`` response; ``totalTokens`` equals generate's ``promptTokenCount``.

    ``cached_tokens`` is the size of the explicit cache the request names (0 if none): it is
    part of the total, as it is of ``promptTokenCount``.
    """
    total = sum(segment.tokens for segment in req.segments) + cached_tokens
    out: dict[str, Any] = {"totalTokens": total}
    if cached_tokens > 0:
        out["cachedContentTokenCount"] = cached_tokens
    out["promptTokensDetails"] = _modalities(total, req.echo.get("image_tokens", 0))
    return out


# --------------------------------------------------------------------------- errors

_STATUS = {
    "invalid_request": (400, "INVALID_ARGUMENT"),
    "authentication": (400, "INVALID_ARGUMENT"),
    "permission": (403, "PERMISSION_DENIED"),
    "not_found": (404, "NOT_FOUND"),
    "context_length": (400, "INVALID_ARGUMENT"),
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "overloaded": (503, "UNAVAILABLE"),
    "server_error": (500, "INTERNAL"),
}


def limit_headers(limits: Mapping[str, Any]) -> dict[str, str]:
    """Rate-limit response headers: none, Gemini reports limits only in 429 bodies."""
    return {}


def missing_key_error() -> EmuError:
    """The error for a request without any API key (rendered as 403 PERMISSION_DENIED)."""
    return EmuError(kind="authentication", message=MISSING_KEY_MESSAGE)


def model_not_found_message(
    model: str, api_version: str = "v1", method: str = "generateContent"
) -> str:
    """The API's wording for an unknown model."""
    return (
        f"models/{bare_model(model)} is not found for API version {api_version}, or is not "
        f"supported for {method}. Call ListModels to see the list of available models and "
        "their supported methods."
    )


def _auth_error(err: EmuError) -> tuple[int, dict]:
    if err.message == MISSING_KEY_MESSAGE or "missing" in err.message.lower():
        return 403, {"code": 403, "message": MISSING_KEY_MESSAGE, "status": "PERMISSION_DENIED"}
    details = [
        {
            "@type": _TYPE + "ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {"@type": _TYPE + "LocalizedMessage", "locale": "en-US", "message": _INVALID_KEY_MESSAGE},
    ]
    body = {"code": 400, "message": _INVALID_KEY_MESSAGE, "status": "INVALID_ARGUMENT"}
    return 400, {**body, "details": details}


def _retry_delay(err: EmuError) -> float:
    return max(0.0, err.retry_after_s if err.retry_after_s is not None else 1.0)


_QUOTAS = {
    "requests": (
        "generate_content_paid_tier_requests",
        "GenerateRequestsPerMinutePerProjectPerModel",
    ),
    "input_tokens": (
        "generate_content_paid_tier_input_token_count",
        "GenerateContentInputTokensPerModelPerMinute",
    ),
    "output_tokens": (
        "generate_content_paid_tier_output_token_count",
        "GenerateContentOutputTokensPerModelPerMinute",
    ),
}


def _exhausted_limit(err: EmuError) -> str:
    """Which per-minute limit ran out, read from the engine's message ("input tokens"…)."""
    text = err.message.lower()
    for name in ("input_tokens", "output_tokens"):
        if name.replace("_", " ") in text:
            return name
    return "requests"


def _violation(err: EmuError, model_name: str | None) -> dict[str, Any]:
    limit = _exhausted_limit(err)
    metric, quota_id = _QUOTAS[limit]
    violation: dict[str, Any] = {
        "quotaMetric": f"generativelanguage.googleapis.com/{metric}",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global"},
    }
    if model_name:
        violation["quotaDimensions"]["model"] = model_name
    if (value := err.limits.get(f"{limit}_limit")) is not None:
        violation["quotaValue"] = str(value)
    return violation


def _rate_limit_error(err: EmuError, model: str | None) -> dict:
    delay = _retry_delay(err)
    model_name = bare_model(model) if model else None
    violation = _violation(err, model_name)
    quota = f"* Quota exceeded for metric: {violation['quotaMetric']}"
    if "quotaValue" in violation:
        quota += f", limit: {violation['quotaValue']}"
    if model_name:
        quota += f", model: {model_name}"
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        f"information on this error, head to: {_RATE_LIMIT_DOCS}.\n{quota}\n"
        f"Please retry in {math.ceil(delay * 10) / 10:.1f}s."
    )
    help_link = {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMIT_DOCS}
    details = [
        {"@type": _TYPE + "Help", "links": [help_link]},
        {"@type": _TYPE + "QuotaFailure", "violations": [violation]},
        {"@type": _TYPE + "RetryInfo", "retryDelay": f"{math.ceil(delay)}s"},
    ]
    return {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}


def _message(err: EmuError, model: str | None, api_version: str, method: str) -> str:
    if err.kind == "context_length" and err.max_tokens is not None:
        used = f" ({err.tokens_used})" if err.tokens_used is not None else ""
        return (
            f"The input token count{used} exceeds the maximum number of tokens allowed "
            f"({err.max_tokens})."
        )
    if err.kind == "not_found" and model and "cachedcontent" not in err.message.lower():
        return model_not_found_message(model, api_version, method)
    if err.kind == "overloaded":
        return "The model is overloaded. Please try again later."
    if err.kind == "server_error":
        return "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
    return err.message


def render_error(
    err: EmuError,
    *,
    model: str | None = None,
    api_version: str = "v1",
    method: str = "generateContent",
) -> tuple[int, dict, dict[str, str]]:
    """(HTTP status, ``google.rpc.Status`` JSON body, headers) for an error.

    Pass ``model`` (and the path's ``api_version``/``method``) to word an unknown-model 404 as
    the API does; otherwise the error's own message is used. Gemini sends no rate-limit headers.
    """
    if err.kind == "authentication":
        status, body = _auth_error(err)
    elif err.kind == "rate_limit":
        status, body = 429, _rate_limit_error(err, model)
    else:
        status, name = _STATUS.get(err.kind, (500, "INTERNAL"))
        body = {
            "code": status,
            "message": _message(err, model, api_version, method),
            "status": name,
        }
    return status, {"error": body}, {}
