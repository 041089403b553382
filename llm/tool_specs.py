"""Tool definitions in any of the accepted shapes, normalised to :class:`ToolSpec`.

Accepted per tool:

* OpenAI style: ``{"type": "function", "function": {"name", "description", "parameters"}}``
  (the product brief's format);
* Anthropic style: ``{"name", "description", "input_schema"}``;
* flat style: ``{"name", "description", "parameters"}`` (OpenAI Responses);
* a :class:`~llm.providers.base.ToolSpec`.

Every parameter schema is checked as JSON Schema; names must be unique and wire-safe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from llm.exceptions import InvalidRequestError
from llm.providers.base import ToolSpec
from llm.structured import check_schema

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: tool_choice values that are not a tool name.
TOOL_CHOICE_MODES = ("auto", "required", "none")


def _fields_of(tool: dict[str, Any], index: int) -> tuple[Any, Any, Any]:
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        inner = tool["function"]
        return inner.get("name"), inner.get("description", ""), inner.get("parameters")
    if "name" in tool:
        schema = tool.get("input_schema", tool.get("parameters"))
        return tool.get("name"), tool.get("description", ""), schema
    raise InvalidRequestError(
        f"tools[{index}] is not a tool definition: use "
        '{"type": "function", "function": {"name", "description", "parameters"}}'
    )


def normalize_tool(tool: ToolSpec | dict[str, Any], index: int = 0) -> ToolSpec:
    """One tool definition as a :class:`ToolSpec`; raises InvalidRequestError if malformed."""
    if isinstance(tool, ToolSpec):
        name, description, parameters = tool.name, tool.description, tool.parameters
    elif isinstance(tool, dict):
        name, description, parameters = _fields_of(tool, index)
    else:
        raise InvalidRequestError(f"tools[{index}] must be a dict or ToolSpec")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidRequestError(
            f"tools[{index}] name must be 1-64 letters, digits, '_' or '-' (got {name!r})"
        )
    if not isinstance(description, str):
        raise InvalidRequestError(f"tool {name!r}: description must be a string")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    check_schema(parameters, what=f"tool {name!r} parameters")
    if parameters.get("type", "object") != "object":
        raise InvalidRequestError(f"tool {name!r}: parameters must be an object schema")
    return ToolSpec(name=name, description=description, parameters=parameters)


def normalize_tools(tools: Sequence[ToolSpec | dict[str, Any]] | None) -> tuple[ToolSpec, ...]:
    """All tool definitions normalised; names must be unique."""
    if not tools:
        return ()
    if isinstance(tools, dict | str):
        raise InvalidRequestError("tools must be a list of tool definitions")
    specs = tuple(normalize_tool(tool, index) for index, tool in enumerate(tools))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidRequestError(f"duplicate tool names: {', '.join(duplicates)}")
    return specs


def _choice_name(tool_choice: dict[str, Any]) -> Any:
    inner = tool_choice.get("function")
    return inner.get("name") if isinstance(inner, dict) else tool_choice.get("name")


def check_tool_choice(
    tool_choice: str | dict[str, Any] | None, tools: Sequence[ToolSpec]
) -> str | None:
    """``tool_choice`` if valid for ``tools``: a mode or the name of one of the tools.

    A forcing dict (``{"type": "function", "function": {"name": ...}}`` or
    ``{"type": "tool", "name": ...}``) becomes the tool's name.
    """
    if tool_choice is None:
        return None
    if isinstance(tool_choice, dict):
        tool_choice = _choice_name(tool_choice)
    if not tools:
        raise InvalidRequestError("tool_choice needs tools")
    if tool_choice in TOOL_CHOICE_MODES or tool_choice in {tool.name for tool in tools}:
        return tool_choice
    raise InvalidRequestError(
        f"tool_choice must be one of {', '.join(TOOL_CHOICE_MODES)} or a tool name "
        f"(got {tool_choice!r})"
    )
