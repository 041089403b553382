"""Rows a provider batch did not answer are sent again within the same run: in a new batch
while the deadline allows one, online after that (jobs.batch_retry), on the emulator's
injectable clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from jobs.batch import _online_retry_service, service_call
from jobs.batch_input import read_rows
from jobs.batch_output import OutputWriter, read_output
from jobs.batch_retry import BATCH_WINDOW_S, RowRetries
from jobs.provider_batch import ProviderBatchRun
from llm.emulator.batch_store import DAY_S, batch_service
from llm.emulator.server import settings_for, start_in_thread
from llm.exceptions import InvalidRequestError, ProviderError
from llm.providers.batch_base import BatchRowCanceledError, BatchRowExpiredError
from runtime.batch_journal import BatchJournal
from runtime.ledger_store import LedgerWriter, read_ledger

MODELS = ["claude-haiku-5.5", "gpt-6.1-terra", "gemini-3.8-flash"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_which_rows_are_held_and_by_which_path():
    clock = Clock()
    expired = BatchRowExpiredError("expired", provider="openai")
    no_deadline = RowRetries(clock=clock)
    assert no_deadline.wants("a", expired) and no_deadline.path() == "batch"
    assert not no_deadline.wants("a", expired)  # one retry per row and run
    assert not no_deadline.wants("b", BatchRowCanceledError("canceled", provider="openai"))
    assert not no_deadline.wants("c", InvalidRequestError("bad", provider="openai"))
    assert no_deadline.wants("d", ProviderError("500", provider="openai"))
    assert no_deadline.take() == ["a", "d"] and no_deadline.take() == []

    deadline = RowRetries(deadline_s=36 * 3600, clock=clock, can_go_online=True)
    assert deadline.path() == "batch"
    clock.now += 12 * 3600 + 1  # less than a batch window left
    assert deadline.path() == "online"
    stuck = RowRetries(deadline_s=BATCH_WINDOW_S, clock=clock)
    clock.now += 1
    assert stuck.path() == "none" and not stuck.wants("x", expired)  # written, next run


@pytest.fixture
def emu():
    thread = start_in_thread()
    service = batch_service(thread.engine)
    service.settings.clock = Clock()
    service.settings.processing_s = 2 * DAY_S  # every batch expires after a day
    yield thread
    thread.stop()


def _input(tmp_path: Path) -> Path:
    rows = [{"id": f"r{i}", "model": MODELS[i], "prompt": f"Question {i}?"} for i in range(3)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _submitted(out: Path) -> list[list[str]]:
    events = BatchJournal(out).events()
    return [[row for _, row in e["rows"]] for e in events if e["event"] == "submitted"]


async def _expire_first_batches(emu, run_task: asyncio.Task, out: Path, then) -> None:
    """Wait for the three batches, move the emulator a day on (they expire), then call
    ``then`` once the run has reacted (``then`` returns True when done waiting)."""
    service = batch_service(emu.engine)
    while len(_submitted(out)) < 3:
        assert not run_task.done()
        await asyncio.sleep(0.02)
    service.settings.clock.now += DAY_S + 1
    while not then():
        assert not run_task.done(), run_task.exception()
        await asyncio.sleep(0.02)


def test_expired_rows_go_in_a_new_batch_within_the_run(emu, tmp_path):
    source, out = _input(tmp_path), tmp_path / "out"
    service = batch_service(emu.engine)
    settings = settings_for(emu.base_url).with_overrides(ledger_dir=str(tmp_path / "ledger"))

    async def scenario():
        run = ProviderBatchRun(
            job_id="j", output_dir=out, writer=OutputWriter(out), done_ids=set(),
            settings=settings, poll_s=0.05, ledger=LedgerWriter(tmp_path / "ledger"),
        )  # fmt: skip
        task = asyncio.create_task(run.run(read_rows(source)))

        def retried() -> bool:
            if len(_submitted(out)) < 6:
                return False
            service.settings.processing_s = 0.0  # the retries finish at once
            return True

        await _expire_first_batches(emu, task, out, retried)
        return run, await task

    run, summary = asyncio.run(scenario())
    assert summary.ok == 3 and summary.failed == 0
    assert service.created == 6 and run.retries.sent == {"batch": 3, "online": 0}
    assert sorted(r["id"] for r in read_output(out).to_pylist()) == ["r0", "r1", "r2"]
    ledger = read_ledger(tmp_path / "ledger").to_pylist()
    assert len(ledger) == 3 and {r["tier"] for r in ledger} == {"batch"}
    assert BatchJournal(out).in_flight() == []


def test_expired_rows_go_online_when_the_deadline_leaves_no_batch_window(emu, tmp_path):
    source, out = _input(tmp_path), tmp_path / "out"
    service = batch_service(emu.engine)
    settings = settings_for(emu.base_url).with_overrides(ledger_dir=str(tmp_path / "ledger"))

    async def scenario():
        online = _online_retry_service(settings)
        run = ProviderBatchRun(
            job_id="j", output_dir=out, writer=OutputWriter(out), done_ids=set(),
            settings=settings, poll_s=0.05, ledger=LedgerWriter(tmp_path / "ledger"),
            clock=service.settings.clock, deadline_s=36 * 3600,
            online_call=service_call(online),
        )  # fmt: skip
        task = asyncio.create_task(run.run(read_rows(source)))
        try:
            await _expire_first_batches(emu, task, out, lambda: task.done())
            return run, await task
        finally:
            await online.aclose()

    run, summary = asyncio.run(scenario())
    assert summary.ok == 3 and summary.failed == 0
    assert service.created == 3 and run.retries.sent == {"batch": 0, "online": 3}
    rows = read_output(out).to_pylist()
    assert sorted(r["id"] for r in rows) == ["r0", "r1", "r2"]
    assert all(r["status"] == "ok" and r["text"] for r in rows)
    ledger = read_ledger(tmp_path / "ledger").to_pylist()
    assert len(ledger) == 3 and {r["tier"] for r in ledger} == {"standard"}
    assert summary.cost == sum(r["total_cost"] for r in ledger)
