"""JournalLedgerSink.lookup coalesces concurrent replay lookups into one LedgerActor call."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.journal_sink import JournalLedgerSink


class _Remote:
    def __init__(self, known: dict[str, Any], fail: Exception | None = None) -> None:
        self.known = known
        self.fail = fail
        self.calls: list[list[str]] = []

    async def _answer(self, ids: list[str]) -> dict[str, Any]:
        await asyncio.sleep(0.01)  # a round trip
        if self.fail is not None:
            raise self.fail
        return {rid: self.known[rid] for rid in ids if rid in self.known}

    def remote(self, ids: list[str]) -> Any:
        self.calls.append(list(ids))
        return self._answer(ids)


class _Handle:
    def __init__(self, remote: _Remote) -> None:
        self.lookup = remote


def _sink(tmp_path: Any, remote: _Remote) -> JournalLedgerSink:
    sink = JournalLedgerSink(tmp_path, "ledger", "ns")
    sink._handle = _Handle(remote)
    return sink


async def test_concurrent_lookups_share_one_call_and_each_gets_its_own_ids(tmp_path: Any) -> None:
    remote = _Remote({"a": "A", "c": "C"})
    sink = _sink(tmp_path, remote)
    results = await asyncio.gather(*(sink.lookup([rid]) for rid in "abcd"))
    assert results == [{"a": "A"}, {}, {"c": "C"}, {}]
    assert remote.calls == [["a", "b", "c", "d"]]


async def test_lookups_arriving_during_a_round_trip_go_in_the_next_call(tmp_path: Any) -> None:
    remote = _Remote({"x": "X", "y": "Y"})
    sink = _sink(tmp_path, remote)
    first = asyncio.ensure_future(sink.lookup(["x"]))
    await asyncio.sleep(0.001)  # the first call is on its way
    second = await asyncio.gather(sink.lookup(["y"]), sink.lookup(["z"]))
    assert await first == {"x": "X"}
    assert second == [{"y": "Y"}, {}]
    assert remote.calls == [["x"], ["y", "z"]]


async def test_an_error_reaches_every_waiter_and_the_next_lookup_works(tmp_path: Any) -> None:
    remote = _Remote({"a": "A"}, fail=ConnectionError("ledger actor gone"))
    sink = _sink(tmp_path, remote)
    outcomes = await asyncio.gather(sink.lookup(["a"]), sink.lookup(["b"]), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    remote.fail = None
    assert await sink.lookup(["a"]) == {"a": "A"}
    assert await sink.lookup([]) == {}  # nothing to ask: no call
    assert remote.calls == [["a", "b"], ["a"]]
