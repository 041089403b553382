"""The seam between :class:`~llm.service.LLMService` and where provider calls run.

The service validates a call and builds a :class:`~llm.providers.base.ProviderRequest`; an
:class:`Executor` sends it and returns the provider's result with the number of attempts it
took. :class:`LocalExecutor` runs calls in this process (one adapter per provider, the
retry policy around each call); the Ray executor (``runtime="ray"``) implements the same
:class:`Executor` protocol by sending requests to provider actors.

Streams are retried only until the first text chunk has reached the caller: after that a
failure is raised, because the caller has already seen part of an answer.
:func:`retried_stream` is that loop, the one both :class:`LocalExecutor` and the runtime's
engine (:meth:`runtime.engine.ProviderEngine.execute_stream`, each attempt under its
per-attempt policies) stream through.

The one seam upward. Imports point one way, ``actors`` -> ``runtime`` -> ``llm``, with a
single exception: :func:`default_executor`, the executor ``LLMService`` runs on when it is
given none, imports :class:`runtime.local.EngineExecutor` (``runtime="local"``) or
:func:`actors.runtime.ray_executor` (``runtime="ray"``) inside the function, on first use.
Why there and so: the runtime and the actors import ``llm``, so a module-level import would be
a cycle; a registry the runtime fills in would need someone to import the runtime first, and
an entry point would read installed package metadata rather than the code in the tree. One
function-local import in one named function is the smallest seam, and
``tests/test_layering.py`` allows exactly it and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from llm.config import Settings
from llm.exceptions import ConfigurationError, ProviderConnectionError
from llm.models import ModelInfo
from llm.pricing import CallPrice, ServiceTier, price_call
from llm.providers.base import ProviderAdapter, ProviderRequest, ProviderResult
from llm.retry import RetryConfig, RetryPolicy

logger = logging.getLogger("llm")

AdapterFactory = Callable[..., ProviderAdapter]
Sleep = Callable[[float], Awaitable[Any]]


class Executed(BaseModel):
    """A finished call: the provider's normalised result, how many attempts it took and,
    when the executor meters calls (the runtime engine does), its :class:`CallPrice`.

    The price is computed once, where the call is metered, and travels with the result to
    the response, the cost tracker, the batch output and the ledger. An executor that does
    not meter leaves it ``None`` and the service prices the result with the same
    :func:`llm.pricing.price_call`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    result: ProviderResult
    attempts: int = 1
    price: CallPrice | None = None


class CallContext(BaseModel):
    """Who a call belongs to and what the runtime may do with it.

    Everything the runtime acts on is a typed field: ``request_id`` (the ledger's and the
    journal's key), ``job_id``/``row_id`` (the batch job and row: a job's calls are
    journaled and replayed instead of being paid twice) and ``routed_by_task`` (the model
    was picked by task/budget rather than named, so the runtime may fall back to an
    equivalent model of another provider). ``metadata`` is the caller's own, carried along
    (and the trace context, :mod:`runtime.tracing`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    job_id: str | None = None
    row_id: str | None = None
    routed_by_task: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


def price_executed(
    model: ModelInfo,
    executed: Executed,
    *,
    at: dt.datetime | None = None,
    service_tier: ServiceTier = "standard",
) -> CallPrice:
    """The price of a finished call (:func:`llm.pricing.price_call` on its usage and Gemini
    storage) made at ``at``, online or through a provider batch API (``service_tier``)."""
    return price_call(
        model,
        executed.result.usage,
        at=at,
        cache_storage_token_hours=executed.result.cache_storage_token_hours,
        service_tier=service_tier,
    )


@runtime_checkable
class Executor(Protocol):
    """Where calls run. Implementations own their connection pools and retry loop."""

    async def execute(self, request: ProviderRequest, ctx: CallContext) -> Executed:
        """Send one non-streaming request (with retries) and return its result."""
        ...

    def execute_stream(
        self, request: ProviderRequest, ctx: CallContext
    ) -> AsyncIterator[str | Executed]:
        """Stream one request: yields text chunks, then exactly one :class:`Executed`."""
        ...

    async def aclose(self) -> None:
        """Release connection pools and other resources."""
        ...


def default_executor(
    runtime: str,
    settings: Settings,
    retry_config: RetryConfig | None = None,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], dt.datetime] | None = None,
) -> Executor:
    """The executor of ``runtime``: ``"local"``, the in-process runtime engine (the same
    policies as Ray: breaker, cache gate, limiter, retries, metering) on the injected
    ``sleep``/``clock``/``now``; ``"ray"``, the provider actors. The module docstring says why
    this is the one place ``llm`` imports upward."""
    if runtime == "ray":
        try:
            from actors.runtime import ray_executor
        except ImportError:
            raise ConfigurationError(
                "runtime='ray' needs actors.runtime (Ray), which is not available"
            ) from None
        return ray_executor(settings, retry_config)
    from runtime.local import EngineExecutor

    return EngineExecutor(settings, retry_config, sleep=sleep, clock=clock, now=now)


def _default_adapter_factory() -> AdapterFactory:
    # Imported on first use so that importing the service does not load the SDKs.
    from llm.providers.factory import create_adapter

    return create_adapter


class LocalExecutor:
    """Runs calls in this process: one adapter per provider, created lazily and reused.

    ``sleep`` is the retry policy's sleep (tests inject a fake); ``adapter_factory`` defaults
    to :func:`llm.providers.factory.create_adapter`. Use from one event loop.
    """

    def __init__(
        self,
        settings: Settings,
        retry_config: RetryConfig | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        adapter_factory: AdapterFactory | None = None,
    ) -> None:
        self.settings = settings
        self.retry_policy = RetryPolicy(retry_config or RetryConfig(), sleep=sleep)
        self._adapter_factory = adapter_factory
        self._adapters: dict[str, ProviderAdapter] = {}

    def adapter(self, provider: str) -> ProviderAdapter:
        """The adapter for ``provider``, created on first use."""
        adapter = self._adapters.get(provider)
        if adapter is None:
            factory = self._adapter_factory or _default_adapter_factory()
            adapter = factory(provider, self.settings)
            self._adapters[provider] = adapter
        return adapter

    async def execute(self, request: ProviderRequest, ctx: CallContext) -> Executed:
        """Send ``request`` through the retry policy."""
        adapter = self.adapter(request.model.provider)

        async def attempt(_: int) -> ProviderResult:
            return await adapter.generate(request)

        result, attempts = await self.retry_policy.run(
            attempt, on_retry=_retry_logger(request, ctx)
        )
        return Executed(result=result, attempts=attempts)

    async def execute_stream(
        self, request: ProviderRequest, ctx: CallContext
    ) -> AsyncIterator[str | Executed]:
        """Stream ``request``; failures before the first text chunk are retried."""
        adapter = self.adapter(request.model.provider)
        stream = retried_stream(
            self.retry_policy,
            lambda: adapter.stream(request),
            request,
            on_retry=_retry_logger(request, ctx),
        )
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                yield item

    async def aclose(self) -> None:
        """Close every adapter's connection pool."""
        adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            await adapter.aclose()


async def retried_stream(
    policy: RetryPolicy,
    stream_once: Callable[[], AsyncIterator[str | ProviderResult]],
    request: ProviderRequest,
    *,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> AsyncIterator[str | Executed]:
    """The text chunks of one streamed call, then one :class:`Executed` (its attempts
    counted). Each attempt is ``stream_once()``: non-empty text chunks, ending with the
    :class:`~llm.providers.base.ProviderResult`; one that ends without it fails with
    :class:`~llm.exceptions.ProviderConnectionError`. ``policy`` retries an attempt only
    while nothing has been yielded (:meth:`~llm.retry.RetryPolicy.run_stream`)."""

    async def attempt(number: int) -> AsyncIterator[str | Executed]:
        async with contextlib.aclosing(stream_once()) as stream:
            async for item in stream:
                if isinstance(item, ProviderResult):
                    yield Executed(result=item, attempts=number)
                    return
                if item:
                    yield item
        raise ProviderConnectionError(
            "stream ended without a final result",
            provider=request.model.provider,
            model=request.model.name,
        )

    async with contextlib.aclosing(policy.run_stream(attempt, on_retry=on_retry)) as items:
        async for item in items:
            yield item


def _retry_logger(
    request: ProviderRequest, ctx: CallContext
) -> Callable[[int, BaseException, float], None]:
    def log_retry(attempt: int, error: BaseException, delay: float) -> None:
        logger.warning(
            "llm retry model=%s provider=%s attempt=%d error=%s delay_s=%.2f request_id=%s",
            request.model.name,
            request.model.provider,
            attempt,
            type(error).__name__,
            delay,
            ctx.request_id,
        )

    return log_retry
