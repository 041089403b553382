"""Which requests go through the prompt-cache gate, under which key, for how long.

A request is *gated* when it asks for caching and its static prefix (tools, then the system
prompt) is at least the model's minimum cacheable length; shorter prefixes are never cached
by the provider, so there is nothing to warm up.

The key identifies the cacheable prefix: a SHA-256 of the provider, the model's API id, the
tool definitions (canonical JSON) and the system text. Two requests with the same key would
read the same provider cache entry. The key holds no prompt text, only its hash.

The gate's TTL is a little under the provider's (``cache_ttl`` "5m" or "1h"), so the gate
never believes a prefix is warm after the provider has dropped it.
"""

from __future__ import annotations

import hashlib
import json

from llm.providers.base import ProviderRequest
from llm.providers.common import prefix_tokens_through_system, split_system

#: Provider cache lifetimes, in seconds, by ``ProviderRequest.cache_ttl``.
PROVIDER_TTL_S = {"5m": 300.0, "1h": 3600.0}
#: Share of the provider TTL the gate trusts a prefix to stay warm.
TTL_SAFETY = 0.9


def is_gated(request: ProviderRequest) -> bool:
    """True if ``request`` asks for caching and its prefix is long enough to be cached."""
    if not request.enable_caching:
        return False
    minimum = request.model.capabilities.min_cacheable_tokens
    if minimum is None:
        return False
    return prefix_tokens_through_system(request) >= minimum


def prefix_key(request: ProviderRequest) -> str:
    """SHA-256 (hex) of provider, model API id, tools and system text."""
    system, _ = split_system(request.messages)
    material = {
        "provider": request.model.provider,
        "model": request.model.api_id,
        "tools": [tool.model_dump(mode="json") for tool in request.tools],
        "system": system,
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def gate_ttl_s(request: ProviderRequest) -> float:
    """How long the gate may treat the prefix as warm after a response started."""
    return PROVIDER_TTL_S[request.cache_ttl] * TTL_SAFETY
