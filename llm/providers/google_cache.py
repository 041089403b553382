"""Explicit Gemini context caches (``cachedContents``) for a large, repeated static prefix.

Gemini caches long prompts implicitly (best effort, nothing to configure). For a large
prefix that is sent again and again, an explicit cache makes the discount certain. This
module owns the policy and the bookkeeping; :mod:`llm.providers.google` owns the SDK calls.

Policy (one :class:`ExplicitCacheManager` per adapter, so per provider actor):

* The prefix is the static part of a request: system instruction, tools and tool config,
  for one model. Its key is a hash of those.
* A request is *eligible* when ``enable_caching`` is on, the model supports caching, and the
  prefix has at least ``max(model.min_cacheable_tokens, min_tokens)`` tokens
  (``min_tokens`` defaults to 4096) by :func:`llm.providers.common.prefix_tokens_through_system`.
* The first sighting of a prefix only records it. The **second** sighting within the TTL
  creates a cache (TTL from ``cache_ttl``: ``5m`` → 300 s, ``1h`` → 3600 s) and uses it; later
  sightings reuse it until shortly before it expires (a safety margin avoids sending a name
  that expires in flight). Expired entries are forgotten and the count starts again.
* A request that uses the cache sends ``cached_content`` and omits ``system_instruction``,
  ``tools`` and ``tool_config``, as the API requires.
* If creation fails, the request goes out unchanged and Gemini's implicit caching applies;
  the failure is logged at debug level by exception type only (no prompt text), and the
  prefix is not tried again for one TTL.

:meth:`ExplicitCacheManager.apply` runs the policy for one request around a ``create``
callback supplied by the adapter (the SDK call), and says what to report.

Billing: cache-creation tokens are billed at the plain input rate and reads at the cache
rate, exactly as ``usageMetadata`` reports them, so usage is passed through unchanged. The
extra cost of an explicit cache is storage: the creating request records
``tokens × ttl hours`` as :meth:`CacheDecision.storage_token_hours` (a Decimal), which the
adapter reports as ``ProviderResult.cache_storage_token_hours`` (a typed field, priced by
:func:`llm.pricing.price_call`).

Concurrency: the manager is used from one event loop. While one request creates a cache
for a prefix, others with the same prefix go out without it rather than creating a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from llm.providers.base import ProviderRequest
from llm.providers.common import prefix_tokens_through_system, split_system

logger = logging.getLogger(__name__)

#: Default smallest prefix worth an explicit cache, in tokens.
DEFAULT_MIN_TOKENS = 4096
#: Stop using a cache this many seconds before it expires.
EXPIRY_MARGIN_S = 15.0
TTL_SECONDS = {"5m": 300, "1h": 3600}
#: Key of the details :meth:`ExplicitCacheManager.apply` returns holding the storage
#: (token-hours) a created cache bills; the adapter moves it to its typed result field.
STORAGE_KEY = "cache_storage_token_hours"


def prefix_key(request: ProviderRequest) -> str:
    """A stable hash of the static prefix: model, system text, tools and tool choice."""
    system, _ = split_system(request.messages)
    payload = {
        "model": request.model.api_id,
        "system": system,
        "tools": [tool.model_dump() for tool in request.tools],
        "tool_choice": request.tool_choice if request.tools else None,
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


@dataclass
class _Entry:
    last_seen: float
    sightings: int = 1
    name: str | None = None
    expires_at: float = 0.0
    creating: bool = False
    #: After a failed creation, do not try again before this time.
    retry_at: float = 0.0


@dataclass(frozen=True)
class CacheDecision:
    """What to do for one request: use ``name``, create a cache, or neither."""

    key: str
    name: str | None = None
    create: bool = False
    ttl_s: int = 0
    prefix_tokens: int = 0

    def storage_token_hours(self, tokens: int) -> Decimal:
        """Storage a new cache of ``tokens`` incurs for its whole TTL, in token-hours."""
        return Decimal(tokens) * Decimal(self.ttl_s) / Decimal(3600)


class ExplicitCacheManager:
    """Tracks prefixes and the explicit caches made for them (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_tokens: int = DEFAULT_MIN_TOKENS,
    ) -> None:
        self._clock = clock
        self.min_tokens = min_tokens
        self._entries: dict[str, _Entry] = {}

    def threshold(self, request: ProviderRequest) -> int:
        """The smallest prefix, in tokens, this request's model gets a cache for."""
        return max(request.model.capabilities.min_cacheable_tokens or 0, self.min_tokens)

    def eligible(self, request: ProviderRequest) -> bool:
        """Caching is on, the model caches, no cache was named, and the prefix is large."""
        if not request.enable_caching or request.cached_content:
            return False
        if not request.model.capabilities.caching:
            return False
        return prefix_tokens_through_system(request) >= self.threshold(request)

    async def apply(
        self,
        request: ProviderRequest,
        create: Callable[[CacheDecision], Awaitable[tuple[str, int | None]]],
    ) -> tuple[ProviderRequest, dict[str, Any]]:
        """The request to send (with ``cached_content`` when a cache applies) and the
        ``provider_details`` to report. ``create`` makes the cache and returns its name and
        token count; if it raises, the request goes out unchanged (implicit caching)."""
        decision = self.decide(request)
        if decision is None or not (decision.create or decision.name):
            return request, {}
        if decision.name is not None:
            used = request.model_copy(update={"cached_content": decision.name})
            return used, {"cached_content": decision.name, "cache_key": decision.key}
        try:
            name, tokens = await create(decision)
        except Exception as exc:  # any failure: fall back to implicit caching
            logger.debug("explicit cache creation failed (%s)", type(exc).__name__)
            self.failed(decision)
            return request, {}
        self.created(decision, name)
        hours = decision.storage_token_hours(tokens or decision.prefix_tokens)
        details = {
            "cached_content": name,
            "cache_key": decision.key,
            "cache_created": True,
            STORAGE_KEY: str(hours),
        }
        return request.model_copy(update={"cached_content": name}), details

    def decide(self, request: ProviderRequest) -> CacheDecision | None:
        """Record a sighting of the request's prefix and say what to do; None if ineligible."""
        if not self.eligible(request):
            return None
        now = self._clock()
        ttl_s = TTL_SECONDS[request.cache_ttl]
        key = prefix_key(request)
        entry = self._entries.get(key)
        if entry is not None and self._stale(entry, now, ttl_s):
            entry = None
        if entry is None:
            self._entries[key] = _Entry(last_seen=now)
            return CacheDecision(key=key)
        entry.last_seen = now
        entry.sightings += 1
        if entry.name is not None:
            return CacheDecision(key=key, name=entry.name)
        if entry.creating or now < entry.retry_at:
            return CacheDecision(key=key)
        entry.creating = True
        tokens = prefix_tokens_through_system(request)
        return CacheDecision(key=key, create=True, ttl_s=ttl_s, prefix_tokens=tokens)

    def _stale(self, entry: _Entry, now: float, ttl_s: int) -> bool:
        if entry.name is not None:
            return now >= entry.expires_at - EXPIRY_MARGIN_S
        return not entry.creating and now - entry.last_seen > ttl_s

    def created(self, decision: CacheDecision, name: str) -> None:
        """Record that the cache for ``decision`` now exists under ``name``."""
        entry = self._entries.setdefault(decision.key, _Entry(last_seen=self._clock()))
        entry.name = name
        entry.creating = False
        entry.expires_at = self._clock() + decision.ttl_s

    def failed(self, decision: CacheDecision) -> None:
        """Creation failed: requests go out uncached; try again after one TTL."""
        entry = self._entries.get(decision.key)
        if entry is not None:
            entry.creating = False
            entry.retry_at = self._clock() + decision.ttl_s

    def invalidate(self, key: str) -> None:
        """Forget the cache for ``key`` (the provider no longer knows it)."""
        self._entries.pop(key, None)

    def live_caches(self) -> dict[str, str]:
        """Prefix key → cache name for every cache not yet past its use-by time."""
        now = self._clock()
        return {
            key: entry.name
            for key, entry in self._entries.items()
            if entry.name is not None and now < entry.expires_at - EXPIRY_MARGIN_S
        }
