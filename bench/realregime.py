"""The real regime: seconds-long heavy-tailed latency, thousands of RPM, limits nobody set.

Setup, the same for every contender of one account: an emulator in its own process
(``python -m llm.emulator --rpm R --latency-ms 4000 --latency-dist lognormal
--latency-sigma 0.6``: median 4 s, p99 near 16 s) enforcing ``R`` requests per minute over
one-second windows and sending rate-limit headers on every answer, reset (an idle, fresh
account) before each contender. Nobody tells the clients the limit, except where a tool
cannot run without one (cookbook, LiteLLM: their ``rpm`` is set to ``R``). Rows are short
prompts (50–150 tokens, ``max_tokens`` 64). Each contender gets ``cap_s`` seconds; rows not
finished by then count as unfinished.

Contenders (Anthropic's API unless said otherwise):

* ``jobs.batch``: ``python -m jobs.batch rows.jsonl --output DIR`` with default flags in a
  child process (Ray embedded in the job);
* ``jobs.batch x2 --address``: ``ray start --head`` started by the bench, then two
  ``jobs.batch --address`` drivers, half the rows each, sharing the one account (the keys
  are in the cluster's environment);
* ``LLMService gather``: ``asyncio.gather`` over ``LLMService().generate()`` in this
  process (the in-process runtime, default flags);
* ``gather+semaphore``: ``asyncio.gather`` behind a semaphore of 256 with
  ``anthropic.AsyncAnthropic(max_retries=8)``;
* ``cookbook``: :class:`bench.cookbook.CookbookProcessor` (OpenAI's API) with ``rpm`` = R;
* ``litellm-router``: LiteLLM's ``Router`` (OpenAI's API), ``rpm`` = R, 256 concurrent,
  5 retries.

Measured by the emulator (``/_emulator/stats``): admissions, 429 answers (in all and after
the first second), the most calls in flight, and the **share of the rate used** =
admissions / (R / 60 x busy window + one second's burst), the busy window running from the
first request to the last admission. Measured by the bench: rows ok / failed / unfinished,
CPU seconds of the driver(s) and of the rest (Ray's processes, the actors).
Targets (this project's contenders): share >= 0.95, 0 x 429 after the first second.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from bench.common import API_KEY, ROOT, Figure, ProcessEmulator, error_text, not_measured
from bench.workload import Call, rate_workload

SCENARIO = "realregime"
MODEL = "claude-haiku-4.5"
SDK_MODEL = "claude-haiku-4-5"
OPENAI_MODEL = "gpt-4.1"
LATENCY_MS = 4000.0
SIGMA = 0.6
#: When a stream's headers leave the emulator: after the provider's recorded delay.
STREAM_HEADERS = "recorded"
PEER_CONCURRENCY = 256
TARGET = ">= 0.95 of the rate, 0 x 429 after 1 s"
SAMPLE_S = 0.5
OURS = ("jobs.batch", "jobs.batch x2 --address", "LLMService gather")


@dataclass(frozen=True)
class Account:
    """One emulated account: its RPM, the rows each contender sends, the time allowed."""

    rpm: int
    rows: int
    cap_s: float


def plan_for(quick: bool) -> list[Account]:
    if quick:
        return [Account(3000, 600, 60.0)]
    return [Account(3000, 1200, 180.0), Account(10_000, 3000, 240.0)]


@dataclass
class Ctx:
    """Where the emulator is, the account, the rows, a scratch directory."""

    base_url: str
    account: Account
    calls: list[Call]
    workdir: Path


# ------------------------------------------------------------------ helpers
def emulator_args(rpm: int, seed: int = 16) -> list[str]:
    return [
        "--rpm",
        str(rpm),
        "--latency-ms",
        str(LATENCY_MS),
        "--latency-dist",
        "lognormal",
        "--latency-sigma",
        str(SIGMA),
        "--stream-headers",
        STREAM_HEADERS,
        "--seed",
        str(seed),
    ]


def _reset(base_url: str) -> None:
    httpx2.post(base_url + "/_emulator/reset", timeout=10.0).raise_for_status()


def _timeline(base_url: str) -> dict[str, Any]:
    response = httpx2.get(base_url + "/_emulator/stats", timeout=10.0)
    response.raise_for_status()
    return dict(response.json()["timeline"])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    from bench.scale import _children

    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


class CpuWatch:
    """Samples the CPU of some process trees; keeps each process's last reading."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}

    def sample(self, roots: list[int]) -> None:
        for root in roots:
            for pid in _descendants(root):
                cpu = _cpu_s(pid)
                if cpu:
                    self.last[pid] = cpu

    def of(self, pids: list[int]) -> float:
        return round(sum(self.last.get(pid, 0.0) for pid in pids), 2)

    def total(self) -> float:
        return round(sum(self.last.values()), 2)


def write_rows(path: Path, calls: list[Call], start: int = 0) -> None:
    with path.open("w", encoding="utf-8") as out:
        for index, call in enumerate(calls, start):
            row = {"id": f"r{index}", "model": MODEL, "prompt": call.prompt}
            out.write(json.dumps({**row, "max_tokens": call.max_tokens}) + "\n")


def _job_env(base_url: str, ledger_dir: Path, *, embedded: bool) -> dict[str, str]:
    from bench.scale import _job_env as scale_env

    env = scale_env(base_url, str(ledger_dir))
    # The job runs from a scratch directory: make it import this checkout's code.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if not embedded:
        env.pop("RAY_ADDRESS", None)
    return env


def _job_rows(output: Path) -> tuple[int, int]:
    """(ok, failed) of a job: its ``_summary.json``, else the rows its Parquet parts hold.

    A job stopped at the cap writes no summary; the rows it had flushed still count.
    """
    try:
        summary = json.loads((output / "_summary.json").read_text())
        return int(summary.get("ok", 0)), int(summary.get("failed", 0))
    except (OSError, ValueError):
        pass
    import pyarrow.parquet as pq

    ok = failed = 0
    for part in sorted(output.rglob("*.parquet")) if output.exists() else []:
        try:
            statuses = pq.read_table(part, columns=["status"]).column("status").to_pylist()
        except Exception:  # a part torn by the kill
            continue
        ok += sum(1 for status in statuses if status == "ok")
        failed += sum(1 for status in statuses if status != "ok")
    return ok, failed


def _wait_all(procs: list[subprocess.Popen[bytes]], roots: list[int], cap_s: float) -> CpuWatch:
    watch = CpuWatch()
    started = time.perf_counter()
    while any(proc.poll() is None for proc in procs):
        watch.sample(roots)
        if time.perf_counter() - started > cap_s:
            for proc in procs:  # Ctrl-C: the job saves its finished rows and its summary
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            break
        time.sleep(SAMPLE_S)
    return watch


# -------------------------------------------------------------- contenders
def run_job(ctx: Ctx) -> dict[str, Any]:
    """``python -m jobs.batch`` with default flags, Ray embedded."""
    rows, out = ctx.workdir / "rows.jsonl", ctx.workdir / "out"
    write_rows(rows, ctx.calls)
    env = _job_env(ctx.base_url, ctx.workdir / "ledger", embedded=True)
    command = [sys.executable, "-m", "jobs.batch", str(rows), "--output", str(out)]
    with open(ctx.workdir / "job.log", "wb") as log:
        proc = subprocess.Popen(command, cwd=ctx.workdir, env=env, stdout=log, stderr=log)
    watch = _wait_all([proc], [proc.pid], ctx.account.cap_s)
    ok, failed = _job_rows(out)
    driver = watch.of([proc.pid])
    return {
        "ok": ok,
        "failed": failed,
        "exit_codes": [proc.returncode],
        "driver_cpu_s": driver,
        "actor_cpu_s": round(watch.total() - driver, 2),
        "log_tail": _tail(ctx.workdir / "job.log"),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


def run_two_drivers(ctx: Ctx) -> dict[str, Any]:
    """``ray start --head`` (keys in its environment), then two ``jobs.batch --address``."""
    ray_cli = Path(sys.executable).parent / "ray"
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rr", dir="/tmp"))
    env = _job_env(ctx.base_url, ctx.workdir / "ledger", embedded=False)
    # Ray 2.60 turns token auth on; this loopback-only bench cluster runs without it (else
    # every driver would also need the head's token).
    env["RAY_AUTH_MODE"] = "disabled"
    head_cmd = [str(ray_cli), "start", "--head", "--block", f"--port={port}"]
    head_cmd += ["--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}"]
    head_cmd += ["--disable-usage-stats"]
    with open(ctx.workdir / "head.log", "wb") as log:
        head = subprocess.Popen(head_cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        if not _wait_port(port, 60.0):
            raise RuntimeError("the Ray head did not start: " + _tail(ctx.workdir / "head.log"))
        time.sleep(3.0)
        half = len(ctx.calls) // 2
        drivers = []
        for index, part in enumerate((ctx.calls[:half], ctx.calls[half:])):
            rows, out = ctx.workdir / f"rows{index}.jsonl", ctx.workdir / f"out{index}"
            write_rows(rows, part, start=index * half)
            command = [sys.executable, "-m", "jobs.batch", str(rows), "--output", str(out)]
            command += ["--address", f"127.0.0.1:{port}"]
            with open(ctx.workdir / f"job{index}.log", "wb") as log:
                drivers.append(
                    subprocess.Popen(command, cwd=ctx.workdir, env=env, stdout=log, stderr=log)
                )
        pids = [proc.pid for proc in drivers]
        watch = _wait_all(drivers, [*pids, head.pid], ctx.account.cap_s)
        rows_done = [_job_rows(ctx.workdir / f"out{index}") for index in range(2)]
        driver = watch.of(pids)
        return {
            "ok": sum(ok for ok, _ in rows_done),
            "failed": sum(failed for _, failed in rows_done),
            "exit_codes": [proc.returncode for proc in drivers],
            "driver_cpu_s": driver,
            "actor_cpu_s": round(watch.total() - driver, 2),
            "log_tail": _tail(ctx.workdir / "job0.log"),
        }
    finally:
        _stop_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the Ray head this bench started (its own process group) and what it spawned."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            time.sleep(1.0)
        except subprocess.TimeoutExpired:
            continue


def _in_process(ctx: Ctx, body: Callable[[Callable[[bool], None]], Any]) -> dict[str, Any]:
    """Run ``body(done)`` on a fresh event loop for at most ``cap_s``; count rows and CPU."""
    counts = {"ok": 0, "failed": 0}

    def done(ok: bool) -> None:
        counts["ok" if ok else "failed"] += 1

    async def bounded() -> str | None:
        try:
            await asyncio.wait_for(body(done), ctx.account.cap_s)
        except TimeoutError:
            return "timed out"
        return None

    cpu = time.process_time()
    note = asyncio.run(bounded())
    return {**counts, "driver_cpu_s": round(time.process_time() - cpu, 2), "note": note}


def run_service(ctx: Ctx) -> dict[str, Any]:
    """``asyncio.gather`` over ``LLMService().generate()`` (default flags, in process)."""
    from llm.config import load_settings
    from llm.emulator.server import settings_for
    from llm.exceptions import LLMError
    from llm.service import LLMService

    async def body(done: Callable[[bool], None]) -> None:
        base = load_settings().with_overrides(ledger_dir=str(ctx.workdir / "ledger"))
        service = LLMService(settings=settings_for(ctx.base_url, API_KEY, base=base))

        async def one(call: Call) -> None:
            try:
                await service.generate(
                    model=MODEL, messages=call.messages(), max_tokens=call.max_tokens
                )
            except LLMError:
                done(False)
                return
            done(True)

        try:
            await asyncio.gather(*(one(call) for call in ctx.calls))
        finally:
            await service.aclose()

    return _in_process(ctx, body)


def run_gather(ctx: Ctx) -> dict[str, Any]:
    """``asyncio.gather`` + semaphore 256, the Anthropic SDK with 8 retries."""
    import anthropic

    async def body(done: Callable[[bool], None]) -> None:
        client = anthropic.AsyncAnthropic(base_url=ctx.base_url, api_key=API_KEY, max_retries=8)
        gate = asyncio.Semaphore(PEER_CONCURRENCY)

        async def one(call: Call) -> None:
            async with gate:
                try:
                    await client.messages.create(
                        model=SDK_MODEL, messages=call.messages(), max_tokens=call.max_tokens
                    )
                except anthropic.APIError:
                    done(False)
                    return
                done(True)

        try:
            await asyncio.gather(*(one(call) for call in ctx.calls))
        finally:
            await client.close()

    return _in_process(ctx, body)


def run_cookbook(ctx: Ctx) -> dict[str, Any]:
    """The cookbook's parallel processor (OpenAI's API), rpm = the account's."""
    from bench.cookbook import CookbookProcessor

    async def body(done: Callable[[bool], None]) -> None:
        processor = CookbookProcessor(
            ctx.base_url + "/v1/chat/completions",
            API_KEY,
            OPENAI_MODEL,
            max_requests_per_minute=ctx.account.rpm,
            max_tokens_per_minute=2_000_000,  # the default tier the headers report
            on_done=lambda ok, tokens: done(ok),
        )
        await processor.run(ctx.calls)

    return _in_process(ctx, body)


def run_litellm(ctx: Ctx) -> dict[str, Any]:
    """LiteLLM's Router (OpenAI's API), rpm = the account's, 256 concurrent, 5 retries."""
    from bench.contenders import import_litellm

    litellm = import_litellm()

    async def body(done: Callable[[bool], None]) -> None:
        deployment = {
            "model_name": OPENAI_MODEL,
            "litellm_params": {
                "model": f"openai/{OPENAI_MODEL}",
                "api_base": ctx.base_url + "/v1",
                "api_key": API_KEY,
                "rpm": ctx.account.rpm,
            },
        }
        router = litellm.Router(model_list=[deployment], num_retries=5)
        gate = asyncio.Semaphore(PEER_CONCURRENCY)

        async def one(call: Call) -> None:
            async with gate:
                try:
                    await router.acompletion(
                        model=OPENAI_MODEL, messages=call.messages(), max_tokens=call.max_tokens
                    )
                except Exception:
                    done(False)
                    return
                done(True)

        await asyncio.gather(*(one(call) for call in ctx.calls))

    return _in_process(ctx, body)


CONTENDERS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "jobs.batch": run_job,
    "jobs.batch x2 --address": run_two_drivers,
    "LLMService gather": run_service,
    "gather+semaphore": run_gather,
    "cookbook": run_cookbook,
    "litellm-router": run_litellm,
}


def _tail(path: Path, lines: int = 2) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[:300]


# ------------------------------------------------------------------ figures
def to_figure(name: str, account: Account, raw: dict[str, Any]) -> Figure:
    """One row: the share of the rate used, with this project's targets on its own rows."""
    timeline = raw.get("timeline") or {}
    share = timeline.get("share_of_rate")
    contender = f"{name} @ {account.rpm:,} RPM"
    figure = Figure(SCENARIO, contender, ratio=share, raw=raw)
    if share is None:
        figure.status = "n/a"
        figure.reason = raw.get("error") or "no request was admitted: " + str(raw.get("log_tail"))
    if name in OURS:
        figure.target = TARGET
        figure.passed = (
            share is not None
            and share >= 0.95
            and timeline.get("throttled_after_first_s") == 0
            and raw.get("failed") == 0
            and raw.get("unfinished") == 0
        )
    return figure


def measure(name: str, base_url: str, account: Account, calls: list[Call]) -> Figure:
    """Reset the account, run one contender, read the emulator's timeline."""
    runner = CONTENDERS[name]
    _reset(base_url)
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        ctx = Ctx(base_url, account, calls, Path(tmp))
        started = time.perf_counter()
        try:
            raw = runner(ctx)
        except Exception as exc:  # a contender failing to run is a result, not a crash
            raw = {"error": error_text(exc)}
        raw["wall_s"] = round(time.perf_counter() - started, 1)
    time.sleep(1.0)
    raw["timeline"] = _timeline(base_url)
    raw["rows"] = len(calls)
    if "ok" in raw:
        raw["unfinished"] = len(calls) - raw["ok"] - raw.get("failed", 0)
    raw["account"] = {
        "rpm": account.rpm,
        "latency_ms": LATENCY_MS,
        "sigma": SIGMA,
        "stream_headers": STREAM_HEADERS,
    }
    return to_figure(name, account, raw)


def _available(name: str) -> str | None:
    if name == "litellm-router":
        try:
            from bench.contenders import import_litellm

            import_litellm()
        except Exception as exc:
            return "litellm does not import here: " + error_text(exc)
    if name == "jobs.batch x2 --address" and not (Path(sys.executable).parent / "ray").exists():
        return "the ray command is not installed next to this Python"
    return None


def run(quick: bool, names: list[str] | None = None) -> list[Figure]:
    """Every contender against each account of the plan."""
    figures: list[Figure] = []
    for account in plan_for(quick):
        calls = rate_workload(account.rows, min_words=50, max_words=150, max_tokens=64, seed=16)
        with ProcessEmulator(emulator_args(account.rpm)) as emulator:
            for name in names or list(CONTENDERS):
                contender = f"{name} @ {account.rpm:,} RPM"
                reason = _available(name)
                if reason is not None:
                    target = TARGET if name in OURS else None
                    figures.append(not_measured(SCENARIO, contender, reason, target))
                    continue
                print(f"  realregime: {contender} ({len(calls)} rows)...", flush=True)
                figures.append(measure(name, emulator.base_url, account, calls))
                print("    " + _brief(figures[-1]), flush=True)
    return figures


def _brief(figure: Figure) -> str:
    timeline = figure.raw.get("timeline") or {}
    return (
        f"share {figure.ratio}, 429s {timeline.get('throttled')} "
        f"({timeline.get('throttled_after_first_s')} after 1 s), "
        f"max in flight {timeline.get('max_in_flight')}, "
        f"steady {timeline.get('steady_share')}, ok {figure.raw.get('ok')}, "
        f"failed {figure.raw.get('failed')}, unfinished {figure.raw.get('unfinished')}"
    )
