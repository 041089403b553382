"""Output of a bench run: the stdout table, ``bench/results.json``, ``docs/benchmarks.md``.

The markdown keeps everything above :data:`MARKER` (the hand-written introduction) and
regenerates the rest: the commands, the table, pass/fail per target, the chart
(``docs/benchmarks.svg``, drawn by :mod:`bench.chart`) and the machine it ran on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.chart import render_svg
from bench.common import ROOT, Figure

MARKER = "<!-- Everything below is written by `python -m bench`; edit the text above it. -->"
DEFAULT_INTRO = """# Benchmarks

Side-by-side figures measured against the local emulator, each a ratio taken within one
run, so the machine's speed cancels out. Every contender in a scenario gets the same
workload, limits and emulator settings, against a freshly reset emulator.
"""
SCENARIO_TITLES = {
    "rate": "Rate-limit efficiency (used share of the binding limit)",
    "realregime": "Real regime: 4 s lognormal latency, limits not configured (share of RPM)",
    "cache": "Prompt-cache cost (billed / theoretical minimum)",
    "overhead": "Overhead (req/s relative to the in-process path)",
    "scale": "Scale (batch-job peak memory, large / small input)",
}


def _money(value: Any) -> str:
    return f"${float(value):.4f}"


def _detail_rate(raw: dict[str, Any]) -> str:
    text = (
        f"{raw['ok']}/{raw['requests']} answered, {raw['failed']} given up; "
        f"429s: {raw['rate_limited_warmup']} warm-up + {raw['rate_limited_after_warmup']} after; "
        f"{raw['achieved_rps']} req/s, {raw['binding_limit']} limit binding"
    )
    return text + (" (timed out)" if raw.get("timed_out") else "")


def _detail_realregime(raw: dict[str, Any]) -> str:
    timeline = raw.get("timeline") or {}
    text = (
        f"{raw.get('ok')}/{raw.get('rows')} ok, {raw.get('failed')} failed, "
        f"{raw.get('unfinished')} unfinished; 429s: {timeline.get('throttled')} "
        f"({timeline.get('throttled_after_first_s')} after 1 s); "
        f"max {timeline.get('max_in_flight')} in flight; {timeline.get('admitted_per_s')} "
        f"admitted/s, {timeline.get('steady_share')} of the rate after 3 s; "
        f"CPU driver {raw.get('driver_cpu_s')} s"
    )
    if raw.get("actor_cpu_s") is not None:
        text += f", Ray/actors {raw['actor_cpu_s']} s"
    return text + f"; wall {raw.get('wall_s')} s"


def _detail_cache(raw: dict[str, Any]) -> str:
    text = (
        f"{raw['cache_writes']} writes, {raw['cache_reads']} reads of {raw['prefix_tokens']} "
        f"tokens; {_money(raw['billed_usd'])} vs min {_money(raw['minimum_usd'])}"
    )
    if "cost_vs_runtime" in raw:
        text += f"; {raw['cost_vs_runtime']}x the runtime's cost"
    return text


def _detail_overhead(raw: dict[str, Any]) -> str:
    rounds = ", ".join(str(rate) for rate in raw["rounds_rps"])
    text = (
        f"{raw['rps']} req/s, median of rounds [{rounds}] of {raw['requests_per_round']} "
        f"requests; {raw['failed']} failed"
    )
    if "ray_startup_s" in raw:
        text += f"; Ray start {raw['ray_startup_s']} s, not timed"
    return text


def _detail_scale(raw: dict[str, Any]) -> str:
    small, large = raw["small"], raw["large"]
    key = raw.get("key", "driver_peak_mib")
    text = f"{small[key]} -> {large[key]} MiB ({small['rows']} -> {large['rows']} rows)"
    if "kib_per_row" in raw:
        text += f"; {raw['kib_per_row']} KiB/row, 1M rows ~{raw['million_rows_mib']} MiB"
    if key == "driver_peak_mib":
        text += f"; process tree {small['tree_peak_mib']} -> {large['tree_peak_mib']} MiB"
    if key == "ledger_actor_peak_mib" and "journal_bytes_per_row" in large:
        text += (
            f"; journal peak {large['journal_bytes_per_row']} B/row, "
            f"{large['journal_end_bytes']} B at the end"
        )
    return text


_DETAILS = {
    "rate": _detail_rate,
    "realregime": _detail_realregime,
    "cache": _detail_cache,
    "overhead": _detail_overhead,
    "scale": _detail_scale,
}


def detail(figure: Figure) -> str:
    """The raw numbers of one figure in a few words (or why it is missing)."""
    if figure.status != "ok":
        return f"not measured ({figure.reason})"
    try:
        return _DETAILS[figure.scenario](figure.raw)
    except (KeyError, TypeError, ValueError):
        return json.dumps(figure.raw, default=str)[:200]


def verdict(figure: Figure) -> str:
    if figure.target is None:
        return ""
    if figure.status != "ok" or figure.passed is None:
        return "n/a"
    return "pass" if figure.passed else "FAIL"


def ratio_text(figure: Figure) -> str:
    return f"{figure.ratio:.3f}" if figure.status == "ok" and figure.ratio is not None else "n/a"


def rows(figures: Iterable[Figure]) -> list[list[str]]:
    return [
        [f.scenario, f.contender, ratio_text(f), f.target or "", verdict(f), detail(f)]
        for f in figures
    ]


HEADER = ["scenario", "contender", "ratio", "target", "result", "raw numbers"]


def text_table(figures: list[Figure]) -> str:
    """A plain-text table for the terminal."""
    table = [HEADER, *rows(figures)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER) - 1)]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def markdown_table(figures: list[Figure]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(esc(cell) for cell in row) + " |" for row in rows(figures)]
    return "\n".join(lines)


def results_document(
    figures: list[Figure], *, mode: str, machine: dict[str, Any], started: str, seconds: float
) -> dict[str, Any]:
    return {
        "generated_at": started,
        "mode": mode,
        "duration_s": round(seconds, 1),
        "machine": machine,
        "figures": [figure.as_dict() for figure in figures],
    }


def _intro(path: Path) -> str:
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if MARKER in text:
            return text.split(MARKER, 1)[0].rstrip() + "\n"
    return DEFAULT_INTRO


def _machine_text(machine: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return (
        f"{machine['cores']} cores, {machine['platform']}, Python {machine['python']}; "
        f"{packages}; commit {machine.get('git_commit') or 'unknown'}"
    )


def _updated_text(document: dict[str, Any]) -> str:
    """Which scenarios were re-measured later by an ``--only ... --write`` run."""
    parts = [
        f"`{name}` from a `{item['mode']}` run on {item['generated_at']} "
        f"({item['duration_s']} s, commit {item.get('git_commit') or 'unknown'})"
        for name, item in document.get("updated", {}).items()
    ]
    return ", except " + "; ".join(parts) if parts else ""


def _targets_text(figures: list[Figure]) -> str:
    lines = []
    for figure in figures:
        if figure.target is None:
            continue
        lines.append(
            f"- **{figure.scenario} / {figure.contender}**: {ratio_text(figure)} "
            f"(target {figure.target}): {verdict(figure)}"
        )
    return "\n".join(lines)


def markdown(document: dict[str, Any], figures: list[Figure], intro: str, notes: str) -> str:
    mode = document["mode"]
    return "\n".join(
        [
            intro,
            MARKER,
            "",
            "## Reproduce",
            "",
            "```",
            "python -m bench --quick   # a few minutes: smaller runs",
            "python -m bench --quick --runtime-2000   # plus the 2,000-request runtime run",
            "python -m bench           # full: 2,000-request runtime run, 10k/100k-row jobs",
            "python -m bench --quick --only realregime --write   # the real regime alone",
            "```",
            "(or `make bench-quick` / `make bench`). The numbers below come from a "
            f"`{mode}` run on {document['generated_at']} ({document['duration_s']} s)"
            + _updated_text(document)
            + "; the raw numbers are in `bench/results.json`.",
            "",
            "## Results",
            "",
            markdown_table(figures),
            "",
            "## Targets",
            "",
            _targets_text(figures),
            "",
            '<img src="benchmarks.svg" alt="Key ratios against their targets">',
            "",
            notes,
            "",
            "## Machine",
            "",
            _machine_text(document["machine"]),
            "",
        ]
    )


def write_all(
    figures: list[Figure],
    document: dict[str, Any],
    notes: str,
    *,
    root: Path = ROOT,
) -> dict[str, Path]:
    """Write results.json, the markdown and the SVG chart; return their paths."""
    paths = {
        "json": root / "bench" / "results.json",
        "markdown": root / "docs" / "benchmarks.md",
        "svg": root / "docs" / "benchmarks.svg",
    }
    paths["markdown"].parent.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    paths["svg"].write_text(render_svg(figures, SCENARIO_TITLES), encoding="utf-8")
    text = markdown(document, figures, _intro(paths["markdown"]), notes)
    paths["markdown"].write_text(text, encoding="utf-8")
    return paths
