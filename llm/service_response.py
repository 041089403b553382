"""Turning executor results into :class:`~llm.types.LLMResponse` values, with their cost.

One provider call becomes one response (cost from :func:`llm.pricing.compute_cost` at the
rates in force when the call was made; a dated price is named in
``metadata["price_effective_from"]``); the
calls of one ``generate`` (a structured-output re-ask makes several) merge into one final
response whose usage, cost and attempts are the sums over the calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from llm.executor import Executed
from llm.models import ModelInfo
from llm.pricing import ServiceTier, compute_cost, price_effective_from
from llm.types import Cost, LLMResponse

#: Key of ``ProviderResult.provider_details`` holding Gemini explicit-cache storage.
STORAGE_KEY = "cache_storage_token_hours"


def _storage_token_hours(details: dict[str, Any]) -> Decimal:
    value = details.get(STORAGE_KEY) or 0
    return Decimal(str(value))


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
    """The response of one provider call made at ``at`` (``None``: now), priced at
    ``service_tier`` (``batch``: answered through a provider batch API, named in
    ``metadata["tier"]``)."""
    result = executed.result
    when = at or dt.datetime.now(dt.UTC)
    cost = compute_cost(
        model,
        result.usage,
        at=when,
        cache_storage_token_hours=_storage_token_hours(result.provider_details),
        service_tier=service_tier,
    )
    effective = price_effective_from(model, when)
    if effective is not None:
        metadata = {**metadata, "price_effective_from": effective.isoformat()}
    if service_tier != "standard":
        metadata = {**metadata, "tier": service_tier}
    return LLMResponse(
        text=result.text,
        model=model.name,
        provider=model.provider,
        usage=result.usage,
        cost=cost,
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
    return last.model_copy(
        update={
            "usage": usage,
            "cost": cost,
            "attempts": sum(call.attempts for call in calls),
            "structured_output": structured_output,
            "latency_s": latency_s,
            "metadata": {**metadata, **_dated_price(last), "call_id": calls[0].metadata["call_id"]},
        }
    )
