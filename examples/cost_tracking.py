"""Automatic and manual cost tracking (product brief: Cost Tracking).

Run ``python examples/cost_tracking.py``. Without API keys the example starts the built-in
emulator (``LLM_OFFLINE=1``, see ``_setup.py``). The manual tracker writes ``costs.json``
in the current directory and continues it on the next run.
"""

import asyncio

from _setup import offline_unless_keys

from llm import CostTracker, LLMService, Message, MessageRole


async def main():
    offline_unless_keys()
    service = LLMService(enable_cost_tracking=True)
    try:
        # Make requests...
        await service.generate(
            model="claude-sonnet-5.5",
            messages=[Message(role=MessageRole.USER, content="Create a button component")],
        )
        response = await service.generate(
            model="gemini-3.8-flash",
            messages=[Message(role=MessageRole.USER, content="Describe a card layout")],
        )

        # Print summary
        service.print_cost_summary()

        # Manual cost tracking
        tracker = CostTracker(save_path="costs.json")

        # Track responses
        cost = tracker.track_request(response)
        print(f"Request cost: ${cost.total_cost:.4f}")

        # Get stats
        stats = tracker.get_stats()
        print(f"Total spent: ${stats['total_cost']:.4f}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
