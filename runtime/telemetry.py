"""What the engine reports about each call: Prometheus metrics and an OpenTelemetry span.

:class:`EngineTelemetry` is the one object a :class:`~runtime.engine.ProviderEngine` calls at
the points of a call's life: ``started`` → (``cache_role``, ``limiter_waited``, ``retried``
per attempt) → ``finished`` (with the priced ledger row) or ``failed`` → ``ended`` (always,
also when the call was cancelled or its stream abandoned). It feeds :mod:`runtime.metrics`
(the process's backend: Ray's inside an actor, the in-process registry otherwise) and
:mod:`runtime.tracing` (spans, only when an OpenTelemetry SDK is configured).

A replayed batch call (answered from the ledger's journal) only counts as ``replayed``.
Spans are keyed by request id between ``started`` and ``ended``, so the retry hook, which
knows only the request and context, can add its event to the right span.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from llm.config import Settings
from llm.executor import CallContext, Executed
from llm.providers.base import ProviderRequest
from runtime.ledger_record import LedgerRecord
from runtime.metrics import Metrics, get_metrics
from runtime.tracing import CallSpan, server_of, start_call_span

logger = logging.getLogger("llm")

F = TypeVar("F", bound=Callable[..., None])


def _never_raises(method: F) -> F:
    """A telemetry hook that fails is logged (at debug) and skipped: it never breaks a call."""

    @functools.wraps(method)
    def hook(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as error:
            logger.debug("llm telemetry %s failed (%s)", method.__name__, type(error).__name__)

    return hook  # type: ignore[return-value]  # same signature


#: Seconds between refreshes of the bucket, headroom and breaker gauges at call ends.
GAUGE_INTERVAL_S = 1.0


class EngineTelemetry:
    """Metrics and spans of one engine (one provider account); see the module docstring."""

    def __init__(
        self,
        provider: str,
        account: str,
        settings: Settings | None = None,
        *,
        metrics: Metrics | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.provider = provider
        #: An OpenTelemetry ``TracerProvider``; None uses the global one.
        self.tracer_provider = tracer_provider
        self.account = account
        self.settings = settings
        self._metrics = metrics
        self._spans: dict[str, CallSpan] = {}
        base_url = settings.base_url(provider) if settings is not None else None
        self._server = server_of(provider, base_url)
        self._gauges_at = float("-inf")

    @property
    def metrics(self) -> Metrics:
        """The metrics this engine records into (the process's unless one was given)."""
        return self._metrics if self._metrics is not None else get_metrics()

    def _log_prompts(self) -> bool:
        return bool(self.settings is not None and self.settings.log_prompts)

    def _log_responses(self) -> bool:
        return bool(self.settings is not None and self.settings.log_responses)

    # --- a call's life ------------------------------------------------------------------

    @_never_raises
    def started(self, request: ProviderRequest, ctx: CallContext) -> None:
        """A call began (after the replay check)."""
        self._spans[ctx.request_id] = start_call_span(
            self.provider,
            self.account,
            request,
            ctx,
            log_prompts=self._log_prompts(),
            tracer_provider=self.tracer_provider,
            server=self._server,
        )

    @_never_raises
    def cache_role(self, request: ProviderRequest, ctx: CallContext | None, role: str) -> None:
        """The attempt entered the prompt-cache gate as leader, follower or warm."""
        self.metrics.cache_role(self.provider, self.account, request.model.name, role)
        span = self._spans.get(ctx.request_id) if ctx is not None else None
        if span is not None:
            span.set("llm.cache.role", role)

    @_never_raises
    def limiter_waited(self, seconds: float) -> None:
        """An attempt's rate-limiter reservation took ``seconds``."""
        self.metrics.limiter_waited(self.provider, self.account, seconds)

    @_never_raises
    def retried(
        self,
        request: ProviderRequest,
        ctx: CallContext,
        attempt: int,
        error: BaseException,
        delay_s: float,
    ) -> None:
        """Attempt ``attempt`` failed with ``error``; the next starts in ``delay_s``."""
        self.metrics.retried(
            self.provider, self.account, request.model.name, error_type=type(error).__name__
        )
        span = self._spans.get(ctx.request_id)
        if span is not None:
            span.retry(attempt, error, delay_s)

    @_never_raises
    def finished(
        self,
        request: ProviderRequest,
        ctx: CallContext,
        executed: Executed,
        record: LedgerRecord,
    ) -> None:
        """The call was answered and metered (``record`` is its ledger row)."""
        self.metrics.call_finished(
            self.provider,
            self.account,
            request.model.name,
            usage=executed.result.usage,
            cost_usd=float(record.total_cost),
            savings_usd=float(record.cache_savings),
            latency_s=record.latency_s,
        )
        span = self._spans.pop(ctx.request_id, None)
        if span is not None:
            span.finish(
                executed,
                cost_usd=record.total_cost,
                savings_usd=record.cache_savings,
                streamed=record.streamed,
                log_responses=self._log_responses(),
            )

    @_never_raises
    def failed(
        self, request: ProviderRequest, ctx: CallContext, error: BaseException, latency_s: float
    ) -> None:
        """The call failed for good with ``error``."""
        self.metrics.call_failed(
            self.provider,
            self.account,
            request.model.name,
            error_type=type(error).__name__,
            latency_s=latency_s,
        )
        span = self._spans.pop(ctx.request_id, None)
        if span is not None:
            span.fail(error)

    @_never_raises
    def ended(self, ctx: CallContext, engine: Any = None) -> None:
        """Always last: end a span left open (cancelled call) and refresh the gauges."""
        span = self._spans.pop(ctx.request_id, None)
        if span is not None:  # neither finished nor failed: cancelled or abandoned
            span.fail(_Cancelled())
            self.metrics.call_cancelled(self.provider, self.account, span.model)
        if engine is not None:
            self.engine_state(engine, force=False)

    @_never_raises
    def replayed(self, request: ProviderRequest, ctx: CallContext) -> None:
        """A batch call answered from the ledger's journal (nothing sent, nothing billed)."""
        self.metrics.call_replayed(self.provider, self.account, request.model.name)

    # --- gauges -------------------------------------------------------------------------

    @_never_raises
    def engine_state(self, engine: Any, *, force: bool = True) -> None:
        """Refresh the engine's gauges: in flight, limiter, buckets, breaker.

        Without ``force`` the buckets, headroom and breaker are refreshed at most every
        :data:`GAUGE_INTERVAL_S` (a scrape every few seconds needs no more); calls in flight
        always.
        """
        limiter = engine.limiter
        now = time.monotonic()
        if not force and now - self._gauges_at < GAUGE_INTERVAL_S:
            self.metrics.in_flight(
                self.provider,
                self.account,
                in_flight=engine.in_flight,
                waiting=limiter.waiting if limiter is not None else 0,
            )
            return
        self._gauges_at = now
        self.metrics.engine_state(
            self.provider,
            self.account,
            in_flight=engine.in_flight,
            waiting=limiter.waiting if limiter is not None else 0,
            headroom=limiter.headroom() if limiter is not None else 1.0,
            breaker_state=engine.breaker.state,
            levels=limiter.levels() if limiter is not None else None,
            capacities=limiter.known_limits() if limiter is not None else None,
        )


class _Cancelled(Exception):
    """Stands for a call cancelled (or a stream abandoned) before it finished."""


_Cancelled.__name__ = "Cancelled"
