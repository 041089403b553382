"""Where ``--mode batch`` writes its ledger rows: the cluster's ledger actor, or a local writer.

With the Ray runtime (the default, also under ``ray job submit``) the rows of answered batch
rows go to the one :class:`~actors.ledger_actor.LedgerActor` of the cluster
(:meth:`~actors.ledger_actor.LedgerActor.record`: journaled, durable when it answers,
deduplicated by request id), exactly like the rows the provider actors write for online
calls, so ``jobs.costs`` sees one ledger. With ``--runtime local`` (or without Ray) a
:class:`~runtime.ledger_store.LedgerWriter` on ``LLM_LEDGER_DIR`` writes them in process.
:func:`record_durably` appends to either and returns once the rows are durable.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Iterable
from typing import Any

from runtime.ledger_store import LedgerRecord, LedgerWriter


class ActorLedger:
    """``append``/``close`` of a :class:`LedgerWriter`, through the ledger actor."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def append(self, records: Iterable[LedgerRecord], *, durable: bool = True) -> Awaitable[Any]:
        """Journal ``records`` in the actor; the returned reference resolves once durable."""
        return self.handle.record.remote(list(records))

    def close(self) -> None:
        """Nothing to release (the runtime flushes the actor when it shuts down)."""


def batch_ledger(runtime: Any, ledger_dir: str) -> ActorLedger | LedgerWriter:
    """The ledger sink of a batch-mode run (``runtime``: a started Runtime, or None)."""
    if runtime is not None:
        return ActorLedger(runtime.ledger())
    return LedgerWriter(ledger_dir)


async def record_durably(
    ledger: ActorLedger | LedgerWriter | None, records: list[LedgerRecord]
) -> None:
    """Append ``records`` to ``ledger`` (if any) and wait until they are durable (the ledger
    actor answers with a reference to await; a local writer returns once fsynced)."""
    if ledger is None or not records:
        return
    appended = ledger.append(records, durable=True)
    if inspect.isawaitable(appended):
        await appended
