"""--dry-run figures against hand counts made with llm.tokens and the registry's rates."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from jobs.batch import main
from jobs.batch_dryrun import dry_run, format_dry_run, max_cost_or_zero
from jobs.batch_input import parse_row, read_rows
from llm.recommend import get_best_model_for_task
from llm.registry import resolve_model
from llm.tokens import (
    MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    count_schema_tokens,
    count_text_tokens,
    count_tool_tokens,
)

TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
ROWS = [
    {
        "id": "h1",
        "model": "claude-haiku-4.5",
        "prompt": "Hello there, how are you?",
        "max_tokens": 100,
    },
    {"id": "h2", "model": "claude-haiku-4.5", "system": "Be terse.", "prompt": "Name a color."},
    {
        "id": "g1",
        "model": "gpt-4.1",
        "prompt": "Weather in Oslo?",
        "tools": [TOOL],
        "max_tokens": 50,
    },
    {
        "id": "g2",
        "model": "gpt-4.1",
        "prompt": "Label: great!",
        "structured_output_schema": SCHEMA,
        "max_tokens": 30,
    },
    {"id": "bad-model", "model": "gpt-9-ultra", "prompt": "x"},
    {
        "id": "bad-schema",
        "model": "gpt-4.1",
        "prompt": "x",
        "structured_output_schema": {"type": "objekt"},
    },
    {"id": "h1", "model": "claude-haiku-4.5", "prompt": "duplicate id"},
]


def write_input(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(row) for row in ROWS] + ['{"id": "broken", ']
    path.write_text("\n".join(lines) + "\n")
    return path


def user(text):
    return MESSAGE_OVERHEAD + count_text_tokens(text)


def price(model, input_tokens, output_tokens):
    rates = resolve_model(model).pricing.standard
    return (input_tokens * rates.input + output_tokens * rates.output) / Decimal(1_000_000)


def test_dry_run_matches_hand_counts(tmp_path):
    report = dry_run(read_rows(write_input(tmp_path)))

    h1 = REQUEST_OVERHEAD + user("Hello there, how are you?")
    h2 = REQUEST_OVERHEAD + user("Be terse.") + user("Name a color.")
    haiku_out = 100 + min(4096, resolve_model("claude-haiku-4.5").max_output_tokens)
    g1 = REQUEST_OVERHEAD + user("Weather in Oslo?")
    g1 += count_tool_tokens(TOOL["name"], TOOL["description"], TOOL["parameters"])
    g2 = REQUEST_OVERHEAD + user("Label: great!") + count_schema_tokens(SCHEMA)

    haiku, gpt = report.by_model["claude-haiku-4.5"], report.by_model["gpt-4.1"]
    assert (haiku.rows, haiku.input_tokens, haiku.max_output_tokens) == (2, h1 + h2, haiku_out)
    assert (gpt.rows, gpt.input_tokens, gpt.max_output_tokens) == (2, g1 + g2, 80)
    assert haiku.min_cost == price("claude-haiku-4.5", h1 + h2, 0)
    assert haiku.max_cost == price("claude-haiku-4.5", h1 + h2, haiku_out)
    assert gpt.max_cost == price("gpt-4.1", g1 + g2, 80)
    assert dict(report.invalid) == {"ModelNotFoundError": 1, "InvalidRequestError": 2}
    assert report.duplicates == 1
    assert report.total.rows == 4


@pytest.mark.real_calendar  # compares with the recommendation of the same day
def test_task_rows_are_estimated_for_the_recommended_model():
    row = parse_row({"id": "t", "task": "classification", "budget": "low", "prompt": "x"}, 1)
    report = dry_run([row])
    assert list(report.by_model) == [get_best_model_for_task("classification", "low")]


def test_budget_estimate_is_zero_for_a_row_the_service_would_reject():
    bad = parse_row({"id": "x", "model": "gpt-9-ultra", "prompt": "x"}, 1)
    good = parse_row({"id": "y", "model": "gpt-4.1", "prompt": "x", "max_tokens": 10}, 2)
    assert max_cost_or_zero(bad) == 0
    assert max_cost_or_zero(good) == price("gpt-4.1", REQUEST_OVERHEAD + user("x"), 10)


def test_report_text_lists_models_and_invalid_rows(tmp_path):
    text = format_dry_run(dry_run(read_rows(write_input(tmp_path))))
    assert "claude-haiku-4.5" in text and "gpt-4.1" in text and "TOTAL" in text
    assert "ModelNotFoundError: 1" in text and "Invalid rows: 3" in text


def test_cli_dry_run_calls_nothing_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import llm.service

    async def forbidden(*args, **kwargs):
        raise AssertionError("dry run must not call the service")

    monkeypatch.setattr(llm.service.LLMService, "generate", forbidden)
    output = tmp_path / "out"
    code = main([str(write_input(tmp_path)), "--dry-run", "--output", str(output)])
    assert code == 0
    assert not output.exists()
    assert "DRY RUN" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("model", "extra", "bound"),
    [
        # OpenAI reasoning model, default effort: max_completion_tokens = 10 + 8,192.
        ("gpt-6-luna", {}, 10 + 8192),
        # Claude with thinking: max_tokens = the thinking budget (low: 2,048) + 10.
        ("claude-sonnet-5.5", {"reasoning_effort": "low"}, 2048 + 10),
        # Gemini that thinks by default: maxOutputTokens = 10 + the high budget (24,576).
        ("gemini-2.5-pro", {}, 10 + 24576),
        # No reasoning: the bound is max_tokens.
        ("claude-haiku-4.5", {}, 10),
    ],
)
def test_budget_bound_counts_the_reasoning_allowance_sent_on_top(model, extra, bound):
    # The budget guard reserves the most a row can be billed for; reasoning tokens are billed
    # as output and the adapters send their allowance on top of max_tokens.
    row = parse_row({"id": "r", "model": model, "prompt": "x", "max_tokens": 10, **extra}, 1)
    info = resolve_model(model)
    tokens = REQUEST_OVERHEAD + user("x")
    assert dry_run([row]).by_model[info.name].max_output_tokens == min(
        bound, info.max_output_tokens
    )
    assert max_cost_or_zero(row) == price(model, tokens, min(bound, info.max_output_tokens))
