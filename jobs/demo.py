"""``python -m jobs.demo``: a tour of the service against the built-in emulator (no keys).

Runs a few of the product brief's calls across the three providers (Claude, GPT, Gemini),
then streaming, structured output, a tool call, prompt caching and a retried rate limit,
and prints the cost summary. Everything runs offline: the service starts the emulator in a
background thread.
"""

from __future__ import annotations

import asyncio
import json
import sys

from llm.service import LLMService
from llm.types import LLMResponse, Message, MessageRole

SYSTEM = Message(role=MessageRole.SYSTEM, content="You are a helpful assistant")
SCHEMA = {
    "type": "object",
    "properties": {
        "colors": {"type": "object"},
        "typography": {"type": "object"},
        "spacing": {"type": "array"},
    },
    "required": ["colors", "typography"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "render_component",
            "description": "Render a React component in sandbox",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "component_type": {"type": "string"}},
                "required": ["code"],
            },
        },
    }
]
STYLE_GUIDE = "You are an expert React developer. Follow these coding standards:\n" + "\n".join(
    f"- Standard {i}: typed props, hooks best practices, JSDoc on every export." for i in range(200)
)


def user(text: str) -> list[Message]:
    return [SYSTEM, Message(role=MessageRole.USER, content=text)]


def show(label: str, response: LLMResponse) -> None:
    usage = response.usage
    print(
        f"[{label}] {response.provider}/{response.model}: {usage.input_tokens} in, "
        f"{usage.output_tokens} out, {usage.cached_tokens} cached, "
        f"${response.cost.total_cost:.6f}, attempts {response.attempts}"
    )


async def tour(service: LLMService) -> None:
    """The calls of the demo, in order."""
    for model in ("claude-haiku-5.5", "gpt-6.1-terra", "gemini-3.8-flash"):
        show(
            "generate",
            await service.generate(model=model, messages=user("Explain quantum computing")),
        )

    stream = service.generate_stream(
        model="claude-haiku-5.5", messages=user("Write a story about AI")
    )
    chunks = [chunk async for chunk in stream]
    show(f"stream, {len(chunks)} chunks", stream.response)

    response = await service.generate(
        model="gpt-6.1-terra",
        messages=user("Extract design tokens"),
        structured_output_schema=SCHEMA,
    )
    show("structured", response)
    print("  ", json.dumps(response.structured_output))

    response = await service.generate(
        model="gemini-3.8-flash",
        messages=user("Create and render a button component"),
        tools=TOOLS,
        tool_choice="required",
    )
    show("tool call", response)
    print("  ", response.tool_calls[0]["name"], response.tool_calls[0]["arguments"])

    for turn in ("Create a button component", "Create a modal component"):
        messages = [Message(role=MessageRole.SYSTEM, content=STYLE_GUIDE), *user(turn)[1:]]
        show(
            "caching",
            await service.generate(
                model="claude-haiku-5.5", messages=messages, enable_caching=True
            ),
        )

    response = await service.generate(
        model="claude-haiku-5.5", messages=user("Hello [[emu:fault=429,times=1]]")
    )
    show("after a 429", response)


async def run() -> None:
    """Run the tour on an offline service and print the cost summary."""
    async with LLMService(offline=True) as service:
        await tour(service)
        print()
        service.print_cost_summary()


def main() -> int:
    """Entry point of ``python -m jobs.demo``; returns the exit code."""
    asyncio.run(run())  # current models only: no lifecycle warning to hide
    return 0


if __name__ == "__main__":
    sys.exit(main())
