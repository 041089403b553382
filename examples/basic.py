"""Basic text generation (product brief: Quick Start).

Run ``python examples/basic.py``. Without API keys the example starts the built-in emulator
(``LLM_OFFLINE=1``, see ``_setup.py``); with all three keys set it calls the real APIs.
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        response = await service.generate(
            model="claude-sonnet-5.5",
            messages=[
                Message(role=MessageRole.SYSTEM, content="You are a helpful assistant"),
                Message(role=MessageRole.USER, content="Explain quantum computing in simple terms"),
            ],
        )

        print(response.text)
        print(f"Cost: ${response.usage.total_tokens * 0.000003:.4f}")
        # The exact cost, from the registry's prices:
        print(f"Exact cost: ${response.cost.total_cost:.6f}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
