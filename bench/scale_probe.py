"""Probe for the scale scenario: what in the actors grows with rows (not a scenario).

``python -m bench.scale_probe 3000,10000,10000`` starts a zero-latency emulator in another
process and one embedded Ray, then runs ``jobs.batch`` (``--concurrency 256``, distinct row
ids) once per size in that same Ray session, so the detached actors live on from job to
job. After each job it asks the ledger actor and the provider actor (through Ray's
``__ray_call__``) for a census: resident set (``VmRSS``, ``VmHWM``), the resident set after
``malloc_trim(0)`` (memory glibc held free), CPython's allocated blocks and the number of
objects the garbage collector tracks. A resident set that grows from job to job while the
objects and blocks do not is native memory (Ray's core worker, an allocator), not Python.
Set ``RAY_task_events_report_interval_ms=0`` (or other ``RAY_*`` variables) to compare.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import UNBOUNDED_ACCOUNT, ProcessEmulator
from bench.scale import CONCURRENCY, _job_env, write_rows


def census(_actor: Any) -> dict[str, Any]:
    """Runs inside an actor: its memory and object counts now."""
    import ctypes
    import gc

    def status(*fields: str) -> dict[str, int]:
        with open("/proc/self/status", encoding="ascii") as f:
            return {
                line.split(":")[0]: int(line.split()[1]) // 1024
                for line in f
                if line.startswith(fields)
            }

    gc.collect()
    found: dict[str, Any] = status("VmRSS", "VmHWM")
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    found["trimmed"] = status("VmRSS")["VmRSS"]
    found["blocks"] = sys.getallocatedblocks()
    found["objects"] = len(gc.get_objects())
    return found


def main(sizes: list[int]) -> None:
    import ray

    work = Path(tempfile.mkdtemp(prefix="scale-probe-"))
    with ProcessEmulator(UNBOUNDED_ACCOUNT) as emulator:
        os.environ.update(_job_env(emulator.base_url, str(work / "ledger")))
        ray.init(address="local", include_dashboard=False, namespace="llm")
        from jobs.batch import build_parser, run_job
        from llm.config import load_settings

        for index, rows in enumerate(sizes):
            source = work / f"rows{index}.jsonl"
            write_rows(source, rows)
            source.write_text(source.read_text().replace('"id": "r', f'"id": "j{index}r'))
            output = str(work / f"out{index}")
            argv = [str(source), "--output", output, "--concurrency", str(CONCURRENCY)]
            started = time.perf_counter()
            code = asyncio.run(run_job(build_parser().parse_args(argv), load_settings()))
            print(f"job {index}: {rows} rows, exit {code}, {time.perf_counter() - started:.1f} s")
            for name in sorted(ray.util.list_named_actors()):
                if name.startswith(("llm-ledger", "llm-provider-")):
                    actor = ray.get_actor(name, namespace="llm")
                    print(f"  {name}: {ray.get(actor.__ray_call__.remote(census))}", flush=True)
        ray.shutdown()


if __name__ == "__main__":
    main([int(size) for size in (sys.argv[1] if len(sys.argv) > 1 else "3000,10000").split(",")])
