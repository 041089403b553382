"""The in-process runtime: an :class:`~llm.executor.Executor` over one ProviderEngine per provider.

:class:`EngineExecutor` gives a single process the same policies as the Ray runtime (circuit
breaker, prompt-cache gate, rate limiter, retries, metering) without Ray: each provider gets
one :class:`~runtime.engine.ProviderEngine`, created on first use, so a call returns the same
:class:`~llm.executor.Executed` (priced: ``Executed.price``) either way. It writes no ledger
unless given a ``ledger`` sink: :class:`~llm.service.LLMService` passes none (local runs are
tracked by its :class:`~llm.cost.CostTracker`); tests and embedders may pass one (e.g.
:class:`~runtime.ledger_sink.MemoryLedger`), which then also answers reruns of a batch job's
calls from its journal.

Limits. ``limits`` maps provider → :class:`~runtime.limiter.AccountLimits` (a provider left
out runs without client-side limits). Without it, limits come from
:func:`runtime.limits_config.load_limits`, using the first account of each provider; if that
account names its key in ``api_key_env``, the key is read from that variable (when set), so
the limits and the key belong to the same account.

Use from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from llm.config import Settings
from llm.executor import CallContext, Executed
from llm.providers.base import ProviderAdapter, ProviderRequest
from llm.providers.factory import create_adapter
from llm.retry import RetryConfig
from runtime.engine import EngineStats, ProviderEngine
from runtime.ledger_sink import LedgerSink
from runtime.limiter import AccountLimits
from runtime.limits_config import AccountSpec, load_limits

AdapterFactory = Callable[..., ProviderAdapter]


class EngineExecutor:
    """Runs calls in this process through one :class:`ProviderEngine` per provider."""

    def __init__(
        self,
        settings: Settings,
        retry_config: RetryConfig | None = None,
        *,
        limits: dict[str, AccountLimits] | None = None,
        ledger: LedgerSink | None = None,
        adapter_factory: AdapterFactory = create_adapter,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.retry_config = retry_config
        self.ledger = ledger
        self._limits = limits
        self._accounts: dict[str, AccountSpec] | None = None
        self._adapter_factory = adapter_factory
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._now = now
        self._engines: dict[str, ProviderEngine] = {}

    def engine(self, provider: str) -> ProviderEngine:
        """The engine of ``provider``, created on first use."""
        engine = self._engines.get(provider)
        if engine is None:
            engine = self._make_engine(provider)
            self._engines[provider] = engine
        return engine

    async def execute(self, request: ProviderRequest, ctx: CallContext) -> Executed:
        """Run ``request`` through its provider's engine."""
        return await self.engine(request.model.provider).execute(request, ctx)

    async def execute_stream(
        self, request: ProviderRequest, ctx: CallContext
    ) -> AsyncIterator[str | Executed]:
        """Stream ``request`` through its provider's engine: text chunks, then one Executed."""
        stream = self.engine(request.model.provider).execute_stream(request, ctx)
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                yield item

    def capacity(self) -> int | None:
        """Calls worth having in flight over every engine (None until one has learned).

        The sum of the engines' in-flight targets (:mod:`runtime.inflight`); a batch job
        sizes its look-ahead from it.
        """
        total = sum(engine.inflight.reported() for engine in self._engines.values())
        return total or None

    def stats(self) -> dict[str, EngineStats]:
        """Stats of every engine created so far, by provider."""
        return {provider: engine.stats() for provider, engine in self._engines.items()}

    async def aclose(self) -> None:
        """Close every engine (and so its adapter's connection pool)."""
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.aclose()

    def _make_engine(self, provider: str) -> ProviderEngine:
        settings, account, limits = self._account_setup(provider)
        return ProviderEngine(
            provider,
            settings,
            account=account,
            limits=limits,
            retry_config=self.retry_config,
            adapter=self._adapter_factory(provider, settings),
            ledger=self.ledger,
            clock=self._clock,
            sleep=self._sleep,
            rand=self._rand,
            **({"now": self._now} if self._now is not None else {}),
        )

    def _account_setup(self, provider: str) -> tuple[Settings, str, AccountLimits | None]:
        """(settings with the account's key, account name, limits) for ``provider``."""
        if self._limits is not None:
            return self.settings, "default", self._limits.get(provider)
        if self._accounts is None:
            loaded = load_limits(self.settings)
            self._accounts = {name: specs[0] for name, specs in loaded.items() if specs}
        spec = self._accounts.get(provider)
        if spec is None:
            return self.settings, "default", None
        return _with_account_key(self.settings, spec), spec.name, spec.limits


def _with_account_key(settings: Settings, spec: AccountSpec) -> Settings:
    """``settings`` carrying ``spec``'s key when the account names its own key variable."""
    if spec.api_key_env is None:
        return settings
    key = spec.api_key(settings)
    if key is None:
        return settings
    return settings.with_overrides(**{f"{spec.provider}_api_key": key})
