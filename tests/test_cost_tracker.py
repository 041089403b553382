"""CostTracker math (Decimal), persistence (atomic, continued) and the summary format."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest

from llm.cost import CostTracker
from llm.exceptions import ConfigurationError
from llm.pricing import cache_savings, compute_cost
from llm.registry import get_model_info
from llm.summary import format_cost_summary
from llm.types import Cost, LLMResponse, Usage


def response(model="claude-sonnet-4.5", provider="anthropic", *, cost=None, **usage) -> LLMResponse:
    return LLMResponse(
        model=model,
        provider=provider,
        usage=Usage(**usage),
        cost=cost,
        text="PRIVATE-ANSWER",
        request_id="req_1",
        metadata={"call_id": "c1"},
    )


def fixed(total: str) -> Cost:
    return Cost(input_cost=Decimal(total))


def test_track_returns_the_response_cost_and_sums_exactly():
    tracker = CostTracker()
    assert tracker.track_request(response(cost=fixed("0.1"), input_tokens=10)) == fixed("0.1")
    tracker.track_request(response(cost=fixed("0.2"), input_tokens=10))
    tracker.track_request(
        response("gemini-2.5-flash", "google", cost=fixed("0.0001"), input_tokens=5)
    )
    stats = tracker.get_stats()
    assert stats["total_cost"] == Decimal("0.3001")
    assert isinstance(stats["total_cost"], Decimal)
    assert stats["total_requests"] == 3
    assert stats["avg_cost"] == Decimal("0.3001") / 3
    sonnet = stats["by_model"]["claude-sonnet-4.5"]
    assert sonnet["total_cost"] == Decimal("0.3")
    assert sonnet["avg_cost"] == Decimal("0.15")
    assert list(stats["by_model"]) == ["claude-sonnet-4.5", "gemini-2.5-flash"]


def test_cost_is_computed_when_the_response_has_none():
    usage = dict(input_tokens=5000, output_tokens=700, cached_tokens=4000, cache_write_tokens=0)
    tracker = CostTracker()
    cost = tracker.track_request(response(**usage))
    model = get_model_info("claude-sonnet-4.5")
    assert cost == compute_cost(model, Usage(**usage))
    stats = tracker.get_stats()
    assert stats["cache_savings"] == cache_savings(model, Usage(**usage))
    assert stats["cache_savings"] > 0
    assert stats["total_input_tokens"] == 5000
    assert stats["total_output_tokens"] == 700
    assert stats["total_cached_tokens"] == 4000
    assert stats["total_tokens"] == 5700
    assert stats["by_model"]["claude-sonnet-4.5"]["total_tokens"] == 5700


def test_records_hold_no_text():
    tracker = CostTracker()
    tracker.track_request(response(cost=fixed("1"), input_tokens=1))
    (record,) = tracker.records()
    assert "PRIVATE-ANSWER" not in json.dumps(record, default=str)
    assert record["request_id"] == "req_1" and record["call_id"] == "c1"


def test_empty_stats():
    stats = CostTracker().get_stats()
    assert stats["total_cost"] == Decimal(0)
    assert stats["avg_cost"] == Decimal(0)
    assert stats["by_model"] == {}


def test_save_is_atomic_and_money_is_stored_as_strings(tmp_path, monkeypatch):
    path = tmp_path / "costs.json"
    tracker = CostTracker(save_path=path)
    tracker.track_request(response(cost=fixed("0.1"), input_tokens=1))
    data = json.loads(path.read_text())
    assert data["records"][0]["total_cost"] == "0.1"

    replaced = []
    real_replace = os.replace

    def spy_replace(src, dst):
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("llm.cost.os.replace", spy_replace)
    tracker.track_request(response(cost=fixed("0.2"), input_tokens=1))
    assert len(replaced) == 1 and replaced[0][1] == str(path) and replaced[0][0] != str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "costs.json"
    tracker = CostTracker(save_path=path)
    tracker.track_request(response(cost=fixed("0.1"), input_tokens=1))
    before = path.read_text()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("llm.cost.os.fsync", broken_fsync)
    with pytest.raises(OSError):
        tracker.track_request(response(cost=fixed("0.2"), input_tokens=1))
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs.json"]


def test_existing_file_is_continued_not_overwritten(tmp_path):
    path = tmp_path / "costs.json"
    CostTracker(save_path=path).track_request(response(cost=fixed("0.1"), input_tokens=3))
    second = CostTracker(save_path=path)
    assert second.get_stats()["total_cost"] == Decimal("0.1")
    second.track_request(response(cost=fixed("0.25"), input_tokens=4))
    third = CostTracker(save_path=path)
    stats = third.get_stats()
    assert stats["total_requests"] == 2
    assert stats["total_cost"] == Decimal("0.35")
    assert stats["total_input_tokens"] == 7


def test_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "costs.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(ConfigurationError):
        CostTracker(save_path=path)
    assert path.read_text() == "[1, 2, 3]"


EXPECTED_SUMMARY = """\
============================================================
LLM COST SUMMARY
============================================================
Total Cost: $0.1234
Total Requests: 15
Total Tokens: 45,230
Avg Cost/Request: $0.0082

By Model:
------------------------------------------------------------

claude-sonnet-4.5:
  Requests: 10
  Total Cost: $0.0980
  Avg Cost: $0.0098
  Tokens: 35,120 (Input: 28,000, Output: 7,120, Cached: 21,000)

gemini-2.5-flash:
  Requests: 5
  Total Cost: $0.0254
  Avg Cost: $0.0051
  Tokens: 10,110 (Input: 8,500, Output: 1,610, Cached: 0)
============================================================"""


def test_summary_matches_the_brief_exactly():
    stats = {
        "total_cost": Decimal("0.1234"),
        "total_requests": 15,
        "total_tokens": 45230,
        "avg_cost": Decimal("0.1234") / 15,
        "by_model": {
            "claude-sonnet-4.5": {
                "requests": 10,
                "total_cost": Decimal("0.098"),
                "avg_cost": Decimal("0.0098"),
                "total_tokens": 35120,
                "input_tokens": 28000,
                "output_tokens": 7120,
                "cached_tokens": 21000,
            },
            "gemini-2.5-flash": {
                "requests": 5,
                "total_cost": Decimal("0.0254"),
                "avg_cost": Decimal("0.00508"),
                "total_tokens": 10110,
                "input_tokens": 8500,
                "output_tokens": 1610,
                "cached_tokens": 0,
            },
        },
    }
    assert format_cost_summary(stats) == EXPECTED_SUMMARY


def test_summary_of_tracker_stats():
    tracker = CostTracker()
    for _ in range(2):
        tracker.track_request(
            response(cost=fixed("0.005"), input_tokens=1000, output_tokens=234, cached_tokens=600)
        )
    text = format_cost_summary(tracker.get_stats())
    assert "Total Cost: $0.0100\nTotal Requests: 2\nTotal Tokens: 2,468\n" in text
    assert "  Tokens: 2,468 (Input: 2,000, Output: 468, Cached: 1,200)" in text
