"""A reasoning model with a high effort (product brief: Reasoning Models).

Run ``python examples/reasoning.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``). The brief's o4-mini was retired on
2026-10-23 (a call to it fails with ModelRetiredError naming gpt-5.6-terra); this example uses
gpt-6.1-sol, a current OpenAI reasoning model.
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        # Use a reasoning model for complex reasoning tasks
        response = await service.generate(
            model="gpt-6.1-sol",
            messages=[
                Message(
                    role=MessageRole.USER,
                    content="""
                    Analyze this designer's work and extract their taste model:
                    - What principles guide their decisions?
                    - What patterns emerge across projects?
                    - How would they approach a new design?
                """,
                )
            ],
            reasoning_effort="high",  # "low", "medium", or "high"
            max_tokens=8000,
        )

        print(f"Thinking tokens used: {response.usage.reasoning_tokens}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
