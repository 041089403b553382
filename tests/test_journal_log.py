"""The write-ahead journal: lines, group commit, following segments, and a provider actor's
journal sink feeding the LedgerActor (all without Ray)."""

from __future__ import annotations

import asyncio

import pytest

from actors.ledger_actor import LedgerActor
from runtime.journal_log import (
    JOURNAL_DIR,
    GroupCommit,
    JournalEntry,
    JournalLog,
    JournalTail,
    read_journal,
)
from runtime.journal_sink import JournalLedgerSink
from runtime.ledger_store import read_ledger
from tests.ledger_support import executed, ledger_row

pytestmark = pytest.mark.usefixtures("stop_followers")


def test_an_entry_round_trips_through_its_line():
    entry = JournalEntry(
        ledger_row("a", cost="0.0000000123"), executed("tab\tand\nnewline").model_dump_json()
    )
    line = entry.line()
    assert line.count("\t") == 1 and line.count("\n") == 1  # JSON escapes both
    back = JournalEntry.parse(line)
    assert back.record == entry.record and back.result_json == entry.result_json
    assert JournalEntry.parse(JournalEntry(ledger_row("b")).line()).result_json is None
    with pytest.raises(ValueError):
        JournalEntry.parse(line[:30])


def test_the_tail_reads_whole_lines_only_and_each_once(tmp_path):
    log = JournalLog(tmp_path)
    tail = JournalTail(tmp_path)
    log.append([JournalEntry(ledger_row("a")).line()])
    assert [e.request_id for e in tail.read_new()] == ["a"]
    assert tail.read_new() == []
    half = JournalEntry(ledger_row("b")).line()
    with log.path.open("ab") as handle:  # a line being written right now
        handle.write(half[:25].encode())
    assert tail.read_new() == []
    with log.path.open("ab") as handle:
        handle.write(half[25:].encode())
    assert [e.request_id for e in tail.read_new()] == ["b"]


def test_the_tail_follows_every_segment_but_the_skipped_one(tmp_path):
    first, second = JournalLog(tmp_path), JournalLog(tmp_path)
    first.append([JournalEntry(ledger_row("one")).line()])
    second.append([JournalEntry(ledger_row("two")).line()])
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
        commit.add(JournalEntry(ledger_row(rid)))
        await commit.commit([rid])

    first = asyncio.ensure_future(one("r0"))
    await asyncio.sleep(0)
    await asyncio.gather(first, *(one(f"r{i}") for i in range(1, 6)))
    assert writes == [1, 5] and sorted(durable) == [f"r{i}" for i in range(6)]

    def broken(lines):
        raise OSError("disk full")

    log.append = broken
    commit.add(JournalEntry(ledger_row("lost?")))
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
        sink.record(ledger_row("p1"), executed("first")),
        sink.record(ledger_row("p2")),
        sink.record(ledger_row("p3"), executed("third")),
    )
    assert sink.pending_count == 0
    found = await ledger.lookup(["p1", "p2", "p3"])  # reads the journal before answering
    assert found == {"p1": executed("first"), "p3": executed("third")}
    assert await ledger.flush() == 3
    assert sorted(read_ledger(tmp_path).column("request_id").to_pylist()) == ["p1", "p2", "p3"]
    await sink.record(ledger_row("p1"))  # a re-run after a provider actor restart: billed once
    assert await ledger.flush() == 0
    assert read_ledger(tmp_path).num_rows == 3
    await sink.aclose()


async def test_the_ledger_follows_the_journal_on_its_own(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=0.05, poll_interval_s=0.05)
    await ledger.start()
    sink = JournalLedgerSink(tmp_path / JOURNAL_DIR, "llm-ledger", "test")
    await sink.record(ledger_row("auto"))
    for _ in range(200):
        if read_ledger(tmp_path).num_rows:
            break
        await asyncio.sleep(0.02)
    assert read_ledger(tmp_path).column("request_id").to_pylist() == ["auto"]


class _TearingHandle:
    """A segment handle whose next write stores only part of the data, then fails."""

    def __init__(self, real):
        self.real = real

    def write(self, data: bytes) -> int:
        self.real.write(data[:25])
        self.real.flush()
        raise OSError("disk full")

    def close(self) -> None:
        self.real.close()


def test_a_line_retried_after_a_torn_write_is_not_glued_to_it(tmp_path):
    log = JournalLog(tmp_path)
    log.append([JournalEntry(ledger_row("before")).line()])
    first_segment = log.path
    log._handle = _TearingHandle(log._handle)
    line = JournalEntry(ledger_row("retried")).line()
    with pytest.raises(OSError):
        log.append([line])
    log.append([line])  # the retry goes to a fresh segment
    assert log.path != first_segment
    assert sorted(e.request_id for e in read_journal(tmp_path)) == ["before", "retried"]
