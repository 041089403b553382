"""Journal compaction: sealed segments whose rows are in Parquet and whose results are no
longer needed are removed (or their few live results copied), under concurrent writers and
kills between any two steps; nothing is lost and nothing is billed twice."""

from __future__ import annotations

import pytest

from actors.ledger_actor import LedgerActor
from runtime.journal_log import (
    JOURNAL_DIR,
    SEGMENT_GLOB,
    JournalEntry,
    JournalLog,
    lock_sealed,
)
from runtime.ledger_store import read_ledger
from runtime.ledger_view import read_complete
from tests.ledger_support import executed, ledger_row

pytestmark = pytest.mark.usefixtures("stop_followers")


def segments(directory) -> list:
    return sorted((directory / JOURNAL_DIR).glob(SEGMENT_GLOB))


def provider_segment(directory, ids, *, results=True, job="job") -> JournalLog:
    """What a provider actor does: journal rows (with results) in a segment of its own."""
    log = JournalLog(directory / JOURNAL_DIR)
    log.append(
        [
            JournalEntry.of_call(
                ledger_row(rid, job_id=job), executed(rid) if results else None
            ).line()
            for rid in ids
        ]
    )
    return log


def test_a_writer_seals_its_segment_when_full_and_only_sealed_ones_can_be_locked(tmp_path):
    log = JournalLog(tmp_path, max_bytes=600)
    line = JournalEntry(ledger_row("a")).line()
    log.append([line])
    first = log.path
    assert lock_sealed(first) is None  # its writer holds it
    log.append([line, line])  # past max_bytes: sealed
    handle = lock_sealed(first)
    assert handle is not None
    handle.close()
    log.append([line])
    assert log.path != first and lock_sealed(log.path) is None
    log.close()


async def test_sealed_segments_go_once_in_parquet_and_released_and_open_ones_stay(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    done = provider_segment(tmp_path, ["a1", "a2"])
    done.close()  # sealed: its provider actor rotated or died
    running = provider_segment(tmp_path, ["b1"])  # still open in a live provider actor
    without_results = provider_segment(tmp_path, ["c1"], results=False)
    without_results.close()
    assert (await ledger.compact())["removed"] == 1  # only the result-less one
    assert await ledger.release(["a1", "a2", "b1"]) == 3
    outcome = await ledger.compact()
    assert outcome["removed"] == 1 and outcome["busy"] >= 1
    assert segments(tmp_path) == [running.path]
    ids = sorted(read_ledger(tmp_path).column("request_id").to_pylist())
    assert ids == ["a1", "a2", "b1", "c1"]  # every row in Parquet, each once
    assert await ledger.record([ledger_row("a1")]) == []  # still known: not billed twice
    running.close()


async def test_a_segment_with_few_live_results_is_rewritten_and_lookups_still_answer(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    provider_segment(tmp_path, [f"r{i}" for i in range(10)]).close()
    before = sum(p.stat().st_size for p in segments(tmp_path))
    await ledger.release([f"r{i}" for i in range(8)])  # r8, r9 not in the output yet
    assert (await ledger.compact())["rewritten"] == 1
    ledger._compact_log.close()
    after = sum(p.stat().st_size for p in segments(tmp_path))
    assert after < before / 3
    assert await ledger.lookup(["r8", "r9", "r1"]) == {"r8": executed("r8"), "r9": executed("r9")}
    restarted = LedgerActor(tmp_path)
    assert (await restarted.lookup(["r9"]))["r9"] == executed("r9")
    assert read_ledger(tmp_path).num_rows == 10


async def test_a_mostly_live_segment_is_kept_until_its_results_are_released(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    provider_segment(tmp_path, ["m1", "m2", "m3"]).close()
    assert (await ledger.compact())["kept"] == 1
    assert read_ledger(tmp_path).num_rows == 3  # but its rows went to Parquet
    await ledger.finish_job("job")
    assert (await ledger.compact())["removed"] == 1
    assert segments(tmp_path) == []


async def test_a_kill_after_copying_live_results_but_before_the_index_moved(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    provider_segment(tmp_path, ["k0", "k1", "k2", "k3"]).close()
    await ledger.release(["k0", "k1", "k2"])

    def killed(*args, **kwargs):
        raise SystemExit("killed")

    ledger._index.move = killed
    with pytest.raises(SystemExit):
        await ledger.compact()
    ledger._index.close()
    ledger._compact_log.close()
    restarted = LedgerActor(tmp_path, flush_interval_s=3600)
    assert (await restarted.lookup(["k3"]))["k3"] == executed("k3")
    assert await restarted.record([ledger_row("k3")]) == []
    await restarted.compact()  # the original goes now; the stray copy holds nothing indexed
    restarted._compact_log.close()
    await restarted.compact()
    assert (await restarted.lookup(["k3"]))["k3"] == executed("k3")
    assert len(segments(tmp_path)) == 1
    assert sorted(read_complete(tmp_path).column("request_id").to_pylist()) == [
        "k0",
        "k1",
        "k2",
        "k3",
    ]


async def test_a_kill_after_the_index_moved_but_before_the_segment_was_deleted(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    provider_segment(tmp_path, ["d1", "d2"]).close()
    await ledger.release(["d1", "d2"])
    await ledger.flush()
    (segment,) = segments(tmp_path)
    ledger._index.move([], segment.name)  # the kill comes right after this step
    ledger._index.close()
    restarted = LedgerActor(tmp_path, flush_interval_s=3600)
    assert read_ledger(tmp_path).num_rows == 2  # not written again from the leftover
    assert (await restarted.compact())["removed"] == 1
    assert segments(tmp_path) == []
    assert await restarted.record([ledger_row("d1")]) == []
    assert read_complete(tmp_path).num_rows == 2


async def test_the_journal_stays_bounded_while_a_job_streams_through(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600)
    writer = JournalLog(tmp_path / JOURNAL_DIR, max_bytes=20_000)
    peak = 0
    for batch in range(30):
        ids = [f"s{batch}-{i}" for i in range(10)]
        for rid in ids:
            writer.append([JournalEntry.of_call(ledger_row(rid), executed(rid)).line()])
        await ledger.catch_up()
        await ledger.release(ids)  # the job's output took them
        await ledger.compact()
        peak = max(peak, sum(p.stat().st_size for p in segments(tmp_path)))
    writer.close()
    await ledger.compact()
    assert peak < 3 * 20_000 + 5_000  # a few segments, not 300 rows' worth of history
    assert segments(tmp_path) == []
    assert read_ledger(tmp_path).num_rows == 300


async def test_results_of_an_abandoned_job_go_after_their_time_to_live(tmp_path):
    ledger = LedgerActor(tmp_path, flush_interval_s=3600, result_ttl_s=0.0)
    provider_segment(tmp_path, ["old1", "old2"]).close()  # never released by their job
    assert (await ledger.compact())["removed"] == 1
    assert read_ledger(tmp_path).num_rows == 2 and await ledger.lookup(["old1"]) == {}
