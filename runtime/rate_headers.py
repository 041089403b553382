"""What every provider answer says about the account's limits, read as soon as it arrives.

:func:`attach` adds a response hook to an adapter's ``httpx2`` client. The hook runs when an
answer's status line and headers arrive, before its body: for a stream that is its first
byte, for a plain answer the moment it is sent, for a 429 at once. So the account's limits
are learned from the first answer's headers (the calibration probe, see
:mod:`runtime.limiter`) before the rest of a batch goes out, and ``remaining`` is tracked on
every answer, errors included:

* Anthropic (``anthropic-ratelimit-*``) and OpenAI (``x-ratelimit-*``) answers become a
  :class:`~llm.providers.base.RateLimitSnapshot` through the adapter module's own parser and
  are handed to ``on_snapshot``;
* Gemini sends no rate-limit headers; its 429 body names the quota in a
  ``google.rpc.QuotaFailure`` detail (``quotaId`` ``...PerMinute...`` and ``quotaValue``),
  which is read here and handed on as a snapshot with that per-minute limit and nothing
  remaining (its ``RetryInfo`` delay reaches the engine through the mapped
  :class:`~llm.exceptions.RateLimitError`).

Only generation endpoints count (``/messages``, ``/chat/completions``, ``/responses``,
``:generateContent``, ``:streamGenerateContent``): token counting and cache management have
limits of their own. A hook never raises; a header it cannot read is skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from llm.providers.base import RateLimitSnapshot

logger = logging.getLogger("llm")

Parser = Callable[[Mapping[str, str]], RateLimitSnapshot | None]
OnSnapshot = Callable[[RateLimitSnapshot], None]

_GENERATION_PATHS: dict[str, tuple[str, ...]] = {
    "anthropic": ("/messages",),
    "openai": ("/chat/completions", "/responses"),
    "google": (":generateContent", ":streamGenerateContent"),
}
#: Gemini quota ids (``QuotaFailure.violations[].quotaId``) by the limit they name.
_GEMINI_QUOTAS = (("InputTokens", "input_tokens_limit"), ("Requests", "requests_limit"))


def header_parser(provider: str) -> Parser | None:
    """The adapter module's parser of ``provider``'s rate-limit headers (None for Gemini)."""
    if provider == "anthropic":
        from llm.providers.anthropic import parse_rate_limits

        return parse_rate_limits
    if provider == "openai":
        from llm.providers.openai import parse_rate_limit_headers

        return parse_rate_limit_headers
    return None


def is_generation(provider: str, path: str) -> bool:
    """Whether a request path is one of ``provider``'s generation endpoints."""
    path = path.split("?", 1)[0]
    return any(path.endswith(suffix) for suffix in _GENERATION_PATHS.get(provider, ()))


def gemini_quota(body: Any) -> RateLimitSnapshot | None:
    """The per-minute limit a Gemini 429 body names, as a spent snapshot (None if none)."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    found: dict[str, int] = {}
    for item in details or ():
        if not isinstance(item, dict) or not str(item.get("@type", "")).endswith("QuotaFailure"):
            continue
        for violation in item.get("violations") or ():
            quota_id = str(violation.get("quotaId", "")) if isinstance(violation, dict) else ""
            if "PerMinute" not in quota_id:
                continue  # a daily quota is not a rate
            try:
                value = int(float(violation.get("quotaValue")))
            except (TypeError, ValueError):
                continue
            for marker, field in _GEMINI_QUOTAS:
                if marker in quota_id and value > 0:
                    found[field] = value
                    break
    if not found:
        return None
    remaining = {field.replace("_limit", "_remaining"): 0 for field in found}
    return RateLimitSnapshot(**found, **remaining)


def make_hook(provider: str, on_snapshot: OnSnapshot) -> Callable[[Any], Any]:
    """The async response hook that feeds ``on_snapshot`` (see the module docstring)."""
    parser = header_parser(provider)

    async def hook(response: Any) -> None:
        try:
            if not is_generation(provider, response.request.url.path):
                return
            snapshot = parser(response.headers) if parser is not None else None
            if snapshot is None and provider == "google" and response.status_code == 429:
                await response.aread()
                snapshot = gemini_quota(json.loads(response.content or b"{}"))
            if snapshot is not None:
                on_snapshot(snapshot)
        except Exception as error:  # a hook must never break the call
            logger.debug("llm rate-limit headers not read: %s", type(error).__name__)

    return hook


def attach(adapter: Any, provider: str, on_snapshot: OnSnapshot) -> bool:
    """Hook ``adapter``'s HTTP client; False when it has none (a fake adapter)."""
    client = getattr(adapter, "http_client", None)
    hooks = getattr(client, "event_hooks", None)
    if not isinstance(hooks, dict):
        return False
    hooks = {"request": list(hooks.get("request", [])), "response": list(hooks.get("response", []))}
    hooks["response"].append(make_hook(provider, on_snapshot))
    client.event_hooks = hooks
    return True
