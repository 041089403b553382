"""Prompt-cache cost: N requests sharing a long system prompt, at concurrency C.

Both contenders send the same N requests (one ~5k-token system prompt, a short distinct
question each) to ``claude-sonnet-4.6`` with ``enable_caching=True`` and a semaphore of C,
against a freshly reset emulator (no cache) with a 300 ms time to first token:

* ``runtime``: ``LLMService`` over :class:`runtime.local.EngineExecutor`, whose prompt-cache
  gate lets one leader write the prefix and holds the others until it has started;
* ``naive fan-out``: ``LLMService`` over the plain :class:`llm.executor.LocalExecutor`
  (adapter plus retries, no gate), all at once.

Each contender first sends one small uncached request (not counted), so that importing the
SDK and opening the connection pool do not serialise the first wave.

Ratio = total billed cost / theoretical minimum, where the minimum prices the same requests
(same input and output token counts as measured) as one full cache write followed by N-1
full cache reads of the shared prefix. Decimal throughout; printed as float.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bench.common import (
    Figure,
    ThreadEmulator,
    bench_settings,
    error_text,
    not_measured,
    scratch_dir,
)
from bench.workload import system_prompt
from llm.emulator.server import EmulatorConfig
from llm.exceptions import LLMError
from llm.executor import Executor, LocalExecutor
from llm.pricing import compute_cost
from llm.registry import resolve_model
from llm.types import LLMResponse, Usage

SCENARIO = "cache"
MODEL = "claude-sonnet-4.6"
SYSTEM_TOKENS = 5000
CONCURRENCY = 16
LATENCY_MS = 300.0
TARGET = "<= 1.05"


@dataclass(frozen=True)
class CachePlan:
    requests: int
    cap_s: float


def plan_for(quick: bool) -> CachePlan:
    return CachePlan(40, 120.0) if quick else CachePlan(200, 300.0)


def minimum_cost(responses: list[LLMResponse]) -> tuple[Decimal, int]:
    """One full write then full reads of the shared prefix, same token counts; and its size.

    The prefix size is the largest cache read or write any response reported.
    """
    model = resolve_model(MODEL)
    prefix = max(max(r.usage.cached_tokens, r.usage.cache_write_tokens) for r in responses)
    total = Decimal(0)
    for index, response in enumerate(responses):
        usage = response.usage
        parts = {"cache_write_tokens": prefix} if index == 0 else {"cached_tokens": prefix}
        ideal = Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, **parts)
        total += compute_cost(model, ideal).total_cost
    return total, prefix


def billed_cost(responses: list[LLMResponse]) -> Decimal:
    return sum((r.cost.total_cost for r in responses if r.cost is not None), Decimal(0))


async def send_all(
    executor: Executor, settings: Any, requests: int, system: str
) -> tuple[list[LLMResponse], float]:
    """A warm-up call, then the N requests through ``LLMService`` over ``executor``.

    Returns the answers and the seconds the N requests took.
    """
    from llm.service import LLMService

    service = LLMService(settings=settings, executor=executor)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> LLMResponse:
        async with semaphore:
            return await service.generate(
                model=MODEL,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": f"Question {index}: summarise record {index}."},
                ],
                max_tokens=64,
                enable_caching=True,
            )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await service.generate(model=MODEL, messages=[{"role": "user", "content": "hi"}])
            started = time.perf_counter()
            responses = await asyncio.gather(*(one(i) for i in range(requests)))
            return list(responses), time.perf_counter() - started
    finally:
        await service.aclose()


def _raw(responses: list[LLMResponse], seconds: float) -> dict[str, Any]:
    billed = billed_cost(responses)
    minimum, prefix = minimum_cost(responses)
    usage = [r.usage for r in responses]
    return {
        "requests": len(responses),
        "concurrency": CONCURRENCY,
        "prefix_tokens": prefix,
        "cache_writes": sum(1 for u in usage if u.cache_write_tokens > 0),
        "cache_reads": sum(1 for u in usage if u.cached_tokens > 0),
        "uncached": sum(1 for u in usage if not u.cached_tokens and not u.cache_write_tokens),
        "billed_usd": str(billed),
        "minimum_usd": str(minimum),
        "seconds": round(seconds, 3),
        "ratio_exact": str(billed / minimum) if minimum else None,
    }


async def _measure(
    name: str, make_executor: Any, emulator: ThreadEmulator, plan: CachePlan
) -> Figure:
    target = TARGET if name == "runtime" else None
    emulator.fresh()
    settings = bench_settings(emulator.base_url, scratch_dir("ledger-cache"))
    system = system_prompt(SYSTEM_TOKENS)
    print(f"  cache: {name} ({plan.requests} requests)...", flush=True)
    try:
        executor = make_executor(settings)
        coro = send_all(executor, settings, plan.requests, system)
        responses, seconds = await asyncio.wait_for(coro, plan.cap_s)
    except (LLMError, TimeoutError, ImportError) as exc:
        return not_measured(SCENARIO, name, error_text(exc), target)
    raw = _raw(responses, seconds)
    if raw["prefix_tokens"] == 0:
        return not_measured(SCENARIO, name, "no cache read or write was reported", target)
    ratio = round(float(Decimal(raw["ratio_exact"])), 4)
    passed = ratio <= 1.05 if target else None
    return Figure(SCENARIO, name, ratio=ratio, target=target, passed=passed, raw=raw)


def _engine_executor(settings: Any) -> Executor:
    from runtime.local import EngineExecutor

    return EngineExecutor(settings, limits={})


async def run(quick: bool) -> list[Figure]:
    """Our runtime vs naive fan-out, same requests, fresh emulator each."""
    plan = plan_for(quick)
    emulator = ThreadEmulator(EmulatorConfig(latency_ms=LATENCY_MS))
    try:
        ours = await _measure("runtime", _engine_executor, emulator, plan)
        naive = await _measure("naive fan-out", LocalExecutor, emulator, plan)
    finally:
        emulator.stop()
    if ours.status == "ok" and naive.status == "ok":
        ratio = Decimal(naive.raw["billed_usd"]) / Decimal(ours.raw["billed_usd"])
        naive.raw["cost_vs_runtime"] = round(float(ratio), 4)
    return [ours, naive]
