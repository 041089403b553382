"""Rate-limit efficiency: achieved throughput / enforced limit, and 429 answers, per client.

Setup: one emulator enforcing ``rpm`` and a token limit (``itpm``, OpenAI's TPM as the
emulator models it: input tokens) with a realistic time to first token, ``gpt-4.1``. Every
contender of :mod:`bench.contenders` gets the same workload (prompts of 150–450 tokens),
the same limits and concurrency, against a freshly reset emulator whose buckets start
empty (:meth:`bench.common.ThreadEmulator.fresh`), so the run measures the sustained rate.

The buckets start empty at time 0, so in a window of ``w`` seconds the emulator can admit at
most ``rpm / 60 x w`` requests and ``tpm / 60 x w`` input tokens. With ``w`` = time of the
last answer minus the emulator's latency (when that request was admitted at the latest):

* efficiency = the binding limit's share used: ``max(answers / (rpm / 60 x w),
  answered input tokens / (tpm / 60 x w))``, i.e. achieved throughput / enforced limit;
* 429 answers (counted by the emulator) are split into the warm-up (until 10 % of the
  requests had finished) and after it; requests a client gave up are counted as failed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from bench.common import (
    API_KEY,
    Figure,
    Progress,
    ThreadEmulator,
    bench_settings,
    error_text,
    not_measured,
    scratch_dir,
)
from bench.contenders import CONTENDERS, Contender, RateContext, import_litellm
from bench.workload import Call, mean_input_tokens, rate_workload
from llm.emulator.server import EmulatorConfig

SCENARIO = "rate"
MODEL = "gpt-4.1"
RPM = 600
LATENCY_MS = 300.0
CONCURRENCY = 32
#: The token limit binds slightly before the request limit for this workload.
TOKEN_SHARE = 0.95
TARGET = ">= 0.95, no 429 after warm-up"
TARGET_LONG = ">= 0.95, <= 1% answered 429"


@dataclass(frozen=True)
class RatePlan:
    """How many requests each contender sends and how long any one run may take."""

    requests: int
    long_requests: int | None
    cap_s: float
    cookbook_pause_s: float = 15.0


def plan_for(quick: bool) -> RatePlan:
    if quick:
        return RatePlan(requests=250, long_requests=None, cap_s=120.0)
    return RatePlan(requests=600, long_requests=2000, cap_s=420.0)


def token_limit(calls: list[Call], rpm: int = RPM, share: float = TOKEN_SHARE) -> int:
    """A per-minute token limit that lets ``share`` of ``rpm`` through for this workload."""
    return int(round(rpm * mean_input_tokens(calls) * share, -3))


def enforced_rps(calls: list[Call], rpm: int, tpm: int) -> tuple[float, str]:
    """The sustained request rate the limits allow for ``calls``, and which limit binds."""
    by_requests = rpm / 60.0
    by_tokens = tpm / 60.0 / mean_input_tokens(calls)
    return (by_tokens, "tokens") if by_tokens < by_requests else (by_requests, "requests")


def utilization(
    ok: int, ok_tokens: int, window_s: float, rpm: int, tpm: int
) -> tuple[float, float]:
    """Shares of the request and token limits used by ``ok`` answers in ``window_s``.

    The buckets start empty, so at most ``rate x window`` requests (tokens) can be admitted
    in ``window_s`` seconds; the binding limit's share is the efficiency.
    """
    if window_s <= 0:
        return 0.0, 0.0
    return ok / (rpm / 60.0 * window_s), ok_tokens / (tpm / 60.0 * window_s)


def summarize(
    progress: Progress, total_429: int, ctx: RateContext, latency_s: float, wall_s: float
) -> dict[str, object]:
    """Raw numbers of one run (see the module docstring for the definitions)."""
    warmup = progress.warmup_429 if progress.warmup_429 is not None else total_429
    ok = len(progress.ok_times)
    last = progress.last_ok_s()
    window = max(0.0, last - latency_s) if last is not None else 0.0
    by_requests, by_tokens = utilization(ok, progress.ok_tokens, window, ctx.rpm, ctx.tpm)
    return {
        "requests": progress.total,
        "ok": ok,
        "failed": progress.failed,
        "unfinished": progress.total - progress.finished,
        "wall_s": round(wall_s, 3),
        "admission_window_s": round(window, 3),
        "achieved_rps": round(ok / window, 3) if window else None,
        "achieved_input_tpm": round(progress.ok_tokens / window * 60) if window else None,
        "request_limit_used": round(by_requests, 4),
        "token_limit_used": round(by_tokens, 4),
        "binding_limit": "tokens" if by_tokens >= by_requests else "requests",
        "rate_limited_total": total_429,
        "rate_limited_warmup": warmup,
        "rate_limited_after_warmup": total_429 - warmup,
        "warmup_requests": progress.warmup_n,
    }


async def measure(
    name: str,
    contender: Contender,
    calls: list[Call],
    emulator: ThreadEmulator,
    ctx: RateContext,
    cap_s: float,
) -> dict[str, object]:
    """Run one contender against a fresh, drained emulator and return its raw numbers."""
    emulator.fresh(drained=True)
    progress = Progress(len(calls), emulator.rate_limited)
    error: str | None = None
    timed_out = False
    try:
        await asyncio.wait_for(contender(calls, ctx, progress), cap_s)
    except TimeoutError:
        timed_out = True
    except Exception as exc:  # a peer failing to run is a result, not a crash
        error = error_text(exc)
    wall_s = time.perf_counter() - progress.started
    await asyncio.sleep(0.5)  # let cancelled connections close before the next reset
    latency_s = emulator.config.latency_ms / 1000.0
    raw = summarize(progress, emulator.rate_limited(), ctx, latency_s, wall_s)
    raw["enforced_rps"] = round(enforced_rps(calls, ctx.rpm, ctx.tpm)[0], 3)
    raw.update(timed_out=timed_out, error=error, contender=name)
    return raw


def to_figure(contender: str, raw: dict[str, object], *, long: bool = False) -> Figure:
    """The table row for one run; targets apply to this project's runtime only."""
    used = max(float(raw["request_limit_used"]), float(raw["token_limit_used"]))
    ratio = round(used, 3) if raw["ok"] else None
    figure = Figure(SCENARIO, contender, ratio=ratio, raw=raw)
    if raw.get("error") and ratio is None:
        figure.status, figure.reason = "n/a", str(raw["error"])
    if contender.startswith("runtime"):
        figure.target = TARGET_LONG if long else TARGET
        figure.passed = _passed(ratio, raw, long)
    return figure


def _passed(ratio: float | None, raw: dict[str, object], long: bool) -> bool:
    if ratio is None or ratio < 0.95 or raw["failed"] or raw["unfinished"]:
        return False
    if long:
        return int(raw["rate_limited_total"]) <= 0.01 * int(raw["requests"])
    return raw["rate_limited_after_warmup"] == 0


def _available(name: str) -> str | None:
    """Why a contender cannot run here, or None."""
    if name != "litellm-router":
        return None
    try:
        import_litellm()
    except Exception as exc:  # ImportError, or a broken install
        return "litellm does not import here: " + error_text(exc)
    return None


async def run(quick: bool, names: list[str] | None = None, long: bool = False) -> list[Figure]:
    """Every contender on the same workload, then (full run, or ``long``) the runtime on 2,000."""
    plan = plan_for(quick)
    if long and plan.long_requests is None:
        plan = replace(plan, long_requests=2000, cap_s=420.0)
    calls = rate_workload(plan.requests)
    tpm = token_limit(calls)
    emulator = ThreadEmulator(EmulatorConfig(rpm=RPM, itpm=tpm, latency_ms=LATENCY_MS))
    figures: list[Figure] = []
    try:
        ctx = RateContext(
            emulator.base_url,
            API_KEY,
            bench_settings(emulator.base_url, scratch_dir("ledger-rate")),
            MODEL,
            RPM,
            tpm,
            CONCURRENCY,
            cookbook_pause_s=plan.cookbook_pause_s,
        )
        for name in names or list(CONTENDERS):
            figures.append(await _run_one(name, calls, emulator, ctx, plan.cap_s))
        figures.append(await _run_long(plan, emulator, ctx))
    finally:
        emulator.stop()
    return figures


async def _run_one(
    name: str, calls: list[Call], emulator: ThreadEmulator, ctx: RateContext, cap_s: float
) -> Figure:
    reason = _available(name)
    target = TARGET if name == "runtime" else None
    if reason is not None:
        return not_measured(SCENARIO, name, reason, target)
    print(f"  rate: {name} ({len(calls)} requests)...", flush=True)
    raw = await measure(name, CONTENDERS[name], calls, emulator, ctx, cap_s)
    raw["limits"] = {"rpm": ctx.rpm, "tpm": ctx.tpm, "latency_ms": LATENCY_MS}
    raw["concurrency"] = ctx.concurrency
    if name == "cookbook":
        raw["cookbook"] = ctx.notes.get("cookbook")
    return to_figure(name, raw)


async def _run_long(plan: RatePlan, emulator: ThreadEmulator, ctx: RateContext) -> Figure:
    name = "runtime-2000"
    if plan.long_requests is None:
        reason = "full run only (python -m bench, or --runtime-2000)"
        return not_measured(SCENARIO, name, reason, TARGET_LONG)
    calls = rate_workload(plan.long_requests, seed=8)
    print(f"  rate: {name} ({len(calls)} requests)...", flush=True)
    raw = await measure(name, CONTENDERS["runtime"], calls, emulator, ctx, plan.cap_s)
    raw["limits"] = {"rpm": ctx.rpm, "tpm": ctx.tpm, "latency_ms": LATENCY_MS}
    return to_figure(name, raw, long=True)
