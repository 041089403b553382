"""Overhead: requests per second against a zero-latency emulator, per call path.

The emulator runs in its own process (no latency, no limits), so the cost measured is the
client's. Small requests to ``gpt-4.1`` at concurrency 32 through:

* ``raw SDK``: ``openai.AsyncOpenAI`` (``max_retries=0``) in a ``gather`` loop;
* ``LLMService, plain executor``: :class:`llm.executor.LocalExecutor` (adapter + retries);
* ``LLMService, in process``: the service's default, the in-process runtime
  (:class:`runtime.local.EngineExecutor`: breaker, cache gate, limiter, metering), with the
  default limits configuration, as the actors have it;
* ``LLMService, actors``: :class:`actors.executor.RayExecutor` over provider actors
  (Ray started once, before any timing; the actors also journal every call in the ledger).

Every path is opened and warmed up (20 calls) first; then the paths take turns, round by
round, in an order rotated every round (so background load and drift hit them alike). A
path's rate is its median round. Its ratio is the median, over rounds, of its rate divided by
the in-process path's rate *in the same round*: these machines are noisy (the same path
varies by a third from minute to minute), and pairing rounds cancels most of that. The
target, >= 0.5, is the actor path's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    API_KEY,
    UNBOUNDED_ACCOUNT,
    Figure,
    ProcessEmulator,
    bench_settings,
    error_text,
    not_measured,
    scratch_dir,
)

SCENARIO = "overhead"
MODEL = "gpt-4.1"
CONCURRENCY = 32
WARMUP = 20
TARGET = ">= 0.5 x in process"
IN_PROCESS = "LLMService, in process"
ACTORS = "LLMService, actors"

Send = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class OverheadPlan:
    requests: int
    rounds: int
    cap_s: float


@dataclass
class CallPath:
    """One way of sending a call, and what its rounds measured."""

    name: str
    send: Send
    rates: list[float] = field(default_factory=list)
    failed: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def plan_for(quick: bool) -> OverheadPlan:
    return OverheadPlan(200, 7, 60.0) if quick else OverheadPlan(1000, 11, 300.0)


def _messages(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Say hello to number {index}."}]


async def timed_round(
    send: Send, requests: int, concurrency: int = CONCURRENCY
) -> tuple[float, int]:
    """Send ``requests`` calls at ``concurrency``: (successful calls per second, failures)."""
    semaphore = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(index: int) -> None:
        nonlocal failures
        async with semaphore:
            try:
                await send(index)
            except Exception:  # counted; a failing path is reported, not raised
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    seconds = time.perf_counter() - started
    return (requests - failures) / seconds if seconds > 0 else 0.0, failures


@contextlib.asynccontextmanager
async def raw_sdk(base_url: str) -> AsyncIterator[Send]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0)

    async def send(index: int) -> Any:
        return await client.chat.completions.create(
            model=MODEL, messages=_messages(index), max_tokens=16
        )

    try:
        yield send
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def through_service(executor: Any, settings: Any) -> AsyncIterator[Send]:
    from llm.service import LLMService

    service = LLMService(settings=settings, executor=executor)

    async def send(index: int) -> Any:
        return await service.generate(model=MODEL, messages=_messages(index), max_tokens=16)

    try:
        yield send
    finally:
        await service.aclose()


def _plain(settings: Any) -> Any:
    from llm.executor import LocalExecutor

    return LocalExecutor(settings)


def _engine(settings: Any) -> Any:
    """The in-process runtime as ``LLMService()`` builds it: the same limits configuration
    (:func:`runtime.limits_config.load_limits`) as the provider actors get, so both paths
    run the same policy stack (limiter included) and differ only by where it runs."""
    from runtime.local import EngineExecutor

    return EngineExecutor(settings)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextlib.contextmanager
def ray_runtime(settings: Any) -> Iterator[tuple[Any, float]]:
    """Ray and the actors, started once (``RAY_ADDRESS=local``: a Ray of our own)."""
    from actors.runtime import Runtime

    started = time.perf_counter()
    with _environ(RAY_ADDRESS="local"):
        runtime = Runtime(settings=settings, namespace="llm-bench").start()
    _wait_until_ready(runtime)
    try:
        yield runtime, time.perf_counter() - started
    finally:
        runtime.shutdown(kill_actors=True)


def _wait_until_ready(runtime: Any) -> None:
    """Every actor answers (their processes are up and done importing): actors still
    starting in the background would otherwise eat CPU during the first timed rounds."""
    import ray

    handles = [h for hs in runtime.provider_actors().values() for h in hs]
    ray.get([h.describe.remote() for h in handles] + [runtime.router().routes.remote()])
    ray.get(runtime.ledger().flush.remote())


async def _open_paths(
    stack: contextlib.AsyncExitStack, emulator_url: str, settings: Any, with_ray: bool
) -> tuple[list[CallPath], list[Figure]]:
    """Open every path that can be opened; the others become "not measured" rows."""
    paths = [
        CallPath("raw SDK", await stack.enter_async_context(raw_sdk(emulator_url))),
        CallPath(
            "LLMService, plain executor",
            await stack.enter_async_context(through_service(_plain(settings), settings)),
        ),
        CallPath(
            IN_PROCESS,
            await stack.enter_async_context(through_service(_engine(settings), settings)),
        ),
    ]
    if not with_ray:
        return paths, [not_measured(SCENARIO, ACTORS, "skipped (--no-ray)", TARGET)]
    try:
        runtime, startup_s = stack.enter_context(ray_runtime(settings))
        send = await stack.enter_async_context(through_service(runtime.executor(), settings))
    except Exception as exc:  # Ray may fail to start on a given machine
        return paths, [not_measured(SCENARIO, ACTORS, "Ray: " + error_text(exc), TARGET)]
    paths.append(CallPath(ACTORS, send, extra={"ray_startup_s": round(startup_s, 2)}))
    return paths, []


async def _warm_up(path: CallPath) -> None:
    try:
        for index in range(WARMUP):
            await path.send(-1 - index)
    except Exception as exc:  # the path does not work at all
        path.error = error_text(exc)


async def _rounds(paths: list[CallPath], plan: OverheadPlan) -> None:
    """Every path once per round, the order rotated each round; a failed path's rate is 0."""
    for round_no in range(plan.rounds):
        print(f"  overhead: round {round_no + 1}/{plan.rounds}...", flush=True)
        shift = round_no % len(paths)
        for path in paths[shift:] + paths[:shift]:
            if path.error is not None:
                continue
            try:
                rate, failed = await asyncio.wait_for(
                    timed_round(path.send, plan.requests), plan.cap_s
                )
            except TimeoutError:
                path.error = f"a round took over {plan.cap_s:.0f} s"
                continue
            path.rates.append(rate)
            path.failed += failed


def _figure(path: CallPath, plan: OverheadPlan) -> Figure:
    if path.error is not None or not path.rates:
        return not_measured(SCENARIO, path.name, path.error or "no round finished")
    raw = {
        "rps": round(statistics.median(path.rates), 1),
        "rounds_rps": [round(rate, 1) for rate in path.rates],
        "requests_per_round": plan.requests,
        "failed": path.failed,
        "concurrency": CONCURRENCY,
        **path.extra,
    }
    return Figure(SCENARIO, path.name, raw=raw)


def paired_ratio(rates: list[float], base_rates: list[float]) -> float | None:
    """The median over rounds of ``rates[i] / base_rates[i]`` (rounds where both ran)."""
    pairs = [rate / base for rate, base in zip(rates, base_rates, strict=False) if base > 0]
    return statistics.median(pairs) if pairs else None


def _ratios(figures: list[Figure]) -> None:
    """Each path's paired ratio to the in-process path; the actor row carries the target."""
    by_name = {f.contender: f for f in figures}
    base = by_name.get(IN_PROCESS)
    base_rates = base.raw.get("rounds_rps") if base and base.status == "ok" else None
    for figure in figures:
        rates = figure.raw.get("rounds_rps")
        if figure.status == "ok" and rates and base_rates:
            ratio = paired_ratio(rates, base_rates)
            figure.ratio = None if ratio is None else round(ratio, 3)
    actors = by_name.get(ACTORS)
    if actors is not None:
        actors.target = TARGET
        if actors.status == "ok" and actors.ratio is None:
            actors.status, actors.reason = "n/a", "no in-process rate to compare with"
        elif actors.status == "ok":
            actors.passed = actors.ratio >= 0.5


async def run(quick: bool, with_ray: bool = True) -> list[Figure]:
    plan = plan_for(quick)
    with ProcessEmulator(UNBOUNDED_ACCOUNT) as emulator:
        settings = bench_settings(emulator.base_url, scratch_dir("ledger-overhead"))
        async with contextlib.AsyncExitStack() as stack:
            paths, missing = await _open_paths(stack, emulator.base_url, settings, with_ray)
            for path in paths:
                await _warm_up(path)
            await _rounds(paths, plan)
    figures = [_figure(path, plan) for path in paths] + missing
    _ratios(figures)
    return figures
