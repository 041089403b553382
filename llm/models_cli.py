"""``python -m llm.models``: list the registry's models, their prices, limits and lifecycle.

What users of ``llm models`` or LiteLLM's model list expect, from the registry alone (no key,
no network)::

    python -m llm.models                      # every model not retired, as a table
    python -m llm.models --provider openai    # one provider
    python -m llm.models --json               # machine-readable, prices as decimal strings
    python -m llm.models --all                # retired models too (flagged)
    python -m llm.models --date 2026-12-01    # status and prices in force on that day

Prices are USD per million tokens at the standard (not long-context) rates in force on the
day; ``status`` is ``active``, ``legacy`` (served but superseded), ``deprecated`` or
``retired``. ``llm/models/__main__.py`` runs :func:`main` when the package is executed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from llm.models import ModelInfo
from llm.pricing import rates_on
from llm.registry import PROVIDERS, get_registry

_COLUMNS = (
    ("provider", "provider"),
    ("model", "model"),
    ("aliases", "aliases"),
    ("input", "in $/M"),
    ("output", "out $/M"),
    ("cache_read", "read $/M"),
    ("cache_write", "write $/M"),
    ("context_window", "context"),
    ("max_output_tokens", "max out"),
    ("status", "status"),
    ("retires_on", "retires"),
    ("replacement", "use instead"),
)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def describe(model: ModelInfo, day: dt.date) -> dict[str, Any]:
    """One model as a flat record (prices as decimal strings, dates ISO)."""
    rates = rates_on(model.pricing, day)
    standard = rates.standard
    status = model.status_on(day)
    life = model.lifecycle
    return {
        "provider": model.provider,
        "model": model.name,
        "api_id": model.api_id,
        "aliases": [name for name in (model.api_id, *model.aliases) if name != model.name],
        "input": _money(standard.input),
        "output": _money(standard.output),
        "cache_read": _money(standard.cache_read),
        "cache_write": _money(standard.cache_write_5m),
        "cache_write_1h": _money(standard.cache_write_1h),
        "long_context_threshold": model.pricing.long_context_threshold,
        "prices_effective_from": rates.effective_from.isoformat() if rates.effective_from else None,
        "next_price_change": next(
            (c.effective_from.isoformat() for c in model.pricing.changes if c.effective_from > day),
            None,
        ),
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "status": "legacy" if status == "active" and life.legacy else status,
        "retires_on": life.retires_on.isoformat() if life.retires_on else None,
        "replacement": life.replacement,
        "price_source": model.pricing.source,
        "price_checked": model.pricing.checked.isoformat() if model.pricing.checked else None,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return str(value)


def render_table(records: Sequence[dict[str, Any]]) -> str:
    """The records as an aligned plain-text table."""
    rows = [[title for _, title in _COLUMNS]]
    rows += [[_cell(record[key]) for key, _ in _COLUMNS] for record in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llm.models", description="List the models this package knows."
    )
    parser.add_argument("--provider", choices=PROVIDERS, help="only this provider's models")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--all", action="store_true", help="include retired models")
    parser.add_argument(
        "--date",
        type=dt.date.fromisoformat,
        help="status and prices in force on this day (YYYY-MM-DD; default: today, UTC)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    day = args.date or dt.datetime.now(dt.UTC).date()
    records = [
        describe(model, day)
        for model in get_registry().models()
        if (args.provider is None or model.provider == args.provider)
        and (args.all or model.status_on(day) != "retired")
    ]
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(render_table(records))
        print(
            f"\n{len(records)} models; standard prices in USD per 1M tokens on {day.isoformat()}"
            " (write '-': cache writes cost the input rate)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
