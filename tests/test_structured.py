"""JSON extraction and schema validation helpers of structured output."""

from __future__ import annotations

import pytest

from llm.exceptions import InvalidRequestError
from llm.structured import (
    MAX_ERROR_CHARS,
    JSONExtractionError,
    check_schema,
    extract_json,
    parse_structured,
    reask_message,
    schema_error,
)
from llm.types import MessageRole

SCHEMA = {
    "type": "object",
    "properties": {"colors": {"type": "object"}, "spacing": {"type": "array"}},
    "required": ["colors"],
}


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '  {"a": 1}\n',
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        '```JSON\n{"a": 1}```',
        'Here you go:\n{"a": 1}\nHope that helps.',
    ],
)
def test_extract_json_tolerates_fences_and_prose(text):
    assert extract_json(text) == {"a": 1}


def test_extract_json_arrays_and_scalars():
    assert extract_json("[1, 2]") == [1, 2]
    assert extract_json("noise [1, 2] noise") == [1, 2]
    assert extract_json("3") == 3


@pytest.mark.parametrize("text", ["", "not json", "```json\n{broken\n```", "{'a': 1}"])
def test_extract_json_rejects_non_json(text):
    with pytest.raises(JSONExtractionError):
        extract_json(text)


def test_schema_error_names_the_place_and_the_rule():
    assert schema_error({"colors": {}}, SCHEMA) is None
    problem = schema_error({"colors": {}, "spacing": "wide"}, SCHEMA)
    assert problem.startswith("at spacing:") and "array" in problem
    assert "required" in schema_error({}, SCHEMA)


def test_schema_error_is_bounded():
    problem = schema_error({"colors": "x" * 5000}, SCHEMA)
    assert len(problem) <= MAX_ERROR_CHARS


def test_parse_structured_success_and_failures():
    assert parse_structured('```json\n{"colors": {"a": 1}}\n```', SCHEMA) == (
        {"colors": {"a": 1}},
        None,
    )
    value, problem = parse_structured("nope", SCHEMA)
    assert value is None and "not valid JSON" in problem
    value, problem = parse_structured('{"spacing": []}', SCHEMA)
    assert value is None and "colors" in problem


def test_check_schema():
    assert check_schema(SCHEMA) is SCHEMA
    with pytest.raises(InvalidRequestError, match="not a valid JSON Schema"):
        check_schema({"type": "nonsense"})
    with pytest.raises(InvalidRequestError, match="must be a JSON Schema object"):
        check_schema("object")


def test_reask_names_the_problem_but_not_the_schema():
    message = reask_message("at (root): 'colors' is a required property")
    assert message.role == MessageRole.USER
    assert "'colors' is a required property" in message.text()
    assert "properties" not in message.text()
