"""In-process cost tracking: one record per provider call, totals per model, a JSON file.

:class:`CostTracker` keeps token counts and USD costs (as :class:`~decimal.Decimal`) of each
call, never prompt or response text. With ``save_path`` it continues an existing file and
rewrites it atomically (temp file, fsync, ``os.replace``) after every tracked call, with
money written as decimal strings so nothing is lost to float rounding.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import threading
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from llm.exceptions import ConfigurationError
from llm.pricing import COST_COLUMNS, TOKEN_COLUMNS, cost_columns, price_call, usage_columns
from llm.registry import get_model_info, resolve_model
from llm.types import Cost, LLMResponse

FILE_VERSION = 1
ZERO = Decimal("0")

#: The stored token and money fields: the columns of every cost table (:mod:`llm.pricing`).
_TOKEN_FIELDS = TOKEN_COLUMNS
_MONEY_FIELDS = COST_COLUMNS


def _cost_and_savings(response: LLMResponse) -> tuple[Cost, Decimal]:
    """The response's metered price; a response built elsewhere without one is priced now
    by :func:`llm.pricing.price_call`, the same single pricing point."""
    if response.cost is not None and response.cache_savings is not None:
        return response.cost, response.cache_savings
    info = get_model_info(response.model)
    price = price_call(info or resolve_model(response.model), response.usage)
    cost = response.cost if response.cost is not None else price.cost
    return cost, price.cache_savings if info is not None else ZERO


def make_record(response: LLMResponse, cost: Cost, savings: Decimal) -> dict[str, Any]:
    """The stored record of one call: ids, token counts and money (no texts)."""
    usage = response.usage
    record: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "request_id": response.request_id,
        "call_id": response.metadata.get("call_id"),
        "model": response.model,
        "provider": response.provider,
        "price_effective_from": response.metadata.get("price_effective_from"),
    }
    record.update(usage_columns(usage))
    record.update(cost_columns(cost, savings))
    return record


def _to_json(record: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in record.items()}


def _from_json(record: dict[str, Any]) -> dict[str, Any]:
    loaded = dict(record)
    for name in _MONEY_FIELDS:
        loaded[name] = Decimal(str(loaded.get(name, "0")))
    for name in _TOKEN_FIELDS:
        loaded[name] = int(loaded.get(name, 0))
    return loaded


def _average(total: Decimal, count: int) -> Decimal:
    return total / count if count else ZERO


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-model totals of ``records`` (models by total cost, highest first)."""
    by_model: dict[str, dict[str, Any]] = {}
    totals = {"cost": ZERO, "savings": ZERO, "requests": 0}
    tokens = dict.fromkeys(("input_tokens", "output_tokens", "cached_tokens"), 0)
    for record in records:
        entry = by_model.setdefault(
            record["model"],
            {"requests": 0, "total_cost": ZERO, **dict.fromkeys(tokens, 0)},
        )
        entry["requests"] += 1
        entry["total_cost"] += record["total_cost"]
        totals["cost"] += record["total_cost"]
        totals["savings"] += record["cache_savings"]
        totals["requests"] += 1
        for name in tokens:
            entry[name] += record[name]
            tokens[name] += record[name]
    for entry in by_model.values():
        entry["avg_cost"] = _average(entry["total_cost"], entry["requests"])
        entry["total_tokens"] = entry["input_tokens"] + entry["output_tokens"]
    ordered = sorted(by_model.items(), key=lambda item: (-item[1]["total_cost"], item[0]))
    return {
        "total_cost": totals["cost"],
        "total_requests": totals["requests"],
        "total_tokens": tokens["input_tokens"] + tokens["output_tokens"],
        "avg_cost": _average(totals["cost"], totals["requests"]),
        "total_input_tokens": tokens["input_tokens"],
        "total_output_tokens": tokens["output_tokens"],
        "total_cached_tokens": tokens["cached_tokens"],
        "cache_savings": totals["savings"],
        "by_model": dict(ordered),
    }


def _write_atomically(path: Path, payload: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class CostTracker:
    """Tracks the cost of each call; optionally persisted to ``save_path`` (JSON).

    Safe to share between threads and the tasks of one event loop (a lock guards updates).
    """

    def __init__(self, save_path: str | os.PathLike[str] | None = None) -> None:
        self.save_path = Path(save_path) if save_path is not None else None
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = self._load() if self.save_path else []

    def _load(self) -> list[dict[str, Any]]:
        assert self.save_path is not None
        if not self.save_path.exists():
            return []
        try:
            data = json.loads(self.save_path.read_text(encoding="utf-8"))
            return [_from_json(record) for record in data["records"]]
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigurationError(
                f"{self.save_path} is not a cost-tracker file ({type(error).__name__}); "
                "move it away or choose another save_path"
            ) from None

    def track_request(self, response: LLMResponse) -> Cost:
        """Record one call and return its cost (computed from usage if the response has none)."""
        cost, savings = _cost_and_savings(response)
        record = make_record(response, cost, savings)
        with self._lock:
            self._records.append(record)
            if self.save_path is not None:
                self._save()
        return cost

    def _save(self) -> None:
        assert self.save_path is not None
        payload = {"version": FILE_VERSION, "records": [_to_json(r) for r in self._records]}
        _write_atomically(self.save_path, json.dumps(payload, indent=1))

    def records(self) -> list[dict[str, Any]]:
        """Copies of all records, oldest first."""
        with self._lock:
            return [dict(record) for record in self._records]

    def get_stats(self) -> dict[str, Any]:
        """Totals (Decimal money), cache savings and per-model totals."""
        with self._lock:
            return summarize(self._records)
