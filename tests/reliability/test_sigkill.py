"""SIGKILL of the batch driver mid-run, then a rerun: each id once, nothing billed twice.

Two modes, with different guarantees:

* **Cluster** (``ray start --head``, the job joins with ``--address``; the production mode).
  The detached provider and ledger actors outlive the driver: the calls in flight when it
  dies still finish, are billed once and journaled, and the rerun gets them back from the
  journal. Asserted: every id once, every row ok, billed calls == ledger rows == rows.
  No call reaches the provider twice (the emulator's count of requests == rows).
* **Embedded** (Ray started inside the driver, the default; full suite only). The
  driver's death takes the actors with it; the calls they had in flight are abandoned
  mid-request and sent again by the rerun. The emulator cancels an abandoned request and
  does not count it as answered, but a real provider may bill a generation whose client
  went away. Asserted: every id once, every row ok, one ledger row per id, answers
  delivered == rows, and calls sent twice <= ``--concurrency`` (those in flight).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from rel_support import (
    REPO,
    SENTINEL,
    batch_command,
    billed_calls,
    job_env,
    kill_group,
    ledger_rows,
    make_rows,
    output_rows,
    processes_of,
    ray_head,
    reap,
    record_counts,
    run_job,
    short_tmpdir,
    wait_for_rows,
    write_jsonl,
)

CONCURRENCY = 8
JOB_ARGS = ("--concurrency", str(CONCURRENCY), "--flush-rows", "4", "--flush-interval-s", "0.2")
#: Emulator latency: long enough for the kill to land mid-run with calls in flight.
LATENCY_MS = 200


def settle(emulator, seconds: float = 1.0) -> int:
    """Billed calls once the calls in flight at the kill have had time to finish."""
    time.sleep(seconds)
    return billed_calls(emulator.engine.stats)


def check_rerun(rows: int, output: Path, ledger: Path) -> list[dict]:
    out = output_rows(output)
    ids = Counter(row["id"] for row in out)
    assert set(ids) == {f"k{i:05d}" for i in range(rows)}, "every id is in the output"
    assert max(ids.values()) == 1, "no id twice"
    assert {row["status"] for row in out} == {"ok"}
    records = ledger_rows(ledger)
    per_id = Counter(row["request_id"] for row in records)
    assert max(per_id.values()) == 1, "one ledger row per request id"
    assert set(per_id) == {row["request_id"] for row in out}
    return records


def _scenario(tmp_path: Path, emulator_factory, rows: int) -> tuple:
    emulator = emulator_factory(api_key=SENTINEL, latency_ms=LATENCY_MS)
    input_path = write_jsonl(tmp_path / "input.jsonl", make_rows(rows, prefix="k"))
    return emulator, input_path, tmp_path / "out", tmp_path / "ledger"


@pytest.mark.parametrize(
    "rows", [pytest.param(60, id="short"), pytest.param(600, marks=pytest.mark.reliability_full)]
)
def test_sigkill_on_a_cluster_bills_nothing_twice(tmp_path, emulator_factory, rows) -> None:
    emulator, input_path, output, ledger = _scenario(tmp_path, emulator_factory, rows)
    ray_tmp = short_tmpdir("rk")
    env = job_env(emulator.base_url, ledger, ray_tmp)
    try:
        with ray_head(env, ray_tmp) as head:
            args = ("--address", head.address)
            at_kill, killed = kill_midway(input_path, output, env, args, rows)
            billed_after_kill = settle(emulator)
            kill_group(killed)
            rerun = run_job(input_path, output, env, *args, *JOB_ARGS)
            assert rerun.returncode == 0, rerun.stderr[-2000:]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert at_kill < rows, "the driver died mid-run"
    assert billed_after_kill > at_kill, "calls in flight at the kill were billed"
    records = check_rerun(rows, output, ledger)
    billed = billed_calls(emulator.engine.stats)
    assert billed == len(records) == rows, "billed calls == ledger rows == rows: none twice"
    started = emulator.engine.stats.requests
    assert started == rows, "no call was even sent twice: in-flight calls finished and journaled"
    record_counts(
        f"sigkill_cluster_{rows}",
        {
            "rows": rows,
            "rows_in_output_at_kill": at_kill,
            "billed_at_kill": billed_after_kill,
            "answered_from_journal": billed_after_kill - at_kill,
            "billed_calls": billed,
            "ledger_rows": len(records),
            "billed_twice": billed - rows,
            "calls_started": started,
            "rows_lost": 0,
        },
    )


def kill_midway(
    input_path: Path, output: Path, env: dict[str, str], args: tuple[str, ...], rows: int
) -> tuple[int, subprocess.Popen]:
    """Start the job, SIGKILL the driver (only) once a sixth of the rows are committed."""
    log = (output.parent / "killed-run.log").open("w")
    output.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [*batch_command(input_path, output, *JOB_ARGS), *args],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_rows(output, max(8, rows // 6))
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    except BaseException:
        kill_group(process)
        raise
    finally:
        log.close()
    return len(output_rows(output)), process


@pytest.mark.reliability_full
@pytest.mark.parametrize("rows", [100, 600])
def test_sigkill_with_embedded_ray(tmp_path, emulator_factory, rows) -> None:
    emulator, input_path, output, ledger = _scenario(tmp_path, emulator_factory, rows)
    ray_tmp = short_tmpdir("re")
    env = job_env(emulator.base_url, ledger, ray_tmp)
    try:
        at_kill, killed = kill_midway(input_path, output, env, (), rows)
        billed_after_kill = settle(emulator)
        leftovers = processes_of(ray_tmp)
        kill_group(killed)
        reap(ray_tmp)
        rerun = run_job(input_path, output, env, *JOB_ARGS)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    finally:
        reap(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert at_kill < rows, "the driver died mid-run"
    records = check_rerun(rows, output, ledger)
    billed = billed_calls(emulator.engine.stats)
    assert len(records) == rows
    assert billed == rows, "answers delivered: each once (abandoned calls are not answered)"
    started = emulator.engine.stats.requests
    assert rows <= started <= rows + CONCURRENCY, "only calls in flight at the kill are resent"
    record_counts(
        f"sigkill_embedded_{rows}",
        {
            "rows": rows,
            "rows_in_output_at_kill": at_kill,
            "billed_at_kill": billed_after_kill,
            "billed_calls": billed,
            "ledger_rows": len(records),
            "billed_twice": billed - rows,
            "calls_started": started,
            "calls_sent_twice": started - rows,
            "ray_processes_alive_1s_after_kill": len(leftovers),
            "rows_lost": 0,
        },
    )
