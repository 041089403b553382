"""The exit hook flushes the ledger of every runtime started and not shut down."""

from __future__ import annotations

from runtime import exit_flush


class FakeRuntime:
    def __init__(self, fails: bool = False):
        self.fails = fails
        self.flushed: list[float] = []

    def flush_ledger(self, timeout_s, drain_s=0.0):
        if self.fails:
            raise TimeoutError("the ledger actor is gone")
        self.flushed.append(timeout_s)


def test_remembered_runtimes_are_flushed_once_and_forgotten_ones_not(monkeypatch):
    monkeypatch.setattr(exit_flush, "_runtimes", {})
    monkeypatch.setattr(exit_flush, "_registered", True)  # no real atexit hook in tests
    monkeypatch.setattr(exit_flush, "_exit_on_sigterm", lambda: None)
    kept, closed, broken = FakeRuntime(), FakeRuntime(), FakeRuntime(fails=True)
    for runtime in (kept, closed, broken):
        exit_flush.remember(runtime)
    exit_flush.forget(closed)
    assert exit_flush.flush_all(timeout_s=5) == 1  # the broken one is logged, not raised
    assert kept.flushed == [5] and closed.flushed == []
    assert exit_flush.flush_all() == 0  # each once
