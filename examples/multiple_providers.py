"""Different providers for different tasks (product brief: Multiple Providers).

Run ``python examples/multiple_providers.py``. Without API keys the example starts the
built-in emulator (``LLM_OFFLINE=1``, see ``_setup.py``). The brief's o4-mini was retired
on 2026-10-23 (a call to it now fails with ModelRetiredError naming its replacement), so the
reasoning call uses gpt-6.1-sol, a current OpenAI reasoning model.
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole


def ask(text):
    return [Message(role=MessageRole.USER, content=text)]


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        # Use different models for different tasks
        vision_response = await service.generate(
            model="gemini-3.8-flash",  # Best for vision
            messages=ask("Describe the layout of a pricing page"),
        )

        code_response = await service.generate(
            model="claude-sonnet-5.5",  # Best for code
            messages=ask("Write a React pricing card component"),
        )

        reasoning_response = await service.generate(
            model="gpt-6.1-sol",  # Best for reasoning
            messages=ask("Which pricing tier should be highlighted, and why?"),
        )

        for response in (vision_response, code_response, reasoning_response):
            print(f"{response.provider:>9} {response.model}: {response.usage.total_tokens} tokens")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
