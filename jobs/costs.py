"""Cost analytics over the Parquet ledger: ``python -m jobs.costs LEDGER_DIR``.

    python -m jobs.costs ./llm-ledger --by model --since 2026-11-01 --plot costs.png

Prints totals and, per group (model, provider, job, day or tier), requests, tokens, cached
tokens, cost, cache savings and average cost per request, then the spend and savings split
by service tier (``standard`` online, ``batch`` through the provider batch APIs): savings from
caching, and from batch pricing (each batch row re-priced exactly at the online rates in
force when it ran, minus what it cost). ``--plot FILE`` draws cost per day stacked by model,
with the savings from prompt caching, as PNG, SVG or a self-contained HTML page by the file's
extension (:mod:`jobs.cost_chart`). The ledger's columns are documented in
``runtime/ledger_store.py`` and the README, so the same files can be queried with DuckDB or
pandas. Unlike a plain Parquet reader, this report also counts rows still only in the
ledger's journal (the last second of a running program's calls; see
:mod:`runtime.ledger_view`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from jobs.cost_chart import FORMATS, chart_data, write_chart
from runtime.ledger_store import LEDGER_SCHEMA
from runtime.ledger_view import scan_complete

GROUPS = ("model", "provider", "job", "day", "tier")
_GROUP_COLUMN = {
    "model": "model",
    "provider": "provider",
    "job": "job_id",
    "day": "day",
    "tier": "tier",
}
_SUMS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "total_cost",
    "cache_savings",
)
_COLUMNS = ("model", "provider", "job_id", "ts", "tier", "cache_write_1h_tokens", *_SUMS)
_DECIMALS = ("total_cost", "cache_savings")

Tables = pa.Table | Iterable[pa.Table]


def _since_datetime(since: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(since, dt.time(), dt.UTC) if since is not None else None


def _with_day(table: pa.Table) -> pa.Table:
    if "tier" in table.column_names:  # rows written before the column existed: standard
        index = table.column_names.index("tier")
        table = table.set_column(index, "tier", pc.fill_null(table["tier"], "standard"))
    return table.append_column("day", pc.strftime(table["ts"], format="%Y-%m-%d"))


class TierStats:
    """Spend, cache savings and batch savings per tier, gathered as tables stream past."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = defaultdict(int)
        self.cost: dict[str, Decimal] = defaultdict(Decimal)
        self.cache_savings: dict[str, Decimal] = defaultdict(Decimal)
        self.batch_savings = Decimal(0)
        self.unpriced = 0

    def watch(self, tables: Tables) -> Iterator[pa.Table]:
        """``tables`` unchanged, counted on the way."""
        for table in _as_tables(tables):
            self.add(table)
            yield table

    def add(self, table: pa.Table) -> None:
        for row in table.to_pylist():
            tier = row.get("tier") or "standard"
            self.requests[tier] += 1
            self.cost[tier] += Decimal(row["total_cost"] or 0)
            self.cache_savings[tier] += Decimal(row["cache_savings"] or 0)
            if tier == "batch":
                online = _online_cost(row)
                if online is None:
                    self.unpriced += 1
                else:
                    self.batch_savings += online - Decimal(row["total_cost"] or 0)

    def lines(self) -> list[str]:
        out = [f"{'tier':<28}{'requests':>10}{'cost $':>14}{'cache saved $':>16}"]
        for tier in sorted(self.requests):
            out.append(
                f"{tier:<28}{self.requests[tier]:>10,}{self.cost[tier]:>14.4f}"
                f"{self.cache_savings[tier]:>16.4f}"
            )
        total_cache = sum(self.cache_savings.values(), Decimal(0))
        out.append(
            f"Savings: caching ${total_cache:.4f}, batch pricing ${self.batch_savings:.4f} "
            f"(vs online rates)"
            + (f"; {self.unpriced} batch rows of unknown models" if self.unpriced else "")
        )
        return out


def _online_cost(row: dict) -> Decimal | None:
    """What a batch row would have cost online (None: model not in the registry)."""
    from llm.pricing import compute_cost
    from llm.registry import get_model_info
    from llm.types import Usage

    model = get_model_info(row["model"])
    if model is None:
        return None
    usage = Usage(
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cached_tokens=row["cached_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cache_write_1h_tokens=row.get("cache_write_1h_tokens") or 0,
        reasoning_tokens=row["reasoning_tokens"],
    )
    try:
        cost = compute_cost(model, usage, at=row["ts"]).total_cost
    except ValueError:
        return None
    return cost.quantize(Decimal("1e-10"))


def scan(
    ledger_dir: str | Path, since: dt.date | None = None, job_id: str | None = None
) -> Iterator[pa.Table]:
    """The ledger as a stream of small tables (with a ``day`` column), filtered; memory stays
    bounded by one part file however large the ledger is. Rows journaled but not yet in
    Parquet are included (:func:`runtime.ledger_view.scan_complete`), so a report made
    right after a run is never short."""
    for table in scan_complete(
        ledger_dir, columns=_COLUMNS, job_id=job_id, since=_since_datetime(since)
    ):
        yield _with_day(table)


def load(
    ledger_dir: str | Path, since: dt.date | None = None, job_id: str | None = None
) -> pa.Table:
    """The (filtered) ledger as one table with a ``day`` column (for small ledgers and tests)."""
    tables = list(scan(ledger_dir, since, job_id))
    if not tables:
        empty = pa.schema([LEDGER_SCHEMA.field(name) for name in _COLUMNS])
        return _with_day(empty.empty_table())
    return pa.concat_tables(tables)


def _as_tables(tables: Tables) -> Iterable[pa.Table]:
    return [tables] if isinstance(tables, pa.Table) else tables


def _aggregate(tables: Tables, by: str) -> dict[object, dict[str, object]]:
    """Per-group request counts and sums, accumulated table by table (exact Decimals)."""
    column = _GROUP_COLUMN[by]
    groups: dict[object, dict[str, object]] = {}
    for table in _as_tables(tables):
        if table.num_rows == 0:
            continue
        grouped = table.group_by(column).aggregate(
            [("model", "count")] + [(name, "sum") for name in _SUMS]
        )
        for row in grouped.to_pylist():
            entry = groups.setdefault(
                row[column],
                {"requests": 0, **{n: Decimal(0) if n in _DECIMALS else 0 for n in _SUMS}},
            )
            entry["requests"] += row["model_count"]
            for name in _SUMS:
                value = row[f"{name}_sum"] or 0
                entry[name] += Decimal(value) if name in _DECIMALS else value
    return groups


def summarize(tables: Tables, by: str = "model") -> list[dict]:
    """One dict per group: requests, token sums, cost, savings, average cost per request."""
    if by not in GROUPS:
        raise ValueError(f"--by must be one of {', '.join(GROUPS)}")
    rows = []
    for group, entry in _aggregate(tables, by).items():
        requests = entry["requests"]
        cost = entry["total_cost"]
        rows.append(
            {
                "group": group if group is not None else "-",
                **entry,
                "avg_cost": cost / requests if requests else Decimal(0),
            }
        )
    rows.sort(key=lambda r: (-r["total_cost"], str(r["group"])))
    return rows


def totals(tables: Tables) -> dict:
    """Totals over the whole (filtered) ledger."""
    return _totals_of(summarize(tables, "provider"))


def _totals_of(rows: list[dict]) -> dict:
    return {
        "requests": sum(r["requests"] for r in rows),
        "total_tokens": sum(r["total_tokens"] for r in rows),
        "cached_tokens": sum(r["cached_tokens"] for r in rows),
        "total_cost": sum((r["total_cost"] for r in rows), Decimal(0)),
        "cache_savings": sum((r["cache_savings"] for r in rows), Decimal(0)),
    }


def format_report(tables: Tables, by: str = "model") -> str:
    """The text report printed by the command (one pass over ``tables``)."""
    tiers = TierStats()
    rows = summarize(tiers.watch(tables), by)
    total = _totals_of(rows)
    lines = [
        "=" * 96,
        "LEDGER COST REPORT",
        "=" * 96,
        f"Requests: {total['requests']:,}   Tokens: {total['total_tokens']:,}   "
        f"Cost: ${total['total_cost']:.4f}   Cache savings: ${total['cache_savings']:.4f}",
        "",
        f"{by:<28}{'requests':>10}{'input':>12}{'output':>11}{'cached':>11}"
        f"{'cost $':>12}{'saved $':>11}{'avg $':>11}",
        "-" * 96,
    ]
    for row in rows:
        lines.append(
            f"{str(row['group'])[:27]:<28}{row['requests']:>10,}{row['input_tokens']:>12,}"
            f"{row['output_tokens']:>11,}{row['cached_tokens']:>11,}{row['total_cost']:>12.4f}"
            f"{row['cache_savings']:>11.4f}{row['avg_cost']:>11.6f}"
        )
    lines.append("-" * 96)
    lines.extend(tiers.lines())
    lines.append("=" * 96)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.costs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("ledger_dir")
    parser.add_argument("--by", choices=GROUPS, default="model")
    parser.add_argument("--since", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD")
    parser.add_argument(
        "--plot", default=None, help="write the cost chart to FILE (.png, .svg or .html)"
    )
    args = parser.parse_args(argv)
    if args.plot and Path(args.plot).suffix.lower().lstrip(".") not in (*FORMATS, "htm"):
        print(f"--plot FILE must end in .png, .svg or .html: {args.plot}", file=sys.stderr)
        return 2
    if not Path(args.ledger_dir).is_dir():
        print(f"no ledger at {args.ledger_dir}", file=sys.stderr)
        return 2
    print(format_report(scan(args.ledger_dir, args.since), args.by))
    if args.plot:
        write_chart(chart_data(scan(args.ledger_dir, args.since)), args.plot)
        print(f"chart written to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
