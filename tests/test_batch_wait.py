"""Progress of ``--mode batch`` while it waits: batch states, rows answered, ETA in the
progress view (rich on a terminal, plain lines otherwise), and each batch's rows in the
Parquet output as soon as that batch ends."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from jobs.batch_core import BatchSummary
from jobs.batch_input import read_rows
from jobs.batch_live import BatchWait, OpenBatch
from jobs.batch_output import OutputWriter, read_output
from jobs.batch_progress import ProgressBar
from jobs.provider_batch import ProviderBatchRun
from llm.emulator.batch_store import batch_service
from llm.emulator.server import settings_for, start_in_thread
from runtime.batch_journal import BatchJournal


def _wait() -> BatchWait:
    return BatchWait(
        open=[
            OpenBatch(
                "anthropic",
                "claude-haiku-5.5",
                "msgbatch_0123456789abcdef",
                "in_progress",
                rows=100,
                answered=25,
                waited_s=60.0,
            ),  # fmt: skip
            OpenBatch("openai", "gpt-6.1-terra", "batch_abc", "submitted", rows=40),
        ],
        collected=1,
        retried={"batch": 3},
    )


def test_the_wait_figures_and_the_plain_line():
    wait = _wait()
    assert wait.states == {"in_progress": 1, "submitted": 1}
    assert (wait.rows, wait.answered) == (140, 25)
    assert wait.eta_s == pytest.approx(180.0)  # 25 of 100 in 60 s: 75 more take 180 s
    assert BatchWait(open=[OpenBatch("openai", "m", "b", "in_progress", rows=4)]).eta_s is None
    stream = io.StringIO()
    bar = ProgressBar(stream, total=200, is_tty=False)
    bar.batches = wait
    bar.update(BatchSummary(ok=30, failed=2))
    line = stream.getvalue()
    assert "batches open: 2 (1 in_progress, 1 submitted); collected 1" in line
    assert "rows answered 25/140; waited 1m00s; ETA 3m00s; retried 3 batch" in line
    assert "rows written 32/200 (2 failed)" in line
    bar.batches = BatchWait(open=[OpenBatch("openai", "m", "b", "in_progress", rows=4)])
    assert "ETA within 24 h" in bar.line(BatchSummary())


def test_the_rich_view_shows_a_table_of_the_open_batches():
    stream = io.StringIO()
    bar = ProgressBar(stream, total=200, is_tty=True, width=140)
    bar.batches = _wait()
    bar.update(BatchSummary(ok=30))
    bar.close(BatchSummary(ok=30))
    text = stream.getvalue()
    for cell in ("rows written 30 / 200", "0123456789abcdef", "in_progress", "25/100", "1m00s"):
        assert cell in text


@pytest.fixture
def emu():
    thread = start_in_thread()
    batch_service(thread.engine).settings.processing_s = 3600.0
    yield thread
    thread.stop()


def test_rows_reach_the_output_as_each_batch_ends(emu, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    models = ["claude-haiku-5.5", "gpt-6.1-terra"]
    rows = [{"id": f"r{i}", "model": models[i % 2], "prompt": f"Q {i}?"} for i in range(4)]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    service = batch_service(emu.engine)
    stream = io.StringIO()

    async def scenario():
        run = ProviderBatchRun(
            job_id="j", output_dir=out, writer=OutputWriter(out), done_ids=set(),
            settings=settings_for(emu.base_url), poll_s=0.05, out=stream,
            progress=ProgressBar(stream, total=4, is_tty=False, plain_interval_s=0.0),
        )  # fmt: skip
        task = asyncio.create_task(run.run(read_rows(source)))
        while len(BatchJournal(out).in_flight()) < 2:
            await asyncio.sleep(0.02)
        first, second = (service.jobs[b.batch_id] for b in BatchJournal(out).in_flight())
        first.created_at -= 3600  # this one ends now, the other in an hour
        while not (out.exists() and _ids(out)):
            assert not task.done()
            await asyncio.sleep(0.02)
        written_while_waiting = _ids(out)
        assert not task.done() and second.state != "ended"
        second.created_at -= 3600
        await task
        return written_while_waiting, first.provider

    written, provider = asyncio.run(scenario())
    expected = {"anthropic": {"r0", "r2"}, "openai": {"r1", "r3"}}[provider]
    assert written == expected
    assert _ids(out) == {"r0", "r1", "r2", "r3"}
    log = stream.getvalue()
    assert "batches open: 2 (2 in_progress); collected 0" in log
    assert "batches open: 1 (1 in_progress); collected 1" in log
    assert "batches open: 0 (none); collected 2" in log


def _ids(out: Path) -> set[str]:
    return {r["id"] for r in read_output(out).to_pylist()}
