"""Model recommendations by task and budget (product brief: Get Recommendations).

Run ``python examples/recommendations.py``. Needs no keys and no network: recommendations
come from the model registry (never a deprecated or retired model).
"""

import asyncio

from llm import LLMService, get_best_model_for_task


async def main():
    service = LLMService()
    try:
        # Get best model for a task
        model = service.get_recommended_model(
            task="code_generation",
            budget="medium",  # "low", "medium", or "high"
        )
        print(f"code_generation / medium: {model}")

        # Or query directly
        model = get_best_model_for_task("vision_analysis", budget="low")
        print(f"vision_analysis / low: {model}")

        # ✅ Best: Let the system recommend
        model = service.get_recommended_model("classification", budget="low")
        print(f"classification / low: {model}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
