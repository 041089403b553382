"""The batch job's progress view: rich on a terminal, plain lines otherwise, live figures."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from jobs.batch_core import BatchSummary
from jobs.batch_input import RowRequest
from jobs.batch_live import CallTracker, engine_stats_source
from jobs.batch_progress import ProgressBar
from llm.exceptions import RateLimitError
from llm.types import Cost, LLMResponse, Usage
from runtime.engine import EngineStats


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _row(row_id: str, model: str = "claude-haiku-4.5") -> RowRequest:
    return RowRequest(
        row_id=row_id, line=1, model=model, messages=[{"role": "user", "content": "hi"}]
    ).for_job("job", f"req-{row_id}")


def _response(provider: str, *, cached: int = 0, attempts: int = 1) -> LLMResponse:
    return LLMResponse(
        model="m",
        provider=provider,
        usage=Usage(input_tokens=100, output_tokens=10, cached_tokens=cached),
        cost=Cost(input_cost=Decimal("0.01")),
        attempts=attempts,
    )


def _stats(provider: str, rate_limited: int, retries: int, in_flight: int = 0) -> EngineStats:
    return EngineStats(
        provider=provider,
        account="default",
        headroom=1.0,
        in_flight=in_flight,
        breaker_state="closed",
        rate_limited=rate_limited,
        retries=retries,
    )


def test_progress_bar_redraws_at_most_every_interval_on_a_terminal():
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressBar(stream, total=100, clock=clock, min_interval_s=0.5, is_tty=True, width=100)
    summary = BatchSummary(ok=10, cost=Decimal("0.25"))
    clock.now = 2.0
    bar.update(summary)
    first = stream.getvalue()
    clock.now = 2.2
    bar.update(summary)  # too soon: skipped
    assert stream.getvalue() == first
    assert "rows 10 / 100" in first and "5.0 rows/s" in first and "ETA 18s" in first
    assert "$0.2500" in first and "\x1b[" in first  # drawn with terminal codes
    clock.now = 2.0
    line = bar.line(summary)
    assert "10/100 (10.0%)" in line and "5.0 rows/s" in line
    assert "ETA 18s" in line and "$0.2500" in line
    bar.close(summary)


def test_progress_bar_prints_plain_lines_when_not_a_tty():
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressBar(stream, clock=clock, plain_interval_s=10, is_tty=False)
    summary = BatchSummary(ok=1)
    for now in (1, 5, 11, 12):
        clock.now = now
        bar.update(summary)
    assert "\r" not in stream.getvalue() and "\x1b[" not in stream.getvalue()
    assert stream.getvalue().count("\n") == 2


async def test_tracker_tallies_rows_by_provider_and_the_view_shows_them():
    answers = {
        "a": _response("anthropic", cached=50, attempts=3),
        "b": _response("openai"),
        "c": RateLimitError("slow", provider="anthropic", attempts=4),
    }

    async def call(row):
        outcome = answers[row.row_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    stats = [[_stats("anthropic", 5, 9), _stats("openai", 1, 1)]]
    stats.append([_stats("anthropic", 8, 12, in_flight=2), _stats("openai", 1, 1)])
    tracker = CallTracker(call, stats=lambda: stats.pop(0), poll_s=3600)
    await tracker(_row("a"))
    await tracker(_row("b"))
    with pytest.raises(RateLimitError):
        await tracker(_row("c"))
    await tracker.aclose()  # one last read: the second snapshot

    live = tracker.live
    assert live.in_flight == 0
    anthropic, openai = live.providers["anthropic"], live.providers["openai"]
    assert (anthropic.ok, anthropic.failed, anthropic.rate_limited_rows) == (1, 1, 1)
    assert anthropic.retries == 2 + 3 and anthropic.cost == Decimal("0.01")
    assert anthropic.cache_hit_ratio == 0.5 and openai.cache_hit_ratio == 0.0
    # the engines' counters are this job's deltas (the first read is the baseline)
    assert live.engines["anthropic"].rate_limited == 3
    assert live.engines["anthropic"].in_flight == 2
    assert live.rate_limited == 3
    assert live.cache_hit_ratio == 0.25

    summary = BatchSummary(ok=2, failed=1, cost=Decimal("0.02"), budget_usd=Decimal("5"))
    plain = ProgressBar(io.StringIO(), total=10, is_tty=False, tracker=tracker).line(summary)
    assert "in flight 0" in plain and "429s 3" in plain and "cache hit 25%" in plain
    assert "anthropic: 1 ok 1 failed $0.0100 cache 50%" in plain
    assert "$0.0200 of $5" in plain

    stream = io.StringIO()
    bar = ProgressBar(stream, total=10, is_tty=True, tracker=tracker, width=120)
    bar.close(summary)
    view = stream.getvalue()
    for text in ("anthropic", "openai", "cache hit", "429s", "spend $0.0200 of $5", "50%"):
        assert text in view, text


async def test_engine_stats_source_reads_a_local_executor():
    class Executor:
        def stats(self):
            return {"anthropic": _stats("anthropic", 1, 2)}

    source = engine_stats_source(Executor())
    assert [s.provider for s in source()] == ["anthropic"]
    assert engine_stats_source(object()) is None
