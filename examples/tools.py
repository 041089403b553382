"""Tool use / function calling (product brief: Tool Use / Function Calling).

Run ``python examples/tools.py``. Without API keys the example starts the built-in emulator
(``LLM_OFFLINE=1``, see ``_setup.py``). Tools may also be given in Anthropic's
``{name, description, input_schema}`` shape.
"""

import asyncio

from _setup import offline_unless_keys

from llm import LLMService, Message, MessageRole, ToolCall

tools = [
    {
        "type": "function",
        "function": {
            "name": "render_component",
            "description": "Render a React component in sandbox",
            "parameters": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "component_type": {"type": "string"},
                },
                "required": ["code"],
            },
        },
    }
]


async def main():
    offline_unless_keys()
    service = LLMService()
    try:
        response = await service.generate(
            model="claude-sonnet-5.5",
            messages=[
                Message(role=MessageRole.USER, content="Create and render a button component")
            ],
            tools=tools,
        )

        if response.tool_calls:
            for tool_call in response.tool_calls:
                print(f"Tool: {tool_call['name']}")
                print(f"Args: {tool_call['arguments']}")
        else:
            print(f"Answered in text: {response.text[:60]}...")

        # Force a tool call, run the tool, and send its result back for the final answer.
        messages = [Message(role=MessageRole.USER, content="Create and render a button component")]
        response = await service.generate(
            model="claude-sonnet-5.5", messages=messages, tools=tools, tool_choice="required"
        )
        call = response.tool_calls[0]
        print(f"Tool: {call['name']}")
        print(f"Args: {call['arguments']}")
        messages += [
            Message(
                role=MessageRole.ASSISTANT, content=response.text, tool_calls=[ToolCall(**call)]
            ),
            Message(
                role=MessageRole.TOOL, tool_call_id=call["id"], content="Rendered without errors"
            ),
        ]
        final = await service.generate(model="claude-sonnet-5.5", messages=messages, tools=tools)
        print(final.text)
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
