"""Metering one answered call: its price and its ledger row.

:func:`meter` prices a finished call once, with :func:`llm.pricing.price_call` at the rates in
force at the row's ``ts`` (tier, dated price, cache savings and Gemini explicit-cache
storage from ``ProviderResult.cache_storage_token_hours``), and returns the result carrying
that :class:`~llm.pricing.CallPrice` (``Executed.price``) together with its
:class:`~runtime.ledger_store.LedgerRecord`. The response, the cost tracker and the batch
output read the price from the result; nobody prices the call again. Only answered calls are
metered; failed calls are not billed (see :mod:`runtime.engine` for why no error rows are
written).

Calls outside a batch job have no ``job_id``; their rows carry :data:`NO_JOB` ("").
"""

from __future__ import annotations

from datetime import UTC, datetime

from llm.executor import CallContext, Executed, price_executed
from llm.pricing import CallPrice, ServiceTier, usage_columns
from llm.providers.base import ProviderRequest
from runtime.ledger_record import LedgerRecord

NO_JOB = ""


def price(
    request: ProviderRequest,
    executed: Executed,
    at: datetime | None = None,
    *,
    service_tier: ServiceTier = "standard",
) -> CallPrice:
    """The price of an answered call made at ``at`` (the rates in force then), online or
    through a provider batch API (``service_tier``)."""
    return price_executed(request.model, executed, at=at, service_tier=service_tier)


def meter(
    request: ProviderRequest,
    ctx: CallContext,
    executed: Executed,
    *,
    latency_s: float,
    streamed: bool,
    ts: datetime | None = None,
    service_tier: ServiceTier = "standard",
) -> tuple[Executed, LedgerRecord]:
    """The call priced at the rates in force at ``ts`` for its ``service_tier`` (``batch``:
    answered through a provider batch API), and its ledger row."""
    when = ts or datetime.now(UTC)
    call_price = price(request, executed, when, service_tier=service_tier)
    priced = executed.model_copy(update={"price": call_price})
    return priced, ledger_record(
        request, ctx, priced, ts=when, latency_s=latency_s, streamed=streamed
    )


def ledger_record(
    request: ProviderRequest,
    ctx: CallContext,
    executed: Executed,
    *,
    ts: datetime,
    latency_s: float,
    streamed: bool,
) -> LedgerRecord:
    """The ledger row of a priced call (``executed.price`` set by :func:`meter`)."""
    usage, call_price = executed.result.usage, executed.price or CallPrice()
    return LedgerRecord(
        request_id=ctx.request_id,
        job_id=ctx.job_id or NO_JOB,
        row_id=ctx.row_id,
        ts=ts,
        provider=request.model.provider,
        model=request.model.name,
        api_model=executed.result.model_version,
        status="ok",
        latency_s=max(latency_s, 0.0),
        attempts=executed.attempts,
        streamed=streamed,
        **usage_columns(usage),
        **call_price.columns(),
    )
