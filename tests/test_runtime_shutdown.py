"""``Runtime.shutdown`` compacts the ledger's journal after its final flush, so what a job
leaves in ``_journal`` does not depend on the ledger actor's compaction timer; a compaction
that fails does not fail the shutdown. Without Ray: the ledger handle is a real
:class:`~actors.ledger_actor.LedgerActor` behind a stand-in for ``.remote()`` and ``ray.get``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import ray

from actors.ledger_actor import LedgerActor
from actors.runtime import Runtime
from runtime.journal_log import JOURNAL_DIR, SEGMENT_GLOB, JournalEntry, JournalLog
from tests.ledger_support import executed, ledger_row

pytestmark = pytest.mark.usefixtures("stop_followers")


class _Method:
    def __init__(self, handle: _Handle, name: str) -> None:
        self.handle, self.name = handle, name

    def remote(self, *args):
        self.handle.calls.append(self.name)
        if self.name in self.handle.failing:
            raise RuntimeError("the ledger actor is gone")
        return getattr(self.handle.actor, self.name)(*args)


class _Handle:
    """``ledger.flush.remote()`` etc. on an in-process LedgerActor."""

    def __init__(self, actor: LedgerActor, failing: set[str] = frozenset()) -> None:
        self.actor, self.failing, self.calls = actor, failing, []

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


@pytest.fixture
def loop(monkeypatch):
    loop = asyncio.new_event_loop()
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get", lambda ref, timeout=None: loop.run_until_complete(ref))
    yield loop
    loop.run_until_complete(asyncio.sleep(0))  # let the cancelled poller end
    loop.close()


@pytest.fixture
def actor(tmp_path, loop):
    async def started() -> LedgerActor:
        return LedgerActor(tmp_path, flush_interval_s=3600, compact_interval_s=3600)

    actor = loop.run_until_complete(started())
    yield actor
    loop.run_until_complete(actor.aclose())


def _segment(directory, ids) -> None:
    """A provider actor's segment, sealed (it rotated or its actor ended)."""
    log = JournalLog(directory / JOURNAL_DIR)
    log.append([JournalEntry.of_call(ledger_row(rid), executed(rid)).line() for rid in ids])
    log.close()


def _journaled(directory) -> list:
    return [p for p in (directory / JOURNAL_DIR).glob(SEGMENT_GLOB) if p.stat().st_size]


def _runtime(handle: _Handle) -> Runtime:
    runtime = Runtime.__new__(Runtime)  # no settings, no Ray: only what shutdown reads
    runtime._ledger, runtime.started_ray = handle, False
    return runtime


def test_shutdown_flushes_then_compacts_the_journal(tmp_path, loop, actor):
    _segment(tmp_path, ["a1", "a2"])
    _segment(tmp_path, ["b1"])
    loop.run_until_complete(actor.release(["a1", "a2", "b1"]))  # in the job's output
    assert len(_journaled(tmp_path)) == 2
    handle = _Handle(actor)
    _runtime(handle).shutdown()
    assert handle.calls == ["flush", "compact"]
    assert _journaled(tmp_path) == []  # not left for the timer
    assert loop.run_until_complete(actor.lookup(["a1"])) == {}


def test_a_failed_compaction_does_not_fail_the_shutdown(loop, actor, caplog):
    handle = _Handle(actor, failing={"compact"})
    with caplog.at_level(logging.WARNING, logger="llm.runtime"):
        _runtime(handle).shutdown()
    assert handle.calls == ["flush", "compact"]
    assert "compaction at shutdown left to the ledger actor (RuntimeError)" in caplog.text
