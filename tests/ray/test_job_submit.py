"""`ray job submit` of the batch job against a head started with `ray start --head`, online
and then with ``--mode batch`` (the provider batch APIs; rows recorded by the LedgerActor).

This is the README's cluster recipe, run on this machine: a separate Ray head (own temp dir
and ports, so it never touches the test session's embedded Ray), token authentication on
(``RAY_AUTH_MODE=token`` for the job client), the project uploaded as the working dir, and
``python -m jobs.batch ... --address auto --offline`` as the entrypoint. The head is stopped by
killing exactly the processes that belong to its temp dir (``ray stop`` would stop every Ray
on the machine).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _free_ports(n: int, rng: random.Random) -> list[int]:
    """``n`` distinct ports that are free now, drawn below the kernel's ephemeral range.

    Ports the kernel hands out (32768-60999 here) can be taken by any other process's outgoing
    connection between this check and ``ray start`` (the test session's own Ray makes many), which
    once failed CI with the GCS unable to bind; a port drawn from 10000-19999 is only taken by a
    process that binds it on purpose. Workers use 20000-20999 (below)."""
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(10000, 20000)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _kill_tree_of(temp_dir: str) -> None:
    """Kill every process whose command line mentions the head's temp dir."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if temp_dir in cmdline and int(pid_dir.name) != os.getpid():
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def ray_head(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray socket paths are limited
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", RAY_USAGE_STATS_ENABLED="0")
    rng = random.Random()
    for _ in range(3):  # a port taken between the check and the bind: new ports, again
        ports = _free_ports(9, rng)
        (gcs, dash, agent_listen, agent_grpc, metrics, client, node_mgr, obj_mgr, rt_env) = ports
        start = [
            str(VENV_BIN / "ray"),
            "start",
            "--head",
            "--num-cpus=1",
            f"--temp-dir={temp_dir}",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--dashboard-agent-listen-port={agent_listen}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}",
            f"--ray-client-server-port={client}",
            f"--node-manager-port={node_mgr}",
            f"--object-manager-port={obj_mgr}",
            f"--runtime-env-agent-port={rt_env}",
            "--min-worker-port=20000",
            "--max-worker-port=20999",
            "--disable-usage-stats",
        ]
        result = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            break
        _kill_tree_of(temp_dir)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield {"dashboard": f"http://127.0.0.1:{dash}", "gcs": f"127.0.0.1:{gcs}", "env": env}
    finally:
        _kill_tree_of(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_batch_job_runs_through_ray_job_submit(ray_head, tmp_path):
    rows = tmp_path / "rows.jsonl"
    with rows.open("w") as f:
        for i in range(12):
            model = ("claude-haiku-4.5", "gpt-6-luna", "gemini-2.5-flash-lite")[i % 3]
            f.write(json.dumps({"id": f"r{i}", "model": model, "prompt": f"Say hi {i}"}) + "\n")
    output, ledger = tmp_path / "out", tmp_path / "ledger"
    env = dict(
        ray_head["env"],
        RAY_AUTH_MODE="token",  # Ray 2.60 enables token auth; the job client must send it
        RAY_ADDRESS=ray_head["gcs"],
    )
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        env.pop(name, None)
    runtime_env = {"env_vars": {"LLM_LEDGER_DIR": str(ledger)}}
    submit = [
        str(VENV_BIN / "ray"),
        "job",
        "submit",
        "--address",
        ray_head["dashboard"],
        "--working-dir",
        str(ROOT),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "python",
        "-m",
        "jobs.batch",
        str(rows),
        "--output",
        str(output),
        "--offline",
        "--address",
        "auto",
        "--concurrency",
        "4",
    ]
    started = time.monotonic()
    result = subprocess.run(submit, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "succeeded" in log.lower(), log[-4000:]
    table = ds.dataset(str(output), format="parquet").to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(f"r{i}" for i in range(12))
    assert set(table.column("status").to_pylist()) == {"ok"}
    ledger_rows = ds.dataset(str(ledger), format="parquet").to_table()
    assert ledger_rows.num_rows == 12  # one billed call per row, recorded by the LedgerActor
    assert time.monotonic() - started < 300

    # The same rows through the providers' batch APIs, as a second job on the same head.
    batch_output = tmp_path / "out-batch"
    rows_batch = tmp_path / "rows-batch.jsonl"
    rows_batch.write_text(rows.read_text().replace('"id": "r', '"id": "b'))
    argv = submit[: submit.index("jobs.batch") + 1]
    argv += [str(rows_batch), "--output", str(batch_output), "--offline", "--address", "auto"]
    argv += ["--mode", "batch", "--poll-s", "0.5"]
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "batches submitted: 3" in log and "batches open: 3" in log, log[-4000:]
    table = ds.dataset(str(batch_output), format="parquet").to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(f"b{i}" for i in range(12))
    assert set(table.column("status").to_pylist()) == {"ok"}
    tiers = ds.dataset(str(ledger), format="parquet").to_table().column("tier").to_pylist()
    assert tiers.count("batch") == 12 and tiers.count("standard") == 12
