"""Exact cost of a call: token counts (``Usage``) times a model's per-million rates.

Owns the billing rules, the same for every provider and driven by the registry data:

* uncached input (input - cached - cache writes) at ``input``;
* cached tokens at ``cache_read`` (unset: ``input``);
* cache writes: the 5-minute part (writes - 1h writes) at ``cache_write_5m`` and the
  one-hour part at ``cache_write_1h`` (Anthropic). An unset write rate means "the plain input
  rate": OpenAI and Gemini charge no write surcharge, so their entries leave it unset;
* Gemini explicit-cache storage, ``cache_storage_token_hours x cache_storage_per_hour``,
  is added into ``cache_write_cost``;
* output, reasoning/thinking included, at ``output``;
* long-context tier: when the model has a threshold and the prompt's ``input_tokens``
  (cache reads and writes included) exceed it, every token of the request uses the
  ``long_context`` rates;
* dated prices: a call is billed at the rates in force on the UTC day it was made
  (:func:`rates_on`; ``pricing.changes`` in the registry). Callers pass the call's time as
  ``at``; the runtime passes the timestamp it books in the ledger, next to
  :func:`price_effective_from` (which change, if any, priced the call);
* service tier: ``standard`` (online) or ``batch`` (the providers' batch APIs, 50 % off).
  :func:`batch_tier` derives the batch rates from the standard ones by each provider's rule:
  Anthropic halves every rate, cache reads and writes included; OpenAI halves input, output
  and writes, and halves the cached-input rate only from GPT-5 on (gpt-4.1, gpt-4o and the
  o-series keep the standard cached-input rate in batch); Gemini halves input and output but
  bills cache reads at the standard rate.

All arithmetic is :class:`~decimal.Decimal`; no float is ever involved.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from llm.models import ModelInfo, PriceTier, Pricing
from llm.types import Cost, Usage

logger = logging.getLogger("llm")

MILLION = Decimal(1_000_000)

#: How a call was served: online (``standard``) or through a provider batch API (``batch``).
ServiceTier = Literal["standard", "batch"]
SERVICE_TIERS: tuple[str, ...] = get_args(ServiceTier)
BATCH_DISCOUNT = Decimal("0.5")
_GPT_GENERATION = re.compile(r"^gpt-(\d+)")


def _price(tokens: int | Decimal, rate_per_million: Decimal) -> Decimal:
    with localcontext() as ctx:  # exact whatever precision the caller's context has
        ctx.prec = 60
        return Decimal(tokens) * rate_per_million / MILLION


#: When a call was made: an aware datetime (naive means UTC), a UTC date, or ``None`` = now.
When = dt.datetime | dt.date | None


@dataclass(frozen=True)
class Rates:
    """The rates in force on one day, and the date of the price change that set them."""

    standard: PriceTier
    long_context: PriceTier | None
    #: ``None``: the model's undated rates (no change has taken effect yet).
    effective_from: dt.date | None = None


def billing_day(at: When) -> dt.date:
    """The UTC day a call made at ``at`` is billed on (``None``: today, UTC)."""
    if at is None:
        return dt.datetime.now(dt.UTC).date()
    if isinstance(at, dt.datetime):
        return (at if at.tzinfo is None else at.astimezone(dt.UTC)).date()
    return at


def rates_on(pricing: Pricing, at: When = None) -> Rates:
    """The rates in force at ``at``: the latest change on or before that UTC day, else the
    undated ones."""
    day = billing_day(at)
    rates = Rates(pricing.standard, pricing.long_context)
    for change in pricing.changes:  # sorted by date on load
        if change.effective_from > day:
            break
        rates = Rates(change.standard, change.long_context, change.effective_from)
    return rates


def price_effective_from(model: ModelInfo, at: When = None) -> dt.date | None:
    """The date of the price change in force at ``at`` (``None``: the undated rates)."""
    return rates_on(model.pricing, at).effective_from


def _half(rate: Decimal | None) -> Decimal | None:
    return None if rate is None else rate * BATCH_DISCOUNT


def batch_keeps_cached_input_rate(model: ModelInfo) -> bool:
    """Whether ``model``'s cache reads cost the standard rate in batch: the registry's
    ``batch_cache_read_rule`` if set, else the provider's rule (OpenAI before GPT-5 and
    Gemini keep it; Anthropic and GPT-5 and later halve it)."""
    rule = model.pricing.batch_cache_read_rule
    if rule is not None:
        return rule == "standard"
    if model.provider == "google":
        return True
    if model.provider == "openai":
        match = _GPT_GENERATION.match(model.api_id)
        return match is None or int(match.group(1)) < 5
    return False


def batch_tier(model: ModelInfo, tier: PriceTier, *, long_context: bool = False) -> PriceTier:
    """The batch-API rates matching the online rates ``tier`` of ``model``.

    A cache read left at the standard rate is made explicit (``cache_read`` unset means
    "the input rate", which is halved in batch). An unset write rate stays unset: it means
    "the (halved) input rate". The registry's ``batch_cache_read`` (a published rounded
    rate) wins for short prompts.
    """
    read = tier.cache_read if tier.cache_read is not None else tier.input
    if not batch_keeps_cached_input_rate(model):
        read = read * BATCH_DISCOUNT
    if model.pricing.batch_cache_read is not None and not long_context:
        read = model.pricing.batch_cache_read
    return PriceTier(
        input=tier.input * BATCH_DISCOUNT,
        output=tier.output * BATCH_DISCOUNT,
        cache_read=read,
        cache_write_5m=_half(tier.cache_write_5m),
        cache_write_1h=_half(tier.cache_write_1h),
    )


def check_service_tier(service_tier: str) -> ServiceTier:
    """``service_tier`` itself if known, else ``ValueError``."""
    if service_tier not in SERVICE_TIERS:
        raise ValueError(f"unknown service tier {service_tier!r}; use one of {SERVICE_TIERS}")
    return service_tier  # type: ignore[return-value]


def tier_for(
    pricing: Pricing,
    input_tokens: int,
    at: When = None,
    *,
    model: ModelInfo | None = None,
    service_tier: ServiceTier = "standard",
) -> PriceTier:
    """The rates for a request made at ``at`` whose prompt has ``input_tokens`` tokens,
    served at ``service_tier`` (``batch`` needs ``model`` for its provider's rule)."""
    rates = rates_on(pricing, at)
    threshold = pricing.long_context_threshold
    long = threshold is not None and rates.long_context is not None and input_tokens > threshold
    tier = rates.long_context if long and rates.long_context is not None else rates.standard
    if check_service_tier(service_tier) == "batch":
        if model is None:
            raise ValueError("batch rates need the model (its provider's batch rule)")
        tier = batch_tier(model, tier, long_context=long)
    return tier


def _read_rate(tier: PriceTier) -> Decimal:
    return tier.cache_read if tier.cache_read is not None else tier.input


def _write_rates(tier: PriceTier) -> tuple[Decimal, Decimal]:
    """(5-minute, one-hour) write rates: unset 5m means the input rate, unset 1h the 5m rate."""
    five = tier.cache_write_5m if tier.cache_write_5m is not None else tier.input
    hour = tier.cache_write_1h if tier.cache_write_1h is not None else five
    return five, hour


def _check_usage(usage: Usage) -> None:
    counts = usage.model_dump(exclude={"total_tokens"})
    negative = [name for name, value in counts.items() if value < 0]
    if negative:
        raise ValueError(f"usage counts must not be negative: {', '.join(negative)}")
    if usage.uncached_input_tokens < 0:
        raise ValueError("usage: cached_tokens + cache_write_tokens exceed input_tokens")
    if usage.cache_write_1h_tokens > usage.cache_write_tokens:
        raise ValueError("usage: cache_write_1h_tokens exceed cache_write_tokens")


def _storage_cost(model: ModelInfo, token_hours: Decimal | int) -> Decimal:
    hours = Decimal(token_hours)
    if hours < 0:
        raise ValueError("cache_storage_token_hours must not be negative")
    if hours == 0:
        return Decimal(0)
    rate = model.pricing.cache_storage_per_hour
    if rate is None:
        raise ValueError(f"{model.name} has no cache storage price")
    return _price(hours, rate)


def compute_cost(
    model: ModelInfo,
    usage: Usage,
    *,
    at: When = None,
    cache_storage_token_hours: Decimal | int = 0,
    service_tier: ServiceTier = "standard",
) -> Cost:
    """What ``usage`` costs on ``model`` for a call made at ``at``, billed the way its
    provider bills it (``at=None``: at today's rates), online or in a batch (``service_tier``).

    ``cache_storage_token_hours`` (tokens x hours a Gemini explicit cache was kept) adds
    storage into ``cache_write_cost``. Raises ``ValueError`` for inconsistent usage.
    """
    _check_usage(usage)
    tier = tier_for(model.pricing, usage.input_tokens, at, model=model, service_tier=service_tier)
    five_rate, hour_rate = _write_rates(tier)
    writes_1h = usage.cache_write_1h_tokens
    writes_5m = usage.cache_write_tokens - writes_1h
    write_cost = _price(writes_5m, five_rate) + _price(writes_1h, hour_rate)
    return Cost(
        input_cost=_price(usage.uncached_input_tokens, tier.input),
        output_cost=_price(usage.output_tokens, tier.output),
        cache_read_cost=_price(usage.cached_tokens, _read_rate(tier)),
        cache_write_cost=write_cost + _storage_cost(model, cache_storage_token_hours),
    )


def estimate_cost(
    model: ModelInfo,
    input_tokens: int,
    output_tokens: int,
    *,
    at: When = None,
    service_tier: ServiceTier = "standard",
) -> Cost:
    """A dry-run price for a prompt and answer of the given sizes, without any caching."""
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return compute_cost(model, usage, at=at, service_tier=service_tier)


def cache_savings(
    model: ModelInfo, usage: Usage, *, at: When = None, service_tier: ServiceTier = "standard"
) -> Decimal:
    """What caching saved on this call, in USD (negative when write surcharges dominate).

    ``cached x (input - read)`` saved on reads, minus ``writes x (write_rate - input)``
    paid extra on writes, at the tier the request was billed at.
    """
    _check_usage(usage)
    tier = tier_for(model.pricing, usage.input_tokens, at, model=model, service_tier=service_tier)
    five_rate, hour_rate = _write_rates(tier)
    writes_1h = usage.cache_write_1h_tokens
    writes_5m = usage.cache_write_tokens - writes_1h
    saved = _price(usage.cached_tokens, tier.input - _read_rate(tier))
    surcharge = _price(writes_5m, five_rate - tier.input) + _price(
        writes_1h, hour_rate - tier.input
    )
    return saved - surcharge


#: The token columns of every cost table (ledger, batch output, cost tracker), in order.
TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
#: The money columns of every cost table, in order (USD, Decimal).
COST_COLUMNS = (
    "input_cost",
    "output_cost",
    "cache_read_cost",
    "cache_write_cost",
    "total_cost",
    "cache_savings",
)


def usage_columns(usage: Usage) -> dict[str, int]:
    """The :data:`TOKEN_COLUMNS` of one call."""
    return {name: getattr(usage, name) for name in TOKEN_COLUMNS}


def cost_columns(cost: Cost | None, savings: Decimal | None = None) -> dict[str, Decimal]:
    """The :data:`COST_COLUMNS` of one call (zeros where it was not priced)."""
    cost = cost or Cost()
    return {
        "input_cost": cost.input_cost,
        "output_cost": cost.output_cost,
        "cache_read_cost": cost.cache_read_cost,
        "cache_write_cost": cost.cache_write_cost,
        "total_cost": cost.total_cost,
        "cache_savings": savings if savings is not None else Decimal(0),
    }


class CallPrice(BaseModel):
    """The price of one answered call, computed once (:func:`price_call`) where the call is
    metered and carried with the result (``Executed.price``) to the response, the cost
    tracker, the batch output and the ledger, so none of them prices it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cost: Cost = Cost()
    cache_savings: Decimal = Decimal(0)
    #: The dated price change that priced the call (``None``: the model's base prices).
    price_effective_from: dt.date | None = None
    tier: ServiceTier = "standard"

    def columns(self) -> dict[str, Any]:
        """The price as table columns: :data:`COST_COLUMNS`, ``price_effective_from``, ``tier``."""
        return {
            **cost_columns(self.cost, self.cache_savings),
            "price_effective_from": self.price_effective_from,
            "tier": self.tier,
        }


def price_call(
    model: ModelInfo,
    usage: Usage,
    *,
    at: When = None,
    cache_storage_token_hours: Decimal | int = 0,
    service_tier: ServiceTier = "standard",
) -> CallPrice:
    """The one pricing point of an answered call: cost, cache savings, the dated price in
    force at ``at`` and the service tier.

    Usage the billing rules reject (an adapter bug) is logged and priced at zero rather than
    losing an answer that was already paid for; its token counts still reach the ledger.
    """
    try:
        cost = compute_cost(
            model,
            usage,
            at=at,
            cache_storage_token_hours=cache_storage_token_hours,
            service_tier=service_tier,
        )
        savings = cache_savings(model, usage, at=at, service_tier=service_tier)
    except ValueError as error:
        logger.warning(
            "llm cost not computable model=%s provider=%s error=%s",
            model.name,
            model.provider,
            error,
        )
        cost, savings = Cost(), Decimal(0)
    return CallPrice(
        cost=cost,
        cache_savings=savings,
        price_effective_from=price_effective_from(model, at),
        tier=service_tier,
    )
