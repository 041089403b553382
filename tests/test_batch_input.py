"""Batch input: JSONL and Parquet streaming, row shape checks, shorthand prompts."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.batch_input import InvalidRow, RowRequest, count_rows, parse_row, read_rows
from llm.exceptions import InvalidRequestError
from llm.recommend import get_best_model_for_task

SECRET_PROMPT = "my secret prompt text 4242"


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_malformed_line_becomes_error_row_and_reading_goes_on(tmp_path):
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": "a", "model": "gpt-4.1", "prompt": "hi"}),
            "",
            '{"id": "b", "prompt": "unterminated',
            json.dumps({"id": "c", "model": "gpt-4.1", "prompt": "bye"}),
        ],
    )
    items = list(read_rows(path))
    assert [type(i).__name__ for i in items] == ["RowRequest", "InvalidRow", "RowRequest"]
    bad = items[1]
    assert bad.row_id == "line-3" and bad.line == 3
    assert isinstance(bad.error, InvalidRequestError)
    assert items[2].row_id == "c" and items[2].line == 4


def test_non_object_line_is_an_error_row(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", ["[1, 2]"])
    (item,) = read_rows(path)
    assert isinstance(item, InvalidRow) and item.row_id == "line-1"


def test_prompt_shorthand_with_system_builds_messages():
    row = parse_row({"id": "x", "prompt": "Hello", "system": "Be brief"}, 1)
    assert isinstance(row, RowRequest)
    assert row.messages == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hello"},
    ]


@pytest.mark.real_calendar  # compares with the recommendation of the same day
def test_options_and_routing_reach_the_prepared_request():
    raw = {
        "id": 7,
        "task": "summarization",
        "budget": "low",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 50,
        "temperature": 0.5,
        "enable_caching": True,
        "metadata": {"team": "x"},
    }
    row = parse_row(raw, 3)
    assert isinstance(row, RowRequest)
    assert row.row_id == "7"
    assert (row.model, row.task, row.budget) == (None, "summarization", "low")
    request = row.request(default_model="gpt-4.1")
    assert request.model.name == get_best_model_for_task("summarization", "low")
    assert request.max_tokens == 50 and request.temperature == 0.5
    assert request.enable_caching is True  # the row's own, over the job's default
    assert row.request(default_model="gpt-4.1") is request  # prepared once


def test_unknown_field_is_an_error_row_that_keeps_the_id():
    item = parse_row({"id": "x", "prompt": "Hi", "max_token": 5}, 2)
    assert isinstance(item, InvalidRow) and item.row_id == "x"
    assert "max_token" in str(item.error)


def test_wrong_types_are_error_rows_without_prompt_text():
    cases = [
        {"max_tokens": "lots"},
        {"max_tokens": True},
        {"enable_caching": "yes"},
        {"temperature": "hot"},
        {"tools": {"name": "t"}},
        {"model": 5},
    ]
    for extra in cases:
        item = parse_row({"id": "x", "prompt": SECRET_PROMPT, **extra}, 1)
        assert isinstance(item, InvalidRow), extra
        assert SECRET_PROMPT not in str(item.error)


def test_missing_id_gets_a_line_id_and_is_an_error():
    item = parse_row({"model": "gpt-4.1", "prompt": "hi"}, 12)
    assert isinstance(item, InvalidRow)
    assert item.row_id == "line-12" and item.model == "gpt-4.1"


def test_model_and_task_together_or_budget_alone_are_rejected():
    both = parse_row({"id": "a", "model": "gpt-4.1", "task": "general", "prompt": "x"}, 1)
    lone_budget = parse_row({"id": "b", "budget": "low", "prompt": "x"}, 2)
    nothing = parse_row({"id": "c"}, 3)
    prompt_and_messages = parse_row(
        {"id": "d", "prompt": "x", "messages": [{"role": "user", "content": "y"}]}, 4
    )
    assert all(isinstance(i, InvalidRow) for i in (both, lone_budget, nothing, prompt_and_messages))


def test_nulls_count_as_absent():
    row = parse_row({"id": "a", "prompt": "x", "max_tokens": None, "tools": None}, 1)
    assert isinstance(row, RowRequest) and row.options == {}


def test_parquet_messages_as_json_text(tmp_path):
    table = pa.table(
        {
            "id": ["a", "b"],
            "model": ["gpt-4.1", None],
            "messages": [
                json.dumps([{"role": "user", "content": "Hi"}]),
                "not json",
            ],
            "max_tokens": [10, None],
        }
    )
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    first, second = read_rows(path)
    assert isinstance(first, RowRequest)
    assert first.messages == [{"role": "user", "content": "Hi"}]
    assert first.options == {"max_tokens": 10}
    assert isinstance(second, InvalidRow) and second.row_id == "b"


def test_parquet_messages_as_list_of_structs_with_parts(tmp_path):
    messages = [
        [{"role": "user", "content": [{"type": "text", "text": "Look", "data": None}]}],
        [{"role": "user", "content": [{"type": "image", "text": None, "data": "aGk="}]}],
    ]
    table = pa.table({"id": ["a", "b"], "messages": messages})
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=1)
    first, second = read_rows(path)
    assert first.messages == [{"role": "user", "content": [{"type": "text", "text": "Look"}]}]
    assert second.messages[0]["content"] == [{"type": "image", "data": "aGk="}]
    assert (first.line, second.line) == (1, 2)


def test_count_rows_jsonl_and_parquet(tmp_path):
    jsonl = write_jsonl(tmp_path / "in.jsonl", ["{}", "", "{}", "garbage"])
    assert count_rows(jsonl) == 3
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"]}), path)
    assert count_rows(path) == 3


def test_row_repr_hides_prompt():
    row = parse_row({"id": "a", "prompt": SECRET_PROMPT}, 1)
    assert SECRET_PROMPT not in repr(row)
