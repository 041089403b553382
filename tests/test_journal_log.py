"""The write-ahead journal: lines, group commit, following segments, and a provider actor's
journal sink feeding the LedgerActor (all without Ray)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from actors import ledger_actor as ledger_module
from actors.ledger_actor import LedgerActor
from actors.provider_actor import JournalLedgerSink
from llm.executor import Executed
from llm.providers.base import ProviderResult
from llm.types import Usage
from runtime.journal_log import (
    JOURNAL_DIR,
    GroupCommit,
    JournalEntry,
    JournalLog,
    JournalTail,
    read_journal,
)
from runtime.ledger_store import LedgerRecord, read_ledger


@pytest.fixture(autouse=True)
def stop_followers(monkeypatch):
    """Every LedgerActor made by a test stops following its journal when the test ends."""
    made: list[LedgerActor] = []
    original = LedgerActor.__init__

    def tracking(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ledger_module.LedgerActor, "__init__", tracking)
    yield
    for ledger in made:
        if ledger._poller is not None:
            ledger._poller.cancel()


def row(request_id: str, cost: str = "0.001") -> LedgerRecord:
    return LedgerRecord(
        request_id=request_id,
        job_id="job",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        provider="anthropic",
        model="claude-haiku-4.5",
        input_tokens=10,
        output_tokens=5,
        input_cost=Decimal(cost),
    )


def result(text: str) -> Executed:
    return Executed(result=ProviderResult(text=text, usage=Usage(input_tokens=10, output_tokens=5)))


def test_an_entry_round_trips_through_its_line():
    entry = JournalEntry(row("a", "0.0000000123"), result("tab\tand\nnewline").model_dump_json())
    line = entry.line()
    assert line.count("\t") == 1 and line.count("\n") == 1  # JSON escapes both
    back = JournalEntry.parse(line)
    assert back.record == entry.record and back.result_json == entry.result_json
    assert JournalEntry.parse(JournalEntry(row("b")).line()).result_json is None
    with pytest.raises(ValueError):
        JournalEntry.parse(line[:30])


def test_the_tail_reads_whole_lines_only_and_each_once(tmp_path):
    log = JournalLog(tmp_path)
    tail = JournalTail(tmp_path)
    log.append([JournalEntry(row("a")).line()])
    assert [e.request_id for e in tail.read_new()] == ["a"]
    assert tail.read_new() == []
    half = JournalEntry(row("b")).line()
    with log.path.open("ab") as handle:  # a line being written right now
        handle.write(half[:25].encode())
    assert tail.read_new() == []
    with log.path.open("ab") as handle:
        handle.write(half[25:].encode())
    assert [e.request_id for e in tail.read_new()] == ["b"]


def test_the_tail_follows_every_segment_but_the_skipped_one(tmp_path):
    first, second = JournalLog(tmp_path), JournalLog(tmp_path)
    first.append([JournalEntry(row("one")).line()])
    second.append([JournalEntry(row("two")).line()])
    assert first.path != second.path
    assert [e.request_id for e in JournalTail(tmp_path).read_new(skip=first.path)] == ["two"]
    assert sorted(e.request_id for e in read_journal(tmp_path)) == ["one", "two"]


async def test_group_commit_shares_writes_and_restores_a_failed_group(tmp_path):
    log = JournalLog(tmp_path)
    writes: list[int] = []
    append = log.append

    def counting(lines):
        writes.append(len(lines))
        append(lines)

    log.append = counting
    durable: list[str] = []
    commit = GroupCommit(
        log, on_durable=lambda entries: durable.extend(e.request_id for e in entries)
    )

    async def one(rid):
        commit.add(JournalEntry(row(rid)))
        await commit.commit([rid])

    first = asyncio.ensure_future(one("r0"))
    await asyncio.sleep(0)
    await asyncio.gather(first, *(one(f"r{i}") for i in range(1, 6)))
    assert writes == [1, 5] and sorted(durable) == [f"r{i}" for i in range(6)]

    def broken(lines):
        raise OSError("disk full")

    log.append = broken
    commit.add(JournalEntry(row("lost?")))
    with pytest.raises(OSError):
        await commit.commit()
    assert commit.pending_count == 1 and commit.is_pending("lost?")
    log.append = counting
    await commit.commit()
    assert commit.pending_count == 0 and "lost?" in durable


async def test_a_provider_sinks_rows_reach_the_ledger_and_its_results_the_lookups(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600, poll_interval_s=3600)
    sink = JournalLedgerSink(tmp_path / JOURNAL_DIR, "llm-ledger", "test")
    await asyncio.gather(
        sink.record(row("p1"), result("first")),
        sink.record(row("p2")),
        sink.record(row("p3"), result("third")),
    )
    assert sink.pending_count == 0
    found = await ledger.lookup(["p1", "p2", "p3"])  # reads the journal before answering
    assert found == {"p1": result("first"), "p3": result("third")}
    assert await ledger.flush() == 3
    assert sorted(read_ledger(tmp_path).column("request_id").to_pylist()) == ["p1", "p2", "p3"]
    await sink.record(row("p1"))  # a re-run after a provider actor restart: billed once
    assert await ledger.flush() == 0
    assert read_ledger(tmp_path).num_rows == 3
    await sink.aclose()


async def test_the_ledger_follows_the_journal_on_its_own(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=0.05, poll_interval_s=0.05)
    await ledger.start()
    sink = JournalLedgerSink(tmp_path / JOURNAL_DIR, "llm-ledger", "test")
    await sink.record(row("auto"))
    for _ in range(200):
        if read_ledger(tmp_path).num_rows:
            break
        await asyncio.sleep(0.02)
    assert read_ledger(tmp_path).column("request_id").to_pylist() == ["auto"]
