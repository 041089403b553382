"""Custom retry configuration (product brief: Custom Retry Configuration, Rate Limits).

Run ``python examples/retry_config.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``). Rate limits (429), overloads (529/503),
5xx answers, timeouts and dropped connections are retried; a server's retry-after hint is
always waited for.
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole, RetryConfig


async def main():
    offline_unless_keys()
    service = LLMService(
        retry_config=RetryConfig(
            max_retries=5,
            initial_delay=2.0,
            max_delay=120.0,
            exponential_base=2.0,
        )
    )
    try:
        response = await service.generate(
            model="claude-haiku-5.5",
            messages=[Message(role=MessageRole.USER, content="Say hello")],
        )
        print(f"{response.text} (attempts: {response.attempts})")
    finally:
        await service.aclose()

    # Troubleshooting: Rate Limits
    config = RetryConfig(max_retries=5, initial_delay=2.0, max_delay=60.0)
    service = LLMService(retry_config=config)
    await service.aclose()
    print(f"Retry config: {config}")


if __name__ == "__main__":
    asyncio.run(main())
