"""The adapter factory: one :class:`ProviderAdapter` per provider name, modules imported lazily.

Importing this module imports no SDK; ``create_adapter("openai", ...)`` imports only the
OpenAI adapter (and so the ``openai`` package).
"""

from __future__ import annotations

import importlib

import httpx2

from llm.config import Settings
from llm.exceptions import ConfigurationError
from llm.providers.base import ProviderAdapter

#: provider -> (module, class) of its adapter.
_ADAPTERS: dict[str, tuple[str, str]] = {
    "anthropic": ("llm.providers.anthropic", "AnthropicAdapter"),
    "openai": ("llm.providers.openai", "OpenAIAdapter"),
    "google": ("llm.providers.google", "GoogleAdapter"),
}


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
