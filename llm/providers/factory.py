"""The adapter factories: one :class:`ProviderAdapter`, or one batch adapter, per provider name,
modules imported lazily.

Importing this module imports no SDK; ``create_adapter("openai", ...)`` imports only the
OpenAI adapter (and so the ``openai`` package), ``make_batch_adapter("openai", ...)`` only
the OpenAI batch adapter. The per-provider modules do not import this one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import httpx2

from llm.config import Settings
from llm.exceptions import ConfigurationError
from llm.providers.base import ProviderAdapter, ProviderRequest

if TYPE_CHECKING:
    from llm.providers.batch_base import BatchAdapter

#: provider -> (module, class) of its adapter.
_ADAPTERS: dict[str, tuple[str, str]] = {
    "anthropic": ("llm.providers.anthropic", "AnthropicAdapter"),
    "openai": ("llm.providers.openai", "OpenAIAdapter"),
    "google": ("llm.providers.google", "GoogleAdapter"),
}


def output_token_limit(request: ProviderRequest) -> int:
    """The most output tokens the provider may bill for ``request``: the output limit its
    adapter sends (``max_tokens`` plus any reasoning or thinking allowance; each provider
    module's ``output_token_limit``). Imports that provider's adapter module."""
    module_name, _ = _ADAPTERS[request.model.provider]
    limit: int = importlib.import_module(module_name).output_token_limit(request)
    return limit


def create_adapter(
    provider: str,
    settings: Settings,
    *,
    http_client: httpx2.AsyncClient | None = None,
    max_connections: int | None = None,
) -> ProviderAdapter:
    """A new adapter for ``provider``; raises :class:`ConfigurationError` for an unknown name."""
    try:
        module_name, class_name = _ADAPTERS[provider]
    except KeyError:
        known = ", ".join(sorted(_ADAPTERS))
        raise ConfigurationError(f"unknown provider {provider!r} (known: {known})") from None
    adapter_class = getattr(importlib.import_module(module_name), class_name)
    return adapter_class(settings, http_client=http_client, max_connections=max_connections)


def make_batch_adapter(provider: str, settings: Any, **kwargs: Any) -> BatchAdapter:
    """The batch adapter of ``provider`` (``anthropic``, ``openai`` or ``google``); raises
    ``ValueError`` for a provider without a batch API."""
    if provider == "anthropic":
        from llm.providers.anthropic_batch import AnthropicBatchAdapter

        return AnthropicBatchAdapter(settings, **kwargs)
    if provider == "openai":
        from llm.providers.openai_batch import OpenAIBatchAdapter

        return OpenAIBatchAdapter(settings, **kwargs)
    if provider == "google":
        from llm.providers.google_batch import GoogleBatchAdapter

        return GoogleBatchAdapter(settings, **kwargs)
    raise ValueError(f"no batch API for provider {provider!r}")
