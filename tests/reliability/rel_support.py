"""Helpers of the reliability suite: input rows, job subprocesses, emulator counters, leaks.

Counting conventions (the emulator's in-process counters, ``EmulatorThread.engine.stats``):

* **billed calls** are the generate answers the emulator delivered with status 200
  (``by_status["200"]`` minus token-count calls and streams it cut mid-way). A real
  provider bills such an answer even if the client never reads it.
* **faults injected** are ``stats.faults``, split by kind: 429, 500, overloaded
  (529 from Anthropic, 503 from OpenAI and Gemini), connection reset and cut body.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from llm.emulator.server import EmulatorConfig, EmulatorThread, start_in_thread

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
#: Same value as ``tests/conftest.py``'s SENTINEL_KEY: the only key the emulator accepts.
SENTINEL = "sk-SENTINEL-0123456789abcdef-DO-NOT-LEAK"
MODELS = ("claude-haiku-4.5", "gpt-6-luna", "gemini-2.5-flash-lite")
KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY")
SHORT_FAULT_ROWS = 150
FAULT_RATE = 0.1
FAULT_SEED = 11
#: Where measured counts are appended (one JSON object a line) when set.
COUNTS_ENV = "RELIABILITY_COUNTS_FILE"


# ---------------------------------------------------------------------- input rows


def make_rows(n: int, *, prefix: str = "r", max_tokens: int = 40) -> list[dict[str, Any]]:
    """``n`` distinct prompt rows spread over the three providers."""
    return [
        {
            "id": f"{prefix}{i:05d}",
            "model": MODELS[i % len(MODELS)],
            "prompt": f"Question {i}: say something short about the number {i * 7}.",
            "max_tokens": max_tokens,
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ---------------------------------------------------------------------- emulator counters


def billed_calls(stats: Any, *, streams_cut: int = 0) -> int:
    """Generate answers delivered with status 200 (see the module docstring)."""
    return stats.by_status.get("200", 0) - stats.count_requests - streams_cut


def faults_by_kind(stats: Any, *, streamed: bool = False) -> dict[str, int]:
    """Injected faults by kind. Non-streamed cuts and resets are answered as a dropped 500."""
    status = stats.by_status
    reset, cut = status.get("reset", 0), status.get("cut", 0)
    dropped = reset + (0 if streamed else cut)
    return {
        "429": status.get("429", 0),
        "500": status.get("500", 0) - dropped,
        "overloaded": status.get("529", 0) + status.get("503", 0),
        "reset": reset,
        "cut": cut,
    }


def record_counts(name: str, counts: dict[str, Any]) -> None:
    """Print the measured counts (``pytest -s``) and append them to $RELIABILITY_COUNTS_FILE."""
    line = json.dumps({"test": name, **counts}, sort_keys=True, default=str)
    print(f"\nRELIABILITY {line}")
    target = os.environ.get(COUNTS_ENV)
    if target:
        with open(target, "a") as handle:
            handle.write(line + "\n")


# ---------------------------------------------------------------------- subprocesses


def short_tmpdir(prefix: str) -> Path:
    """A short directory under /tmp (Ray's socket paths must stay under ~100 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def job_env(
    base_url: str, ledger_dir: Path, ray_tmp: Path, *, key: str = SENTINEL, **extra: str
) -> dict[str, str]:
    """The environment of a batch job (or Ray head) pointed at one emulator with ``key``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not (name.endswith(("_API_KEY", "_BASE_URL")) or name.startswith(("LLM_", "RAY_")))
    }
    root = base_url.rstrip("/")
    env.update(
        {name: key for name in KEY_VARS},
        ANTHROPIC_BASE_URL=root,
        OPENAI_BASE_URL=root + "/v1",
        GOOGLE_GEMINI_BASE_URL=root,
        LLM_LEDGER_DIR=str(ledger_dir),
        RAY_TMPDIR=str(ray_tmp),
        RAY_AUTH_MODE="token",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def env_tmp(env: dict[str, str]) -> Path:
    return Path(env["RAY_TMPDIR"])


def batch_command(input_path: Path, output: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.batch", str(input_path), "--output", str(output), *args]


def run_job(
    input_path: Path, output: Path, env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the batch job to the end; returns its exit code, stdout and stderr."""
    return subprocess.run(
        batch_command(input_path, output, *args),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL what is left of a process group this suite started (its own Ray, if any)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def processes_of(ray_tmp: Path) -> list[int]:
    """Pids of live processes started with ``RAY_TMPDIR=ray_tmp`` (unique per test)."""
    marker = f"RAY_TMPDIR={ray_tmp}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes() and b"Z" not in _state(entry):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _state(entry: Path) -> bytes:
    return (entry / "stat").read_bytes().rsplit(b")", 1)[-1][:3]


def reap(ray_tmp: Path, grace_s: float = 15.0) -> None:
    """Give the Ray processes of ``ray_tmp`` time to exit, then SIGKILL the rest by pid."""
    deadline = time.monotonic() + grace_s
    while processes_of(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in processes_of(ray_tmp):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RayHead:
    """A Ray head started with ``ray start --head --block`` (the production mode)."""

    process: subprocess.Popen[str]
    address: str
    temp_dir: Path


@contextmanager
def ray_head(env: dict[str, str], temp_dir: Path, *, timeout: float = 90) -> Iterator[RayHead]:
    """Start a Ray head of our own (own port, own temp dir); kill its process group at exit.

    A graceful stop (SIGTERM) drains for up to 30 s; a test cluster need not wait for that.
    """
    port = free_port()
    log = (temp_dir / "head.log").open("w")
    process = subprocess.Popen(
        [
            str(VENV_BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir / 'ray'}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    head = RayHead(process, f"127.0.0.1:{port}", temp_dir)
    try:
        _wait_for_head(head, env, timeout)
        yield head
    finally:
        kill_group(process)  # GCS and raylet share its group; workers exit when they go
        process.wait(timeout=30)
        reap(env_tmp(env))
        log.close()


def _wait_for_head(head: RayHead, env: dict[str, str], timeout: float) -> None:
    """Wait for ``ray start`` to report that the head's processes are up."""
    log = head.temp_dir / "head.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            raise RuntimeError(f"ray start --head exited early:\n{log.read_text()[-2000:]}")
        if "Ray runtime started" in log.read_text():
            return
        time.sleep(0.2)
    raise RuntimeError("the Ray head did not come up")


# ---------------------------------------------------------------------- reading results


def output_rows(directory: Path) -> list[dict[str, Any]]:
    """Every row of a batch output dataset."""
    from jobs.batch_output import read_output

    return read_output(directory).to_pylist()


def ledger_rows(directory: Path) -> list[dict[str, Any]]:
    from runtime.ledger_store import read_ledger

    return read_ledger(directory).to_pylist() if directory.exists() else []


def wait_for_rows(directory: Path, at_least: int, *, timeout: float = 120) -> int:
    """Poll the output's part files until they hold ``at_least`` rows; returns the count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = 0
        for path in sorted(directory.glob("part-*.parquet")):
            try:
                count += pq.ParquetFile(path).metadata.num_rows
            except OSError:
                pass
        if count >= at_least:
            return count
        time.sleep(0.02)
    raise TimeoutError(f"fewer than {at_least} rows in {directory} after {timeout} s")


# ---------------------------------------------------------------------- leak search


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    yield path


def parquet_text(path: Path) -> str:
    """Every value of a Parquet file, decoded (compressed pages hide text from a byte grep)."""
    return json.dumps(pq.read_table(path).to_pylist(), default=str)


def leaks(secret: str, *roots: Path) -> list[str]:
    """Files under ``roots`` whose bytes (or, for Parquet, decoded values) contain ``secret``."""
    needle = secret.encode()
    found = []
    for path in files_under(*roots):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if needle in data:
            found.append(str(path))
        elif path.suffix == ".parquet" and secret in parquet_text(path):
            found.append(f"{path} (decoded)")
    return found


# ---------------------------------------------------------------------- the faulted run


@dataclass
class FaultedRun:
    """One batch job run against a faulty emulator, and everything it left behind."""

    rows: int
    process: subprocess.CompletedProcess[str]
    emulator: EmulatorThread
    input_path: Path
    output: Path
    ledger: Path
    ray_tmp: Path


def run_faulted_batch(workdir: Path, rows: int, *args: str) -> FaultedRun:
    """Run ``rows`` rows through ``python -m jobs.batch`` at a 10 % fault rate."""
    emulator = start_in_thread(
        EmulatorConfig(fault_rate=FAULT_RATE, seed=FAULT_SEED, api_key=SENTINEL)
    )
    ray_tmp = short_tmpdir("rf")
    input_path = write_jsonl(workdir / "input.jsonl", make_rows(rows))
    output, ledger = workdir / "out", workdir / "ledger"
    env = job_env(emulator.base_url, ledger, ray_tmp)
    try:
        process = run_job(input_path, output, env, "--concurrency", "32", *args)
    finally:
        emulator.stop()
    return FaultedRun(rows, process, emulator, input_path, output, ledger, ray_tmp)
