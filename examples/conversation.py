"""A conversation built turn by turn (product brief: Conversation Management).

Run ``python examples/conversation.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``).
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        # Build conversation progressively
        messages = []

        messages.append(Message(role=MessageRole.SYSTEM, content="You are a design system expert"))

        # First turn
        messages.append(Message(role=MessageRole.USER, content="Analyze this design"))
        response1 = await service.generate(model="gemini-3.8-flash", messages=messages)

        # Add assistant response
        messages.append(Message(role=MessageRole.ASSISTANT, content=response1.text))

        # Second turn
        messages.append(Message(role=MessageRole.USER, content="Now extract colors"))
        response2 = await service.generate(
            model="gemini-3.8-flash",
            messages=messages,
            enable_caching=True,  # Cache entire conversation history
        )
        print(response2.text)
        print(f"Turn 2 input tokens: {response2.usage.input_tokens}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
