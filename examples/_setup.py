"""Shared by the examples: fall back to the built-in emulator when keys are missing.

The examples call the real provider APIs when ANTHROPIC_API_KEY, OPENAI_API_KEY and
GOOGLE_API_KEY (or base URLs) are all configured, in the environment or a ``.env`` file.
Otherwise they set ``LLM_OFFLINE=1`` first, so ``LLMService()`` starts the local emulator of
the three provider APIs and every example runs without keys or network.
"""

from __future__ import annotations

import os

from llm.config import PROVIDERS, load_settings


def offline_unless_keys() -> bool:
    """Turn on offline mode unless every provider is configured; True if offline."""
    settings = load_settings()
    configured = all(settings.api_key(p) or settings.base_url(p) for p in PROVIDERS)
    if not configured and not settings.offline:
        os.environ["LLM_OFFLINE"] = "1"
    return not configured or settings.offline
