"""Pricing one answered call into a ledger row.

:func:`meter` turns a finished call (request, context, result) into a
:class:`~runtime.ledger_store.LedgerRecord`: token counts from the result's usage, cost from
:func:`llm.pricing.compute_cost` at the rates in force at the row's ``ts`` (plus Gemini
explicit-cache storage when the adapter reports ``provider_details["cache_storage_token_hours"]``),
the date of those rates (``price_effective_from``), the service tier (``tier``) and savings from
:func:`llm.pricing.cache_savings`. Only answered calls are metered; failed calls are not
billed (see :mod:`runtime.engine` for why no error rows are written).

Calls outside a batch job have no ``job_id``; their rows carry :data:`NO_JOB` ("").
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from llm.executor import CallContext, Executed
from llm.pricing import ServiceTier, cache_savings, compute_cost, price_effective_from
from llm.providers.base import ProviderRequest
from llm.types import Cost
from runtime.ledger_store import LedgerRecord

logger = logging.getLogger("llm")

NO_JOB = ""


def storage_token_hours(executed: Executed) -> Decimal:
    """Gemini explicit-cache storage the adapter reported for this call (0 if none)."""
    raw = executed.result.provider_details.get("cache_storage_token_hours", 0) or 0
    try:
        hours = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        return Decimal(0)
    return hours if hours.is_finite() and hours > 0 else Decimal(0)


def price(
    request: ProviderRequest,
    executed: Executed,
    at: datetime | None = None,
    *,
    service_tier: ServiceTier = "standard",
) -> tuple[Cost, Decimal]:
    """(cost, cache savings) of an answered call made at ``at`` (the rates in force then),
    online or through a provider batch API (``service_tier``).

    Usage the pricing rules reject (an adapter bug) is logged and priced at zero rather than
    losing an answer that was already paid for; its token counts still reach the ledger.
    """
    usage = executed.result.usage
    try:
        cost = compute_cost(
            request.model,
            usage,
            at=at,
            cache_storage_token_hours=storage_token_hours(executed),
            service_tier=service_tier,
        )
        return cost, cache_savings(request.model, usage, at=at, service_tier=service_tier)
    except ValueError as error:
        logger.warning(
            "llm cost not computable model=%s provider=%s error=%s",
            request.model.name,
            request.model.provider,
            error,
        )
        return Cost(), Decimal(0)


def meter(
    request: ProviderRequest,
    ctx: CallContext,
    executed: Executed,
    *,
    latency_s: float,
    streamed: bool,
    ts: datetime | None = None,
    service_tier: ServiceTier = "standard",
) -> LedgerRecord:
    """The ledger row of one answered call, priced at the rates in force at ``ts`` for its
    ``service_tier`` (``batch``: answered through a provider batch API)."""
    usage = executed.result.usage
    when = ts or datetime.now(UTC)
    cost, savings = price(request, executed, when, service_tier=service_tier)
    return LedgerRecord(
        request_id=ctx.request_id,
        job_id=ctx.job_id or NO_JOB,
        row_id=ctx.row_id,
        ts=when,
        price_effective_from=price_effective_from(request.model, when),
        provider=request.model.provider,
        model=request.model.name,
        api_model=executed.result.model_version,
        status="ok",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        input_cost=cost.input_cost,
        output_cost=cost.output_cost,
        cache_read_cost=cost.cache_read_cost,
        cache_write_cost=cost.cache_write_cost,
        cache_savings=savings,
        latency_s=max(latency_s, 0.0),
        attempts=executed.attempts,
        streamed=streamed,
        tier=service_tier,
    )
