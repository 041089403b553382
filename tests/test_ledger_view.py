"""Readers see the whole ledger: Parquet part files plus rows journaled but not yet there."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.ledger_actor import LedgerActor
from jobs.costs import load, totals
from runtime.journal_log import JOURNAL_DIR, JournalEntry, JournalLog
from runtime.ledger_store import LedgerWriter, read_ledger
from runtime.ledger_view import read_complete, scan_complete
from tests.ledger_support import ledger_row

pytestmark = pytest.mark.usefixtures("stop_followers")


def test_journaled_rows_missing_from_parquet_are_read_each_once(tmp_path):
    with LedgerWriter(tmp_path) as writer:
        writer.append([ledger_row("p1"), ledger_row("both")])
    log = JournalLog(tmp_path / JOURNAL_DIR)
    log.append([JournalEntry(ledger_row(rid)).line() for rid in ("both", "j1", "j2")])
    log.append([JournalEntry(ledger_row("other", job_id="job2")).line()])
    with (log.path).open("ab") as handle:  # a torn last line is no row
        handle.write(JournalEntry(ledger_row("torn")).line().encode()[:30])
    assert read_ledger(tmp_path).num_rows == 2  # what DuckDB sees now
    table = read_complete(tmp_path)
    assert sorted(table.column("request_id").to_pylist()) == ["both", "j1", "j2", "other", "p1"]
    of_job = read_complete(tmp_path, job_id="job")
    assert sorted(of_job.column("request_id").to_pylist()) == ["both", "j1", "j2", "p1"]
    narrow = list(scan_complete(tmp_path, columns=["total_cost"], job_id="job2"))
    assert [t.column_names for t in narrow] == [["total_cost"]]
    assert sum(t.num_rows for t in narrow) == 1


def test_the_cost_report_and_the_ledger_totals_count_journaled_rows(tmp_path):
    log = JournalLog(tmp_path / JOURNAL_DIR)
    log.append([JournalEntry(ledger_row(f"r{i}", cost="0.25")).line() for i in range(4)])
    assert totals(load(tmp_path))["total_cost"] == Decimal("1.00")
    assert load(tmp_path, job_id="job").num_rows == 4


async def test_ledger_actor_totals_stream_the_complete_ledger(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    await ledger.record([ledger_row("a", cost="0.5"), ledger_row("b", job_id="j2")])
    summary = await ledger.totals(job_id="job")
    assert summary["requests"] == 1 and summary["total_cost"] == Decimal("0.5")
    assert summary["by_model"]["gpt-4.1"]["requests"] == 1
    assert (await ledger.totals())["requests"] == 2


def test_rows_compacted_away_during_a_scan_are_found_in_their_new_part_file(tmp_path):
    with LedgerWriter(tmp_path) as writer:
        writer.append([ledger_row("a")])
    log = JournalLog(tmp_path / JOURNAL_DIR)
    log.append([JournalEntry(ledger_row(rid)).line() for rid in ("b", "c")])
    log.close()
    tables = scan_complete(tmp_path)
    first = next(tables)  # the journal has been read, and the first part file
    with LedgerWriter(tmp_path) as writer:  # meanwhile the ledger actor writes b, c ...
        writer.append([ledger_row("b"), ledger_row("c")])
    log.path.unlink()  # ... and compacts their segment away
    ids = first.column("request_id").to_pylist()
    ids += [rid for table in tables for rid in table.column("request_id").to_pylist()]
    assert sorted(ids) == ["a", "b", "c"]
