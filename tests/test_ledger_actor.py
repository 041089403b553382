"""The LedgerActor as a plain class (no Ray): journal group commit, bulk Parquet writes,
dedup while rows are in flight, results answered after a restart, healing at start."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from actors.ledger_actor import JOURNAL_DIR, LedgerActor
from runtime.journal_log import read_journal
from runtime.ledger_store import read_ledger
from tests.ledger_support import executed, ledger_row

pytestmark = pytest.mark.usefixtures("stop_followers")


def parts(directory) -> list:
    return sorted(directory.glob("part-*.parquet"))


def journaled_ids(directory) -> list[str]:
    return [entry.request_id for entry in read_journal(directory / JOURNAL_DIR)]


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def test_concurrent_records_are_journaled_together_and_durable_on_return(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    accepted = await asyncio.gather(*(ledger.record([ledger_row(f"r{i}")]) for i in range(20)))
    assert sorted(rid for ids in accepted for rid in ids) == sorted(f"r{i}" for i in range(20))
    assert sorted(journaled_ids(tmp_path)) == sorted(f"r{i}" for i in range(20))
    assert ledger._log.lines_written == 20 and len(list((tmp_path / JOURNAL_DIR).iterdir())) == 1
    assert parts(tmp_path) == []  # Parquet comes later, in bulk
    assert await ledger.flush() == 20
    assert len(parts(tmp_path)) == 1 and read_ledger(tmp_path).num_rows == 20
    assert await ledger.record([ledger_row("r3")]) == []  # already there: dropped
    assert await ledger.flush() == 0 and len(parts(tmp_path)) == 1
    assert ledger._log.lines_written == 20


async def test_rows_arriving_during_a_journal_write_go_in_the_next_one(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    writes: list[int] = []
    append = ledger._log.append

    def counting_append(lines):
        writes.append(len(lines))
        append(lines)

    ledger._log.append = counting_append
    first = asyncio.ensure_future(ledger.record([ledger_row("a")]))
    await asyncio.sleep(0)  # the first write has started
    rest = [asyncio.ensure_future(ledger.record([ledger_row(f"b{i}")])) for i in range(5)]
    await asyncio.gather(first, *rest)
    assert writes == [1, 5]


async def test_a_duplicate_of_a_row_still_being_journaled_waits_for_it(tmp_path):
    ledger = LedgerActor(tmp_path, commit_interval_s=0.05, flush_interval_s=3600)
    first, second = await asyncio.gather(
        ledger.record([ledger_row("x")]), ledger.record([ledger_row("x")])
    )
    assert (first, second) == (["x"], [])
    assert journaled_ids(tmp_path) == ["x"]


async def test_commit_interval_gathers_rows_and_max_batch_cuts_it_short(tmp_path):
    ledger = LedgerActor(tmp_path, commit_interval_s=3600, max_batch=3, flush_interval_s=3600)
    waiting = asyncio.ensure_future(ledger.record([ledger_row("a")]))
    await asyncio.sleep(0.05)
    assert ledger.pending_count() == 1 and not waiting.done()
    await asyncio.wait_for(ledger.record([ledger_row("b"), ledger_row("c")]), timeout=10)
    await asyncio.wait_for(waiting, timeout=10)
    assert sorted(journaled_ids(tmp_path)) == ["a", "b", "c"]
    await until(lambda: len(parts(tmp_path)) == 1)  # a full batch is written without the timer
    assert read_ledger(tmp_path).num_rows == 3


async def test_the_interval_timer_writes_a_part_file(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=0.05)
    await ledger.record([ledger_row("t1"), ledger_row("t2")])
    await until(lambda: len(parts(tmp_path)) == 1)
    assert sorted(read_ledger(tmp_path).column("request_id").to_pylist()) == ["t1", "t2"]


async def test_journaled_results_survive_a_restart(tmp_path):
    ledger = LedgerActor(tmp_path)
    await ledger.record([ledger_row("j1"), ledger_row("j2")], {"j1": executed("answer one")})
    restarted = LedgerActor(tmp_path)
    found = await restarted.lookup(["j1", "j2", "nope"])
    assert found == {"j1": executed("answer one")}
    totals = await restarted.totals(job_id="job")
    assert totals["requests"] == 2 and totals["total_cost"] == Decimal("0.002")
    assert (await restarted.totals(job_id="other"))["requests"] == 0


async def test_journaled_rows_missing_from_parquet_are_written_at_start(tmp_path):
    killed = LedgerActor(tmp_path, flush_interval_s=3600)
    await killed.record([ledger_row("h1")], {"h1": executed("kept")})
    assert read_ledger(tmp_path).num_rows == 0  # acknowledged, but only in the journal
    restarted = LedgerActor(tmp_path)  # as after a kill: the first never wrote Parquet
    assert read_ledger(tmp_path).column("request_id").to_pylist() == ["h1"]
    assert (await restarted.lookup(["h1"]))["h1"] == executed("kept")
    assert await restarted.record([ledger_row("h1")]) == []  # and it is not billed again
    assert await restarted.flush() == 0


async def test_a_torn_last_journal_line_is_skipped(tmp_path):
    first = LedgerActor(tmp_path, flush_interval_s=3600)
    await first.record([ledger_row("ok1")], {"ok1": executed("fine")})
    segment = first._log.path
    with segment.open("ab") as handle:  # a write cut short by a kill
        handle.write(ledger_row("torn").model_dump_json().encode()[:40])
    restarted = LedgerActor(tmp_path)
    assert read_ledger(tmp_path).column("request_id").to_pylist() == ["ok1"]
    assert (await restarted.lookup(["ok1"]))["ok1"] == executed("fine")


async def test_a_failed_journal_write_fails_the_record_and_keeps_nothing_half_done(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)

    def broken(lines):
        raise OSError("disk full")

    ledger._log.append = broken
    with pytest.raises(OSError):
        await ledger.record([ledger_row("f1")])
    assert ledger.pending_count() == 1  # still waiting, not acknowledged
    del ledger._log.append  # the disk is back
    assert await ledger.record([ledger_row("f1")]) == []  # the retry joins the pending row
    assert journaled_ids(tmp_path) == ["f1"]


async def test_a_failed_parquet_write_keeps_the_rows_for_the_next_flush(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    await ledger.record([ledger_row("p1"), ledger_row("p2")])
    write = ledger._writer.write_batch

    def broken(batch):
        raise OSError("disk full")

    ledger._writer.write_batch = broken
    with pytest.raises(OSError):
        await ledger.flush()
    assert ledger._writer.pending_count == 2
    ledger._writer.write_batch = write
    assert await ledger.flush() == 2
    assert read_ledger(tmp_path).num_rows == 2


async def test_a_failing_parquet_write_is_retried_after_the_interval_not_at_once(tmp_path):
    ledger = LedgerActor(tmp_path, max_batch=2, flush_interval_s=0.2)
    attempts: list[float] = []
    write = ledger._writer.write_batch

    def broken(batch):
        attempts.append(time.monotonic())
        raise OSError("disk full")

    ledger._writer.write_batch = broken
    await ledger.record([ledger_row("f1"), ledger_row("f2")])  # a full batch: written at once
    await asyncio.sleep(0.5)
    assert 1 <= len(attempts) <= 4  # once, then once per interval (a tight loop makes 1000s)
    ledger._writer.write_batch = write
    await until(lambda: len(parts(tmp_path)) == 1)
    assert read_ledger(tmp_path).num_rows == 2


def test_legacy_parquet_journal_parts_are_still_read(tmp_path):
    import pyarrow as pa

    from runtime.parquet_files import new_part_path, write_parquet_atomically

    legacy = pa.table(
        {
            "request_id": ["old"],
            "job_id": ["job"],
            "record": [ledger_row("old").model_dump_json(round_trip=True)],
            "result": [executed("from before").model_dump_json(round_trip=True)],
        }
    )
    write_parquet_atomically(legacy, new_part_path(tmp_path / JOURNAL_DIR))
    restarted = LedgerActor(tmp_path)
    assert read_ledger(tmp_path).column("request_id").to_pylist() == ["old"]
    assert asyncio.run(restarted.lookup(["old"]))["old"] == executed("from before")


async def test_a_kill_before_a_part_file_appeared_writes_its_rows_at_the_next_start(tmp_path):
    from runtime.ledger_index import LedgerIndex

    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    await ledger.record([ledger_row("k1"), ledger_row("k2")])
    ledger._writer.take_batch()  # the kill: rows assigned to a part that was never written
    ledger._index.assign_part("part-never-written.parquet", ["k1", "k2"])
    ledger._index.close()
    LedgerActor(tmp_path)
    assert sorted(read_ledger(tmp_path).column("request_id").to_pylist()) == ["k1", "k2"]
    assert LedgerIndex(tmp_path).pending() == []


async def test_a_kill_after_a_part_file_appeared_writes_nothing_twice(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    await ledger.record([ledger_row("w1")], {"w1": executed("once")})
    ledger._index.part_written = lambda name: None  # killed before the index heard of it
    await ledger.flush()
    ledger._index.close()
    restarted = LedgerActor(tmp_path)
    assert read_ledger(tmp_path).column("request_id").to_pylist() == ["w1"]
    assert await restarted.record([ledger_row("w1")]) == []
    assert (await restarted.lookup(["w1"]))["w1"] == executed("once")


async def test_an_old_ledger_without_an_index_is_indexed_from_its_part_files(tmp_path):
    from runtime.ledger_store import LedgerWriter

    with LedgerWriter(tmp_path) as writer:
        writer.append([ledger_row("old1"), ledger_row("old2")])
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    assert await ledger.record([ledger_row("old1"), ledger_row("new")]) == ["new"]
    await ledger.flush()
    assert read_ledger(tmp_path).num_rows == 3


async def test_results_journaled_before_the_index_existed_are_still_answered(tmp_path):
    import shutil

    from runtime.ledger_index import INDEX_DIR

    first = LedgerActor(tmp_path, flush_interval_s=3600)
    await first.record([ledger_row("pre")], {"pre": executed("kept")})
    await first.flush()
    first._index.close()
    shutil.rmtree(tmp_path / INDEX_DIR)  # as written by a version without the index
    upgraded = LedgerActor(tmp_path)
    assert (await upgraded.lookup(["pre"]))["pre"] == executed("kept")
    assert read_ledger(tmp_path).num_rows == 1
