"""Dated price changes end to end: the ledger row and the response say which price billed a
call, and the call's own time (injected) picks it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from llm.executor import CallContext, Executed
from llm.pricing import compute_cost
from llm.providers.base import ProviderRequest, ProviderResult
from llm.registry import get_model_info
from llm.types import Message, MessageRole, Usage
from runtime.ledger_store import LEDGER_SCHEMA, LedgerRecord, LedgerWriter, read_ledger
from runtime.metering import meter

ARGON = get_model_info("gemini-4-argon")
USAGE = Usage(input_tokens=1_000_000, output_tokens=100_000)
BEFORE = dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC)
AFTER = dt.datetime(2026, 12, 1, 0, 1, tzinfo=dt.UTC)


def _row(ts: dt.datetime, request_id: str) -> LedgerRecord:
    request = ProviderRequest(
        model=ARGON, messages=(Message(role=MessageRole.USER, content="hi"),), max_tokens=10
    )
    executed = Executed(result=ProviderResult(text="ok", usage=USAGE))
    ctx = CallContext(request_id=request_id, job_id="job")
    return meter(request, ctx, executed, latency_s=0.1, streamed=False, ts=ts)[1]


def test_a_call_is_billed_at_the_price_in_force_when_made_and_the_row_says_which():
    before, after = _row(BEFORE, "r1"), _row(AFTER, "r2")
    # $2/M in, $10/M out until 30 Nov; $4/$20 from 1 Dec
    assert before.total_cost == Decimal("3")
    assert after.total_cost == Decimal("6")
    assert (before.price_effective_from, after.price_effective_from) == (
        None,
        dt.date(2026, 12, 1),
    )


def test_the_price_column_reaches_parquet_and_reads_back(tmp_path):
    writer = LedgerWriter(tmp_path)
    writer.append([_row(BEFORE, "r1"), _row(AFTER, "r2")])
    writer.flush()
    table = read_ledger(tmp_path)
    assert table.schema == LEDGER_SCHEMA
    rows = {row["request_id"]: row for row in table.to_pylist()}
    assert rows["r1"]["price_effective_from"] is None
    assert rows["r2"]["price_effective_from"] == dt.date(2026, 12, 1)


def test_journal_round_trip_keeps_the_price_date():
    row = _row(AFTER, "r2")
    assert LedgerRecord.model_validate_json(row.model_dump_json()) == row


def test_cost_is_exact_at_both_prices():
    assert (
        compute_cost(ARGON, USAGE, at=BEFORE).total_cost * 2
        == compute_cost(ARGON, USAGE, at=AFTER).total_cost
    )
