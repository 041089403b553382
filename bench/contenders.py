"""The clients compared in the rate-limit scenario, each behind one function signature.

``async contender(calls, ctx, progress)`` sends every call of the workload and reports each
one's end to ``progress`` (``done(True)`` for an answer, ``done(False)`` for a request given
up). All of them talk to the same emulator with the same limits:

* :func:`run_runtime`: this project, ``LLMService`` over the in-process runtime
  (:class:`runtime.local.EngineExecutor`, the same ``ProviderEngine`` the provider actors
  host) told the account's limits;
* :func:`run_gather`: ``asyncio.gather`` behind a semaphore with the raw OpenAI SDK and its
  default retries (2, honouring ``retry-after``): what a user writes without a limiter;
* :func:`run_cookbook`: :class:`bench.cookbook.CookbookProcessor`, limits set to the
  provider's rpm/tpm as a user would;
* :func:`run_litellm`: LiteLLM's ``Router`` with ``rpm``/``tpm`` on the deployment,
  usage-based routing v2 and pre-call checks on (what its docs advise for rate limits).
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import Progress
from bench.cookbook import CookbookProcessor
from bench.workload import Call
from llm.config import Settings
from llm.exceptions import LLMError
from llm.retry import RetryConfig


@dataclass
class RateContext:
    """What every contender is told: where the emulator is and the account's limits."""

    base_url: str
    api_key: str
    settings: Settings
    model: str
    rpm: int
    tpm: int
    concurrency: int
    cookbook_pause_s: float = 15.0
    notes: dict[str, Any] = field(default_factory=dict)


Contender = Callable[[list[Call], RateContext, Progress], Awaitable[None]]


async def _fan_out(
    calls: list[Call],
    concurrency: int,
    send: Callable[[Call], Awaitable[Any]],
    progress: Progress,
    failure_types: tuple[type[BaseException], ...],
) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(call: Call) -> None:
        async with semaphore:
            try:
                await send(call)
            except failure_types:
                progress.done(False)
                return
            progress.done(True, call.input_tokens)

    await asyncio.gather(*(one(call) for call in calls))


async def run_runtime(calls: list[Call], ctx: RateContext, progress: Progress) -> None:
    """This project: LLMService over EngineExecutor with the account's limits."""
    from llm.service import LLMService
    from runtime.limiter import AccountLimits
    from runtime.local import EngineExecutor

    limits = {"openai": AccountLimits(rpm=ctx.rpm, itpm=ctx.tpm)}
    executor = EngineExecutor(ctx.settings, RetryConfig(), limits=limits)
    service = LLMService(settings=ctx.settings, executor=executor, enable_cost_tracking=False)

    async def send(call: Call) -> None:
        await service.generate(
            model=ctx.model, messages=call.messages(), max_tokens=call.max_tokens
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await _fan_out(calls, ctx.concurrency, send, progress, (LLMError,))
    finally:
        await service.aclose()


async def run_gather(calls: list[Call], ctx: RateContext, progress: Progress) -> None:
    """asyncio.gather + semaphore with the raw OpenAI SDK (default retries)."""
    import openai

    client = openai.AsyncOpenAI(base_url=ctx.base_url + "/v1", api_key=ctx.api_key)

    async def send(call: Call) -> None:
        await client.chat.completions.create(
            model=ctx.model, messages=call.messages(), max_tokens=call.max_tokens
        )

    try:
        await _fan_out(calls, ctx.concurrency, send, progress, (openai.APIError,))
    finally:
        await client.close()


async def run_cookbook(calls: list[Call], ctx: RateContext, progress: Progress) -> None:
    """The cookbook parallel processor, limits at the provider's rpm/tpm."""
    processor = CookbookProcessor(
        ctx.base_url + "/v1/chat/completions",
        ctx.api_key,
        ctx.model,
        max_requests_per_minute=ctx.rpm,
        max_tokens_per_minute=ctx.tpm,
        pause_s=ctx.cookbook_pause_s,
        on_done=progress.done,
    )
    try:
        await processor.run(calls)
    finally:
        ctx.notes["cookbook"] = {
            "rate_limit_errors_seen": processor.stats.rate_limit_errors,
            "pauses": processor.stats.pauses,
            "pause_s": ctx.cookbook_pause_s,
        }


def import_litellm() -> Any:
    """Import LiteLLM offline (local price map, no telemetry); raises ImportError if absent."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


async def run_litellm(calls: list[Call], ctx: RateContext, progress: Progress) -> None:
    """LiteLLM Router with rpm/tpm set on the one deployment."""
    litellm = import_litellm()
    deployment = {
        "model_name": ctx.model,
        "litellm_params": {
            "model": f"openai/{ctx.model}",
            "api_base": ctx.base_url + "/v1",
            "api_key": ctx.api_key,
            "rpm": ctx.rpm,
            "tpm": ctx.tpm,
        },
    }
    router = litellm.Router(
        model_list=[deployment],
        routing_strategy="usage-based-routing-v2",
        enable_pre_call_checks=True,
        num_retries=3,
    )

    async def send(call: Call) -> None:
        await router.acompletion(
            model=ctx.model, messages=call.messages(), max_tokens=call.max_tokens
        )

    await _fan_out(calls, ctx.concurrency, send, progress, (Exception,))


CONTENDERS: dict[str, Contender] = {
    "runtime": run_runtime,
    "gather+semaphore": run_gather,
    "cookbook": run_cookbook,
    "litellm-router": run_litellm,
}
