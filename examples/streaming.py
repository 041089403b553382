"""Streaming a response (product brief: Streaming Response).

Run ``python examples/streaming.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``).
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        async for chunk in service.generate_stream(
            model="claude-sonnet-5.5",
            messages=[Message(role=MessageRole.USER, content="Write a story about AI")],
        ):
            print(chunk, end="", flush=True)
        print()

        # Keep the stream object to read usage and cost once it is exhausted.
        stream = service.generate_stream(
            model="claude-haiku-5.5",
            messages=[Message(role=MessageRole.USER, content="Write a haiku about AI")],
        )
        async for chunk in stream:
            print(chunk, end="", flush=True)
        print()
        print(
            f"Tokens: {stream.response.usage.total_tokens}, cost: ${stream.response.cost.total_cost:.6f}"
        )
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
