"""Turning executor results into :class:`~llm.types.LLMResponse` values, with their cost.

One provider call becomes one response. Its cost is the call's :class:`~llm.pricing.CallPrice`,
computed once where the call was metered (``Executed.price``: the runtime engine prices at
the time it books in the ledger) or, for an executor that does not meter, here by the same
:func:`llm.pricing.price_call` at the rates in force when the call was made. A dated price is
named in ``metadata["price_effective_from"]``, a non-standard tier in ``metadata["tier"]``.
The calls of one ``generate`` (a structured-output re-ask makes several) merge into one
final response whose usage, cost, cache savings and attempts are the sums over the calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from llm.executor import Executed, price_executed
from llm.models import ModelInfo
from llm.pricing import CallPrice, ServiceTier
from llm.types import Cost, LLMResponse


def priced(
    model: ModelInfo,
    executed: Executed,
    *,
    at: dt.datetime | None = None,
    service_tier: ServiceTier = "standard",
) -> CallPrice:
    """The price the executor metered, else the result priced at ``at`` (``None``: now)."""
    if executed.price is not None:
        return executed.price
    return price_executed(
        model, executed, at=at or dt.datetime.now(dt.UTC), service_tier=service_tier
    )


def call_response(
    model: ModelInfo,
    executed: Executed,
    *,
    call_id: str,
    metadata: dict[str, Any],
    latency_s: float,
    at: dt.datetime | None = None,
    service_tier: ServiceTier = "standard",
) -> LLMResponse:
    """The response of one provider call, at its metered price (see :func:`priced`: ``at`` and
    ``service_tier`` apply only to a result no executor priced; ``batch``: answered through a
    provider batch API, named in ``metadata["tier"]``)."""
    result = executed.result
    price = priced(model, executed, at=at, service_tier=service_tier)
    if price.price_effective_from is not None:
        metadata = {**metadata, "price_effective_from": price.price_effective_from.isoformat()}
    if price.tier != "standard":
        metadata = {**metadata, "tier": price.tier}
    return LLMResponse(
        text=result.text,
        model=model.name,
        provider=model.provider,
        usage=result.usage,
        cost=price.cost,
        cache_savings=price.cache_savings,
        tool_calls=[
            {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}
            for call in result.tool_calls
        ],
        finish_reason=result.finish_reason,
        raw_finish_reason=result.raw_finish_reason,
        reasoning_text=result.reasoning_text,
        latency_s=latency_s,
        request_id=result.request_id or call_id,
        attempts=executed.attempts,
        metadata={**metadata, "call_id": call_id},
    )


def _dated_price(response: LLMResponse) -> dict[str, Any]:
    key = "price_effective_from"
    return {key: response.metadata[key]} if key in response.metadata else {}


def merge_calls(
    calls: Sequence[LLMResponse],
    *,
    structured_output: Any,
    latency_s: float,
    metadata: dict[str, Any],
) -> LLMResponse:
    """The final response: the last call's answer with usage, cost, attempts summed."""
    last = calls[-1]
    usage = sum((call.usage for call in calls[1:]), calls[0].usage)
    cost = sum((call.cost or Cost() for call in calls[1:]), calls[0].cost or Cost())
    savings = sum((call.cache_savings or Decimal(0) for call in calls), Decimal(0))
    return last.model_copy(
        update={
            "usage": usage,
            "cost": cost,
            "cache_savings": savings,
            "attempts": sum(call.attempts for call in calls),
            "structured_output": structured_output,
            "latency_s": latency_s,
            "metadata": {**metadata, **_dated_price(last), "call_id": calls[0].metadata["call_id"]},
        }
    )
