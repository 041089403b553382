"""Multi-provider LLM layer: one API over Anthropic Claude, Google Gemini and OpenAI.

    from llm import LLMService, Message, MessageRole

Names are imported lazily so ``import llm`` stays cheap (the SDKs load on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "LLMService": "llm.service",
    "RetryConfig": "llm.retry",
    "CostTracker": "llm.cost",
    "get_best_model_for_task": "llm.recommend",
    "get_model_info": "llm.registry",
    "list_available_models": "llm.registry",
    "compute_cost": "llm.pricing",
    "Message": "llm.types",
    "MessageRole": "llm.types",
    "TextContent": "llm.types",
    "ImageContent": "llm.types",
    "ToolCall": "llm.types",
    "ToolResultContent": "llm.types",
    "Usage": "llm.types",
    "Cost": "llm.types",
    "LLMResponse": "llm.types",
    "ModelInfo": "llm.models",
    "Settings": "llm.config",
    "load_settings": "llm.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
