"""Scale: peak memory of the batch job (``python -m jobs.batch``) at two input sizes.

Each run is a fresh child process, ``python -m jobs.batch rows.jsonl --output DIR
--concurrency 256`` (Ray embedded in the job's process), on a synthetic JSONL of small
prompts, against a zero-latency emulator in a separate process (so the emulator's own memory
is not counted) whose account never binds. The in-flight bound is fixed so that the two
sizes differ in rows only: by default calls in flight follow the account's rate x latency
(up to ``LLM_MAX_CONNECTIONS``), and against an unbounded, zero-latency account a 1,000-row
job would have at most 1,000 calls in flight and a 10,000-row job 2,048, which measures
calls in flight (about 43 KiB each), not job size. Measured:

* ``driver_peak_mib``: the job process's own peak resident set (``VmHWM`` of
  ``/proc/self/status``, written by a small wrapper that runs ``jobs.batch`` as
  ``__main__``): the batch engine, reader, writer and the Ray driver. (Not ``ru_maxrss``:
  Linux carries it over from the forking parent across ``exec``, and ``wait4`` would also
  count the job's reaped children, i.e. Ray's processes.)
* ``ledger_actor_peak_mib`` / ``provider_actor_peak_mib``: the peak resident set
  (``VmHWM``) of the LedgerActor's process and of the busiest ProviderActor's, found among
  the job's descendants by their Ray process title (``ray::LedgerActor...``) and read every
  0.5 s (``VmHWM`` only grows, so the last reading before the job ends is the peak).
* ``journal_peak_bytes`` / ``journal_end_bytes``: the size of the ledger's journal
  (``<ledger>/_journal``) at its largest during the run and after the job ended; divided by
  the rows, the journal's bytes per row.
* ``tree_peak_mib``: the largest sum of resident sets of the job and all its descendants
  (Ray's GCS, raylet and workers: the actors), sampled every 0.5 s, so an approximation.

One figure per process (driver, ledger actor, provider actor): its peak at the large size /
at the small size (target <= 1.1: memory does not grow with the input). Each carries the
per-row slope between the two sizes and the peak it extrapolates to at 1,000,000 rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    API_KEY,
    ROOT,
    UNBOUNDED_ACCOUNT,
    Figure,
    ProcessEmulator,
    error_text,
    not_measured,
)

SCENARIO = "scale"
#: Calls in flight in every run (see the module docstring).
CONCURRENCY = 256
TARGET = "<= 1.1"
LIMIT = 1.1
MILLION = 1_000_000
#: Process-title prefixes of the actors measured (Ray sets ``ray::<Class>[.<method>]``).
ACTORS = {"ledger_actor": "ray::LedgerActor", "provider_actor": "ray::ProviderActor"}
MODEL = "claude-haiku-4.5"
SAMPLE_S = 0.5


@dataclass(frozen=True)
class ScalePlan:
    small: int
    large: int
    cap_s: float


def plan_for(quick: bool) -> ScalePlan:
    return ScalePlan(1_000, 10_000, 300.0) if quick else ScalePlan(10_000, 100_000, 1800.0)


def write_rows(path: Path, rows: int) -> None:
    """``rows`` small, distinct batch rows as JSONL."""
    with path.open("w", encoding="utf-8") as out:
        for index in range(rows):
            row = {
                "id": f"r{index}",
                "model": MODEL,
                "prompt": f"Say hello to row {index}.",
                "max_tokens": 16,
            }
            out.write(json.dumps(row) + "\n")


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """``root`` and every process below it now."""
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def tree_rss_kib(root: int) -> int:
    """Sum of the resident sets of ``root`` and all its descendants now."""
    return sum(_rss_kib(pid) for pid in descendants(root))


def actor_peaks_kib(pids: list[int]) -> dict[str, int]:
    """The largest ``VmHWM`` among ``pids`` of each actor class in :data:`ACTORS`."""
    peaks = dict.fromkeys(ACTORS, 0)
    for pid in pids:
        title = _title(pid)
        for key, prefix in ACTORS.items():
            if title.startswith(prefix):
                peaks[key] = max(peaks[key], _status_kib(pid, "VmHWM:"))
    return peaks


def dir_bytes(directory: Path) -> int:
    """Total size of the files directly in ``directory`` (0 if it does not exist)."""
    total = 0
    try:
        for entry in os.scandir(directory):
            try:
                total += entry.stat().st_size if entry.is_file() else 0
            except OSError:
                continue
    except OSError:
        return 0
    return total


#: Runs ``python -m jobs.batch ARGS``, then writes this process's peak RSS (VmHWM, KiB).
WRAPPER = """
import runpy, sys
out = sys.argv.pop(1)
sys.argv[0] = "jobs.batch"
try:
    runpy.run_module("jobs.batch", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status, open(out, "w") as f:
        f.write(next(l.split()[1] for l in status if l.startswith("VmHWM:")))
"""


def _job_env(base_url: str, ledger_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    for prefix in ("ANTHROPIC", "OPENAI"):
        env[f"{prefix}_BASE_URL"] = base_url + ("/v1" if prefix == "OPENAI" else "")
        env[f"{prefix}_API_KEY"] = API_KEY
    env.update(
        GOOGLE_GEMINI_BASE_URL=base_url,
        GOOGLE_API_KEY=API_KEY,
        LLM_LEDGER_DIR=ledger_dir,
        RAY_DISABLE_USAGE_STATS="1",
        RAY_ADDRESS="local",  # a Ray of its own, never another cluster on this machine
        # This checkout's code, not whatever the virtualenv has installed (editable installs
        # point at one checkout; a worktree measures its own).
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


def run_job(rows: int, base_url: str, workdir: Path, cap_s: float) -> dict[str, Any]:
    """One batch job of ``rows`` rows in a child process; its peak memory and timing."""
    source = workdir / f"rows-{rows}.jsonl"
    write_rows(source, rows)
    peak_file = workdir / "peak_kib"
    command = [sys.executable, "-c", WRAPPER, str(peak_file), str(source)]
    command += ["--output", str(workdir / "out"), "--concurrency", str(CONCURRENCY)]
    env = _job_env(base_url, str(workdir / "ledger"))
    journal = workdir / "ledger" / "_journal"
    started = time.perf_counter()
    with open(workdir / "job.log", "wb") as log:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)
    tree_peak = journal_peak = 0
    actors = dict.fromkeys(ACTORS, 0)
    while proc.poll() is None:
        pids = descendants(proc.pid)
        tree_peak = max(tree_peak, sum(_rss_kib(pid) for pid in pids))
        for key, kib in actor_peaks_kib(pids).items():
            actors[key] = max(actors[key], kib)
        journal_peak = max(journal_peak, dir_bytes(journal))
        if time.perf_counter() - started > cap_s:
            proc.kill()
        time.sleep(SAMPLE_S)
    journal_end = dir_bytes(journal)
    try:
        driver_kib: int | None = int(peak_file.read_text())
    except (OSError, ValueError):
        driver_kib = None
    return {
        "rows": rows,
        "exit_code": proc.returncode,
        "seconds": round(time.perf_counter() - started, 2),
        "driver_peak_mib": round(driver_kib / 1024, 1) if driver_kib else None,
        "tree_peak_mib": round(tree_peak / 1024, 1),
        **{f"{key}_peak_mib": round(kib / 1024, 1) if kib else None for key, kib in actors.items()},
        "journal_peak_bytes": max(journal_peak, journal_end),
        "journal_end_bytes": journal_end,
        "journal_bytes_per_row": round(max(journal_peak, journal_end) / rows, 1),
    }


def _log_tail(workdir: Path, lines: int = 3) -> str:
    try:
        text = (workdir / "job.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[:300]


def run(quick: bool) -> list[Figure]:
    """Two job sizes, each in a fresh process and output directory."""
    plan = plan_for(quick)
    runs: list[dict[str, Any]] = []
    with ProcessEmulator(UNBOUNDED_ACCOUNT) as emulator:
        for rows in (plan.small, plan.large):
            print(f"  scale: batch job, {rows} rows...", flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
                try:
                    result = run_job(rows, emulator.base_url, Path(tmp), plan.cap_s)
                except OSError as exc:
                    return [not_measured(SCENARIO, "batch job", error_text(exc), TARGET)]
                if result["exit_code"] != 0:
                    reason = (
                        f"job of {rows} rows exited {result['exit_code']}: {_log_tail(Path(tmp))}"
                    )
                    return [not_measured(SCENARIO, "batch job", reason, TARGET)]
                runs.append(result)
    small, large = runs
    return [
        process_figure(contender, key, small, large)
        for contender, key in (
            ("batch job", "driver_peak_mib"),
            ("ledger actor", "ledger_actor_peak_mib"),
            ("provider actor", "provider_actor_peak_mib"),
        )
    ]


def process_figure(
    contender: str, key: str, small: dict[str, Any], large: dict[str, Any]
) -> Figure:
    """Large / small peak of one process, its per-row slope and its 1 M-row extrapolation."""
    if not small.get(key) or not large.get(key):
        return not_measured(SCENARIO, contender, f"no {key} was read", TARGET)
    ratio = round(large[key] / small[key], 3)
    slope_kib = (large[key] - small[key]) * 1024 / (large["rows"] - small["rows"])
    raw = {
        "key": key,
        "small": small,
        "large": large,
        "kib_per_row": round(slope_kib, 4),
        "million_rows_mib": round(
            large[key] + max(slope_kib, 0) * (MILLION - large["rows"]) / 1024, 1
        ),
    }
    if small["tree_peak_mib"]:
        raw["tree_ratio"] = round(large["tree_peak_mib"] / small["tree_peak_mib"], 3)
    passed = ratio <= LIMIT
    return Figure(SCENARIO, contender, ratio=ratio, target=TARGET, passed=passed, raw=raw)
