"""Prompt caching of a long system prompt (product brief: With Prompt Caching).

Run ``python examples/caching.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``). The style guide is longer than the
model's minimum cacheable prefix (1,024 tokens), so the second call reads it from the cache.
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole

RULES = [
    "Use TypeScript with strict mode",
    "Follow React hooks best practices",
    "Write comprehensive JSDoc comments",
    "Prefer function components and named exports",
    "Keep components small and focused on one job",
    "Use semantic HTML and ARIA attributes where needed",
    "Style with Tailwind utility classes, never inline styles",
    "Cover behaviour with React Testing Library tests",
]
long_style_guide = (
    "You are an expert React developer.\nFollow these coding standards:\n"
    + "\n".join(
        f"- {rule} (section {section}.{index})"
        for section in range(1, 21)
        for index, rule in enumerate(RULES, start=1)
    )
)


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        for task in ("Create a button component", "Create a modal component"):
            # System prompts are automatically cached when enable_caching=True
            response = await service.generate(
                model="claude-sonnet-5.5",
                messages=[
                    Message(role=MessageRole.SYSTEM, content=long_style_guide),
                    Message(role=MessageRole.USER, content=task),
                ],
                enable_caching=True,  # Caches system prompt automatically
            )
            usage = response.usage
            print(
                f"{task}: input={usage.input_tokens} cached={usage.cached_tokens} "
                f"cache_writes={usage.cache_write_tokens} cost=${response.cost.total_cost:.6f}"
            )
        # Subsequent requests with same system prompt use cached version
        print(f"Saved by caching: ${service.get_cost_stats()['cache_savings']:.6f}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
