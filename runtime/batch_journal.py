"""The write-ahead journal of provider batches: which batch ids a job has in flight.

One append-only JSONL file per job output (``<output>/_provider_batches.jsonl``), each line
fsynced before :meth:`BatchJournal.append` returns, written with the same discipline as the
ledger's journal (:mod:`runtime.journal_log`): a line is acknowledged only once it is on
disk, and a torn last line (a process killed mid-write) is skipped by readers. Events:

* ``submitting``: the rows about to be sent in one batch (written before the provider call);
* ``submitted``: the provider accepted the batch: its ``batch_id``, provider, model and the
  rows' ``custom_id``/``row_id`` pairs. Written the moment ``submit`` returns, so a rerun
  after a crash, SIGKILL or Ctrl-C re-attaches to the batch instead of sending its rows
  again;
* ``collected``: every row of the batch is in the output (and the ledger).

A ``submitting`` without its ``submitted`` means the process died during the provider call:
the provider may or may not hold that batch, and its rows are sent again (see
docs/contracts.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "_provider_batches.jsonl"


@dataclass
class JournaledBatch:
    """One submitted batch as the journal knows it."""

    batch_id: str
    provider: str
    model: str
    #: (custom_id, row_id) per row, in submission order.
    rows: list[tuple[str, str]] = field(default_factory=list)
    estimate_usd: str = "0"
    collected: bool = False


class BatchJournal:
    """Append and replay the batch events of one output directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / FILE_NAME

    def append(self, event: str, **fields: Any) -> None:
        """Write one event and fsync it before returning."""
        line = json.dumps({"event": event, **fields}, separators=(",", ":"), sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            handle.write(line.encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> list[dict[str, Any]]:
        """Every complete event, oldest first (a torn last line is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_bytes().split(b"\n"):
            if not raw.strip():
                continue
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue  # torn by a kill mid-write: never acknowledged
        return out

    def batches(self) -> dict[str, JournaledBatch]:
        """Every submitted batch by id, with whether it was collected."""
        found: dict[str, JournaledBatch] = {}
        for event in self.events():
            kind = event.get("event")
            if kind == "submitted":
                found[event["batch_id"]] = JournaledBatch(
                    batch_id=event["batch_id"],
                    provider=event["provider"],
                    model=event["model"],
                    rows=[(c, r) for c, r in event["rows"]],
                    estimate_usd=event.get("estimate_usd", "0"),
                )
            elif kind == "collected" and event.get("batch_id") in found:
                found[event["batch_id"]].collected = True
        return found

    def in_flight(self) -> list[JournaledBatch]:
        """Submitted batches whose results are not in the output yet."""
        return [batch for batch in self.batches().values() if not batch.collected]
