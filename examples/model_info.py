"""Listing models and reading a model's record (product brief: Model Not Found).

Run ``python examples/model_info.py``. Needs no keys and no network: the answers come from
the model registry.
"""

import asyncio

from llm import LLMService, get_model_info


async def main():
    service = LLMService()
    try:
        # List available models
        models = service.list_available_models()
        print(models)

        # Check if model exists
        info = get_model_info("claude-sonnet-5.5")
        if info:
            print(f"Context window: {info.context_window}")
            print(f"Status: {info.status_on()} (replacement: {info.lifecycle.replacement})")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
