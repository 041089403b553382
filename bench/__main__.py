"""Command line: ``python -m bench [--quick] [--only S,..] [--no-ray] [--runtime-2000] ...``.

Runs the scenarios in order (rate, realregime, cache, overhead, scale), prints the table and writes
``bench/results.json``, ``docs/benchmarks.md`` and ``docs/benchmarks.svg``. With
``--only`` nothing is written unless ``--write`` is given, and then the run's scenarios
replace only their own rows of ``bench/results.json`` (a partial run must not replace the
full results; ``updated`` in the document says which rows came from which run). ``--render`` only rewrites the docs from ``bench/results.json`` (e.g.
after editing the hand-written introduction).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import time
import warnings
from collections.abc import Callable

from bench import cache, overhead, rate, realregime, report, scale
from bench.common import Figure, error_text, machine_info, not_measured
from bench.notes import METHOD

SCENARIOS = ("rate", "realregime", "cache", "overhead", "scale")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Side-by-side benchmarks against the emulator."
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (a few minutes)")
    parser.add_argument("--only", default=None, help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--no-ray", action="store_true", help="skip the actor path")
    parser.add_argument(
        "--runtime-2000",
        action="store_true",
        help="with --quick: also run the runtime on 2,000 requests (always in a full run)",
    )
    parser.add_argument("--write", action="store_true", help="write outputs even with --only")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the docs from bench/results.json"
    )
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    args.scenarios = [name for name in SCENARIOS if name in chosen]
    return args


def _runners(args: argparse.Namespace) -> dict[str, Callable[[], list[Figure]]]:
    quick = args.quick
    return {
        "rate": lambda: asyncio.run(rate.run(quick, long=args.runtime_2000)),
        "realregime": lambda: realregime.run(quick),
        "cache": lambda: asyncio.run(cache.run(quick)),
        "overhead": lambda: asyncio.run(overhead.run(quick, with_ray=not args.no_ray)),
        "scale": lambda: scale.run(quick),
    }


def run_scenarios(args: argparse.Namespace) -> list[Figure]:
    """Each chosen scenario in turn; a scenario that crashes becomes a "not measured" row."""
    figures: list[Figure] = []
    runners = _runners(args)
    for name in args.scenarios:
        print(f"[bench] {name}", flush=True)
        started = time.perf_counter()
        try:
            figures += runners[name]()
        except Exception as exc:  # report and go on with the other scenarios
            figures.append(not_measured(name, "(scenario)", "crashed: " + error_text(exc)))
        print(f"[bench] {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    return figures


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("llm", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def merge_into_saved(document: dict, scenarios: list[str]) -> dict:
    """The saved results with the rows of ``scenarios`` replaced by this run's."""
    path = report.ROOT / "bench" / "results.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return document
    kept = [item for item in saved["figures"] if item["scenario"] not in scenarios]
    merged = kept + document["figures"]
    merged.sort(key=lambda item: SCENARIOS.index(item["scenario"]))
    updated = dict(saved.get("updated", {}))
    for name in scenarios:
        updated[name] = {
            "mode": document["mode"],
            "generated_at": document["generated_at"],
            "duration_s": document["duration_s"],
            "git_commit": document["machine"].get("git_commit"),
        }
    return {**saved, "figures": merged, "updated": updated}


def render_only() -> int:
    """Rewrite docs/benchmarks.md and the chart from the saved results (no measuring)."""
    path = report.ROOT / "bench" / "results.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    figures = [Figure(**item) for item in document["figures"]]
    paths = report.write_all(figures, document, METHOD)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render_only()
    _quiet_logs()
    started_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    started = time.perf_counter()
    figures = run_scenarios(args)
    seconds = time.perf_counter() - started
    print()
    print(report.text_table(figures))
    mode = "quick" if args.quick else "full"
    if args.only and not args.write:
        print("\n(--only: nothing written; add --write to write the outputs)")
        return 0
    document = report.results_document(
        figures, mode=mode, machine=machine_info(), started=started_at, seconds=seconds
    )
    if args.only:
        document = merge_into_saved(document, args.scenarios)
        figures = [Figure(**item) for item in document["figures"]]
    paths = report.write_all(figures, document, METHOD)
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
