"""Handling a prompt that is too long (product brief: Context Length Errors).

Run ``python examples/context_errors.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``). A prompt clearly over the window is
rejected before it is sent; one just over it is rejected by the provider. Both raise
ContextLengthError with the numbers.
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole
from llm.exceptions import ContextLengthError


async def main():
    offline_unless_keys()
    service = LLMService()
    huge_document = "design token " * 250_000  # about 500K tokens, over a 200K window
    try:
        try:
            response = await service.generate(
                model="claude-haiku-5.5",
                messages=[Message(role=MessageRole.USER, content=huge_document)],
            )
            print(response.text)
        except ContextLengthError as e:
            print(f"Context too long: {e.tokens_used}/{e.max_tokens}")
            # Handle by truncating or splitting into multiple requests
            truncated = huge_document[:2000]
            response = await service.generate(
                model="claude-haiku-5.5",
                messages=[Message(role=MessageRole.USER, content=f"Summarize: {truncated}")],
            )
            print(f"After truncating: {response.usage.input_tokens} input tokens")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
