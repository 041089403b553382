"""Structured output helpers: check a JSON schema, pull JSON out of a reply, validate it.

The service asks the provider for JSON matching the caller's schema, then checks the reply
here. A reply that fails is re-asked with :func:`reask_message`, which names the problem
but does not repeat the schema (the provider already has it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from llm.exceptions import InvalidRequestError
from llm.types import Message, MessageRole

#: Longest validation message kept (it may quote parts of the reply).
MAX_ERROR_CHARS = 300

_FENCE_RE = re.compile(r"^```[a-zA-Z0-9_-]*[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)


class JSONExtractionError(ValueError):
    """The reply holds no parseable JSON value."""


def check_schema(schema: Any, *, what: str = "structured_output_schema") -> dict[str, Any]:
    """Return ``schema`` if it is a valid JSON Schema object, else raise InvalidRequestError."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{what} must be a JSON Schema object (a dict)")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise InvalidRequestError(f"{what} is not a valid JSON Schema: {error.message}") from None
    return schema


def extract_json(text: str) -> Any:
    """The JSON value in ``text``: plain JSON, or JSON inside one ```json fence.

    Falls back to the outermost ``{...}`` or ``[...]`` span when prose surrounds it.
    Raises :class:`JSONExtractionError` when nothing parses.
    """
    stripped = text.strip()
    fenced = _FENCE_RE.match(stripped)
    candidates = [fenced.group(1).strip()] if fenced else []
    candidates.append(stripped)
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = stripped.find(opener), stripped.rfind(closer)
        if 0 <= start < end:
            candidates.append(stripped[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise JSONExtractionError("the reply is not valid JSON")


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def schema_error(value: Any, schema: dict[str, Any]) -> str | None:
    """A short description of the first way ``value`` breaks ``schema``, or None if it fits."""
    validator = Draft202012Validator(schema)
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return _shorten(f"at {where}: {error.message}")


def parse_structured(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """Parse and validate a reply: ``(value, None)`` on success, ``(None, problem)`` otherwise."""
    try:
        value = extract_json(text)
    except JSONExtractionError as error:
        return None, str(error)
    problem = schema_error(value, schema)
    return (None, problem) if problem else (value, None)


def reask_message(problem: str) -> Message:
    """The user turn sent after an invalid reply: names the problem, not the schema."""
    return Message(
        role=MessageRole.USER,
        content=(
            f"Your previous reply did not match the required JSON schema ({problem}). "
            "Reply again with only the corrected JSON, no other text."
        ),
    )
