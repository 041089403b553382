"""The policy engine: everything that happens to one call at one provider account.

:class:`ProviderEngine` is a plain class (no Ray); the ProviderActor hosts one, and
:class:`runtime.local.EngineExecutor` runs one per provider in process. Per call, in order:

1. **Idempotency.** A call of a batch job (``ctx.job_id``) is first looked up in the ledger's
   result journal; a journaled answer is returned as is (``provider_details["replayed"]``),
   with no provider call and no second ledger row.
2. **Attempts**, retried by :class:`~llm.retry.RetryPolicy` (server hints honoured). Each
   attempt: an in-flight slot of the account (:mod:`runtime.inflight`: as many as the
   account's rate and the observed latency need) → circuit breaker check → prompt-cache gate
   (only for requests with caching on and a long enough static prefix, see
   :mod:`runtime.cache_keys`) → rate limiter reservation of the estimated tokens → the
   adapter call → settle the reservation with the real usage, report success to the breaker
   and the call's duration to the in-flight controller. A 429 also pauses the limiter
   (``penalize``) for the server's ``retry_after`` and may cut its pace or the in-flight
   window.
3. **Metering.** The answer is priced once (:mod:`runtime.metering`; the price travels on
   the returned ``Executed.price``) and its ledger row is awaited *before* the result is
   returned (durable before ack). Rows of batch calls carry the result, which the ledger
   journals for step 1.

Rate-limit headers. Every account has a limiter, configured or not: the adapter's HTTP
client carries a hook (:mod:`runtime.rate_headers`) that hands each answer's rate-limit
headers to the limiter as they arrive (a stream's at its first byte), so unconfigured limits
are learned from the first answer and ``remaining`` is tracked on every one. An adapter
without an HTTP client (a test's fake) is observed from ``ProviderResult.rate_limit`` at the
end of the call instead. Calls the limiter's slow start admits before any answer told the
limits are sent as streams where headers carry them (Anthropic, OpenAI) and accumulated into
the same result, because a stream's headers come before its first token, a whole answer's
only with its body (``_slow_start_call``).

Cache leaders. The gate's leader for a cold prefix is sent as a stream, even for
:meth:`ProviderEngine.execute`, so that its followers are released at the leader's first
streamed item (the provider has written the cache entry by then) rather than after its whole
answer; followers and warm hits are plain calls. The streamed pieces are accumulated into the
same final :class:`~llm.providers.base.ProviderResult` the adapter's stream ends with.

Failures. A failed attempt refunds its token reservation (settled with zero usage) unless
the response had already started, tells the breaker, and, if it was a leader that had not
started, hands leadership to a waiting follower. A call that fails for good is **not**
written to the ledger: the ledger keeps one row per ``request_id`` (first row wins), so an
error row would shadow the row of a later successful rerun of the same request. Hence the
ledger's rows are exactly the billed calls, all with status ``ok``; failures show up in
:meth:`ProviderEngine.stats` and in the logs.

Streams (:meth:`ProviderEngine.execute_stream`) follow the same policies; an attempt is retried
only while no text chunk has reached the caller.

Use from one event loop (the ProviderActor's); many concurrent calls are expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from llm.config import Settings
from llm.exceptions import (
    InvalidRequestError,
    LLMError,
    ProviderConnectionError,
    RateLimitError,
)
from llm.executor import CallContext, Executed, retried_stream
from llm.providers.base import ProviderAdapter, ProviderRequest, ProviderResult, RateLimitSnapshot
from llm.providers.common import estimate_prompt_tokens
from llm.providers.factory import create_adapter, output_token_limit
from llm.retry import RetryConfig, RetryPolicy
from llm.types import Usage
from runtime.breaker import BreakerState, CircuitBreaker
from runtime.cache_gate import CacheGate, Ticket
from runtime.cache_keys import gate_ttl_s, is_gated, prefix_key
from runtime.inflight import InFlightController
from runtime.ledger_sink import LedgerSink, MemoryLedger
from runtime.limiter import AccountLimits, RateLimiter, Reservation
from runtime.metering import meter
from runtime.rate_headers import attach, header_parser
from runtime.resources import ensure_open_files
from runtime.telemetry import EngineTelemetry

logger = logging.getLogger("llm")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]

__all__ = ["EngineStats", "LedgerSink", "MemoryLedger", "ProviderEngine"]


class EngineStats(BaseModel):
    """A snapshot of one engine: load, health and counters since it was created."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    account: str
    #: Free share of the tightest rate-limit bucket (1.0 without limits, 0.0 while paused).
    headroom: float
    in_flight: int
    breaker_state: BreakerState
    #: Calls the account's budget wants in flight now (:mod:`runtime.inflight`).
    in_flight_target: int = 0
    #: Per-minute limits known now, configured or learned from headers.
    known_limits: dict[str, int] = {}
    #: Calls waiting for the rate limiter right now.
    waiting: int = 0
    requests: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    #: 429 answers seen (one per failed attempt).
    rate_limited: int = 0
    cache_leaders: int = 0
    cache_followers: int = 0
    cache_warm_hits: int = 0
    replayed: int = 0
    #: Calls of the slow start sent as streams so that their headers came early.
    slow_start_streams: int = 0


@dataclass
class _Counters:
    requests: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    rate_limited: int = 0
    cache_leaders: int = 0
    cache_followers: int = 0
    cache_warm_hits: int = 0
    replayed: int = 0
    slow_start_streams: int = 0


class _Attempt:
    """One attempt's gate ticket and limiter reservation, and whether its response began."""

    __slots__ = ("has_started", "reservation", "sent_at", "ticket")

    def __init__(self, ticket: Ticket | None, reservation: Reservation, sent_at: float) -> None:
        self.ticket = ticket
        self.reservation = reservation
        self.sent_at = sent_at
        self.has_started = False

    @property
    def is_leader(self) -> bool:
        return self.ticket is not None and self.ticket.role == "leader"

    def started(self) -> None:
        """The response began: release the followers of this prefix (once)."""
        if not self.has_started:
            self.has_started = True
            if self.ticket is not None:
                self.ticket.started()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ProviderEngine:
    """Breaker, cache gate, limiter, retries, metering and ledger around one adapter.

    See the module docstring. ``clock`` is injected into every policy, ``sleep`` into the
    retry policy and the limiter, ``rand`` into the retry jitter, so tests run on fake time;
    ``now`` (the wall clock) dates each ledger row and picks the price in force;
    ``breaker`` and ``gate`` may be given to tune them.
    The engine owns its adapter (given or created) and closes it in :meth:`aclose`.
    ``limits`` None means none configured: they are learned from the answers.
    """

    def __init__(
        self,
        provider: str,
        settings: Settings,
        *,
        account: str = "default",
        limits: AccountLimits | None = None,
        retry_config: RetryConfig | None = None,
        adapter: ProviderAdapter | None = None,
        ledger: LedgerSink | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        breaker: CircuitBreaker | None = None,
        gate: CacheGate | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.provider = provider
        self.account = account
        self.settings = settings
        self.ledger = ledger
        if limits is None:
            limits = AccountLimits(cache_reads_count=provider != "anthropic")
        self.limiter = RateLimiter(
            limits, clock=clock, sleep=sleep, combined_tokens=provider == "openai"
        )
        self.inflight = InFlightController(
            self.limiter, max_in_flight=settings.max_connections, clock=clock
        )
        ensure_open_files(settings.max_connections, pool=f"{provider}/{account}")
        self.retry_policy = RetryPolicy(retry_config, sleep=sleep, rand=rand)
        self.breaker = breaker or CircuitBreaker(clock=clock, provider=provider, min_calls=20)
        # The gate's follower timeout is a safety net against a lost leader, so it always
        # waits on the event loop: a test's instant fake ``sleep`` would release followers
        # at once.
        self.gate = gate or CacheGate(clock=clock)
        self._adapter = adapter
        self._hooked = adapter is not None and attach(adapter, provider, self._observe)
        # Slow-start calls go out as streams where headers teach the limits (not Gemini).
        self._stream_slow_start = settings.stream_slow_start and header_parser(provider) is not None
        self._clock = clock
        self._now = now
        self._counters = _Counters()
        self.in_flight = 0
        self.telemetry = EngineTelemetry(provider, account, settings)

    @property
    def adapter(self) -> ProviderAdapter:
        """The provider adapter, created on first use."""
        if self._adapter is None:
            self._adapter = create_adapter(self.provider, self.settings)
            self._hooked = attach(self._adapter, self.provider, self._observe)
        return self._adapter

    def _observe(self, snapshot: RateLimitSnapshot) -> None:
        """Rate-limit headers of one answer, as they arrive: teach the limiter."""
        self.limiter.observe(snapshot)
        self.inflight.wake()

    # --- public API ---------------------------------------------------------------------

    async def execute(self, request: ProviderRequest, ctx: CallContext) -> Executed:
        """Run one call through every policy; the ledger row is durable when this returns."""
        replayed = await self._replay(ctx)
        if replayed is not None:
            self.telemetry.replayed(request, ctx)
            return replayed
        start = self._begin()
        self.telemetry.started(request, ctx)
        try:
            result, attempts = await self.retry_policy.run(
                lambda _attempt: self._attempt(request), on_retry=self._on_retry(request, ctx)
            )
            executed = Executed(result=result, attempts=attempts)
            return await self._commit(request, ctx, executed, start, streamed=False)
        except Exception as error:
            self._counters.failures += 1
            self.telemetry.failed(request, ctx, error, self._clock() - start)
            raise
        finally:
            self.in_flight -= 1
            self.telemetry.ended(ctx, self)

    async def execute_stream(
        self, request: ProviderRequest, ctx: CallContext
    ) -> AsyncIterator[str | Executed]:
        """Yield text chunks as they arrive, then one :class:`Executed` (after metering).

        Attempts are retried only until the first chunk has been yielded; a later failure
        propagates. A replayed answer is yielded as one chunk.
        """
        replayed = await self._replay(ctx)
        if replayed is not None:
            self.telemetry.replayed(request, ctx)
            if replayed.result.text:
                yield replayed.result.text
            yield replayed
            return
        start = self._begin()
        self.telemetry.started(request, ctx)
        try:
            executed: Executed | None = None
            async with contextlib.aclosing(self._stream_with_retries(request, ctx)) as items:
                async for item in items:
                    if isinstance(item, Executed):
                        executed = item
                    else:
                        yield item
            if executed is None:  # _stream_with_retries ends with one or raises
                raise self._no_final_result(request)
            yield await self._commit(request, ctx, executed, start, streamed=True)
        except Exception as error:
            self._counters.failures += 1
            self.telemetry.failed(request, ctx, error, self._clock() - start)
            raise
        finally:
            self.in_flight -= 1
            self.telemetry.ended(ctx, self)

    def stats(self) -> EngineStats:
        """Load, breaker state and counters right now (and refresh the metrics' gauges)."""
        limiter = self.limiter
        self.telemetry.engine_state(self)
        return EngineStats(
            provider=self.provider,
            account=self.account,
            headroom=limiter.headroom(),
            in_flight=self.in_flight,
            breaker_state=self.breaker.state,
            in_flight_target=self.inflight.reported(),
            known_limits=limiter.known_limits(),
            waiting=limiter.waiting + self.inflight.waiting,
            **asdict(self._counters),
        )

    async def aclose(self) -> None:
        """Close the adapter's connection pool."""
        adapter, self._adapter = self._adapter, None
        if adapter is not None:
            await adapter.aclose()

    # --- idempotency and metering -------------------------------------------------------

    async def _replay(self, ctx: CallContext) -> Executed | None:
        if not ctx.job_id or self.ledger is None:
            return None
        found = (await self.ledger.lookup([ctx.request_id])).get(ctx.request_id)
        if found is None:
            return None
        self._counters.replayed += 1
        details = {**found.result.provider_details, "replayed": True}
        result = found.result.model_copy(update={"provider_details": details})
        return found.model_copy(update={"result": result})

    def _begin(self) -> float:
        self._counters.requests += 1
        self.in_flight += 1
        return self._clock()

    async def _commit(
        self,
        request: ProviderRequest,
        ctx: CallContext,
        executed: Executed,
        start: float,
        *,
        streamed: bool,
    ) -> Executed:
        """Price the call once and write its ledger row (awaited: durable before the caller
        sees the result); the result returned carries the price (``Executed.price``)."""
        executed, record = meter(
            request,
            ctx,
            executed,
            latency_s=self._clock() - start,
            streamed=streamed,
            ts=self._now(),
        )
        if self.ledger is not None:
            try:
                await self.ledger.record(record, executed if ctx.job_id else None)
            except LLMError:
                raise
            except Exception as error:
                raise LLMError(
                    f"ledger write failed ({type(error).__name__})",
                    provider=self.provider,
                    model=request.model.name,
                    request_id=ctx.request_id,
                ) from error
        self._counters.successes += 1
        self.telemetry.finished(request, ctx, executed, record)
        return executed

    # --- one attempt --------------------------------------------------------------------

    async def _attempt(self, request: ProviderRequest) -> ProviderResult:
        # Build the adapter (SDK client, pool, header hook) before the limiter admits the
        # first call: building it blocks the loop for a moment, and the slow start's clock
        # would run on meanwhile and let its missed steps out at once behind the probe
        # (measured through the Ray actor: 81 admissions in the first second, 2 x 429).
        adapter = self.adapter
        await self.inflight.acquire()
        try:
            attempt = await self._open(request)
            try:
                if attempt.is_leader:
                    result = await self._drain_stream(request, attempt)
                elif attempt.reservation.blind and self._streams_teach():
                    result = await self._slow_start_call(request, attempt)
                else:
                    result = await adapter.generate(request)
            except BaseException as error:
                self._close_failed(attempt, error)
                raise
            self._close_ok(attempt, result)
            return result
        finally:
            self.inflight.release()

    def _streams_teach(self) -> bool:
        """Whether a stream's headers (at its first byte) carry this account's limits."""
        return self._stream_slow_start and self._hooked

    async def _slow_start_call(self, request: ProviderRequest, attempt: _Attempt) -> ProviderResult:
        """A call admitted before the limits are known, sent as a stream and accumulated.

        A whole answer's headers come with its body, seconds after the request; a stream's
        come before its first token (the replay corpus: OpenAI's streams a median 357 ms
        to their headers against 1,432 ms for whole answers), so the limits are learned that
        much sooner and the slow start ends early. The result is the one the plain call
        would give. An account that refuses the stream (OpenAI answers 400 to streams of
        some models until the organisation is verified) gets the plain call, now and from
        then on.
        """
        self._counters.slow_start_streams += 1
        try:
            return await self._drain_stream(request, attempt)
        except InvalidRequestError:
            if attempt.has_started:
                raise
            result = await self.adapter.generate(request)
            self._stream_slow_start = False
            return result

    async def _open(self, request: ProviderRequest) -> _Attempt:
        """Breaker check, then the cache gate, then the limiter reservation."""
        self.breaker.check()
        ticket = await self._enter_gate(request)
        try:
            reservation = await self._reserve(request)
        except BaseException:
            if ticket is not None:
                ticket.failed()
            raise
        return _Attempt(ticket, reservation, self._clock())

    async def _enter_gate(self, request: ProviderRequest) -> Ticket | None:
        if not is_gated(request):
            return None
        ticket = await self.gate.enter(prefix_key(request), gate_ttl_s(request))
        self.telemetry.cache_role(request, None, ticket.role)
        counters = self._counters
        if ticket.role == "leader":
            counters.cache_leaders += 1
        elif ticket.role == "follower":
            counters.cache_followers += 1
        else:
            counters.cache_warm_hits += 1
        return ticket

    async def _reserve(self, request: ProviderRequest) -> Reservation:
        began = self._clock()
        # Output tokens count from the limit the adapter sends (thinking and reasoning
        # allowances included): Anthropic's OTPM counts exactly that at admission.
        reservation = await self.limiter.reserve(
            estimate_prompt_tokens(request), output_token_limit(request)
        )
        self.telemetry.limiter_waited(self._clock() - began)
        return reservation

    async def _drain_stream(self, request: ProviderRequest, attempt: _Attempt) -> ProviderResult:
        """Run ``request`` as a stream and return its final result; the attempt (a cache
        leader's ticket) starts at its first item."""
        async with contextlib.aclosing(self.adapter.stream(request)) as stream:
            async for item in stream:
                attempt.started()
                if isinstance(item, ProviderResult):
                    return item
        raise self._no_final_result(request)

    def _close_ok(self, attempt: _Attempt, result: ProviderResult) -> None:
        attempt.started()  # a follower or warm hit refreshes the prefix's warmth
        self.limiter.settle(attempt.reservation, result.usage)
        if result.rate_limit is not None and not self._hooked:
            self.limiter.observe(result.rate_limit)
        self.inflight.finished(attempt.sent_at, ok=True)
        self.breaker.record_success()

    def _close_failed(self, attempt: _Attempt, error: BaseException) -> None:
        if not attempt.has_started:
            if attempt.ticket is not None:
                attempt.ticket.failed()
            self.limiter.settle(attempt.reservation, Usage())  # refund the tokens
        self.breaker.record_failure(error)
        limited = isinstance(error, RateLimitError)
        self.inflight.finished(attempt.sent_at, ok=False, rate_limited=limited)
        if isinstance(error, RateLimitError):
            self._counters.rate_limited += 1
            self.limiter.penalize(
                error.retry_after_s or self.retry_policy.backoff(1),
                admitted_at=attempt.reservation.admitted_at,
            )

    def _no_final_result(self, request: ProviderRequest) -> ProviderConnectionError:
        return ProviderConnectionError(
            "stream ended without a final result",
            provider=self.provider,
            model=request.model.name,
        )

    # --- streaming ----------------------------------------------------------------------

    def _stream_with_retries(
        self, request: ProviderRequest, ctx: CallContext
    ) -> AsyncIterator[str | Executed]:
        """Text chunks then one Executed; retried while nothing has been yielded (the loop
        shared with the plain executor, :func:`llm.executor.retried_stream`)."""
        return retried_stream(
            self.retry_policy,
            lambda: self._stream_once(request),
            request,
            on_retry=self._on_retry(request, ctx),
        )

    async def _stream_once(self, request: ProviderRequest) -> AsyncIterator[str | ProviderResult]:
        """One streamed attempt under every per-attempt policy; ends with the ProviderResult."""
        adapter = self.adapter  # before the first admission, as in _attempt
        await self.inflight.acquire()
        try:
            attempt = await self._open(request)
            result: ProviderResult | None = None
            try:
                async with contextlib.aclosing(adapter.stream(request)) as stream:
                    async for item in stream:
                        attempt.started()
                        if isinstance(item, ProviderResult):
                            result = item
                            break
                        if item:
                            yield item
                if result is None:
                    raise self._no_final_result(request)
            except BaseException as error:
                self._close_failed(attempt, error)
                raise
            self._close_ok(attempt, result)
        finally:
            self.inflight.release()
        yield result

    # --- logging ------------------------------------------------------------------------

    def _on_retry(
        self, request: ProviderRequest, ctx: CallContext
    ) -> Callable[[int, BaseException, float], None]:
        def log_retry(attempt: int, error: BaseException, delay: float) -> None:
            self._counters.retries += 1
            self.telemetry.retried(request, ctx, attempt, error, delay)
            logger.warning(
                "llm retry model=%s provider=%s account=%s attempt=%d error=%s delay_s=%.2f "
                "request_id=%s",
                request.model.name,
                self.provider,
                self.account,
                attempt,
                type(error).__name__,
                delay,
                ctx.request_id,
            )

        return log_retry
