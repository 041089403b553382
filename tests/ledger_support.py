"""Helpers of the ledger tests: a ledger row, a journaled result, and a fixture that stops
every LedgerActor a test made from following its journal when the test ends."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from llm.executor import Executed
from llm.providers.base import ProviderResult
from llm.types import Usage
from runtime.ledger_store import LedgerRecord


def ledger_row(request_id: str, job_id: str = "job", cost: str = "0.001") -> LedgerRecord:
    """A small billed row (10 in, 5 out) of ``job_id``."""
    return LedgerRecord(
        request_id=request_id,
        job_id=job_id,
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        provider="openai",
        model="gpt-4.1",
        input_tokens=10,
        output_tokens=5,
        input_cost=Decimal(cost),
    )


def executed(text: str) -> Executed:
    """A finished call's result, as the engine journals it."""
    return Executed(result=ProviderResult(text=text, usage=Usage(input_tokens=10, output_tokens=5)))


@pytest.fixture
def stop_followers(monkeypatch):
    """Every LedgerActor made during the test stops following its journal afterwards."""
    from actors import ledger_actor

    made: list[ledger_actor.LedgerActor] = []
    original = ledger_actor.LedgerActor.__init__

    def tracking(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ledger_actor.LedgerActor, "__init__", tracking)
    yield
    for ledger in made:
        if ledger._poller is not None:
            ledger._poller.cancel()
