"""Structured JSON output validated against a schema (product brief: Structured JSON Output).

Run ``python examples/structured_output.py``. Without API keys the example starts the
built-in emulator (``LLM_OFFLINE=1``, see ``_setup.py``).
"""

import asyncio
import json

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole

schema = {
    "type": "object",
    "properties": {
        "colors": {"type": "object"},
        "typography": {"type": "object"},
        "spacing": {"type": "array"},
    },
    "required": ["colors", "typography"],
}


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        response = await service.generate(
            model="claude-sonnet-5.5",
            messages=[
                Message(role=MessageRole.USER, content="Extract design tokens from this mockup")
            ],
            structured_output_schema=schema,  # Guaranteed valid JSON matching schema
        )

        design_tokens = response.structured_output
        print(json.dumps(design_tokens, indent=2))
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
