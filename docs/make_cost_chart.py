"""Render docs/cost-chart.png: the demo batch job's answers spread over two weeks of a ledger.

    python -m jobs.batch examples/prompts.jsonl --output out/demo --offline --runtime local
    python docs/make_cost_chart.py out/demo docs/cost-chart.png

The rows of a finished batch output (real answers of the emulator, priced by the registry)
are sampled into a ledger, a seeded random number of calls per day for 14 days, and the chart
is drawn by ``python -m jobs.costs LEDGER --plot FILE``.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import tempfile

import pyarrow.dataset as ds

from jobs import costs
from runtime.ledger_store import LedgerRecord, LedgerWriter

USAGE = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens")
COSTS = ("input_cost", "output_cost", "cache_read_cost", "cache_write_cost", "cache_savings")


def build_ledger(output_dir: str, ledger_dir: str, days: int = 14, seed: int = 7) -> int:
    """Write a ledger of ``days`` days sampled from the ok rows of a batch output."""
    table = ds.dataset(output_dir, format="parquet").to_table()
    rows = [r for r in table.to_pylist() if r["status"] == "ok"]
    rand = random.Random(seed)
    start = dt.datetime(2026, 11, 13, 9, 0, tzinfo=dt.UTC)
    writer = LedgerWriter(ledger_dir)
    count = 0
    for day in range(days):
        # weekdays busier than weekends, growing over the fortnight
        weekend = (start + dt.timedelta(days=day)).weekday() >= 5
        calls = int(rand.uniform(150, 300) * (0.35 if weekend else 1.0) * (1 + day / 10))
        records = []
        for _ in range(calls):
            row = rand.choice(rows)
            count += 1
            records.append(
                LedgerRecord(
                    request_id=f"example-{count}",
                    job_id=row["job_id"],
                    ts=start + dt.timedelta(days=day, seconds=rand.uniform(0, 36000)),
                    provider=row["provider"],
                    model=row["model"],
                    **{name: row[name] for name in USAGE},
                    **{name: row[name] for name in COSTS},
                )
            )
        writer.append(records, durable=True)
    writer.close()
    return count


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    output_dir, chart = argv
    with tempfile.TemporaryDirectory() as ledger_dir:
        build_ledger(output_dir, ledger_dir)
        return costs.main([ledger_dir, "--by", "day", "--plot", chart])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
