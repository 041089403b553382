"""genai-prices (pydantic's maintained price database) as an oracle for the registry's prices.

Every registry model that genai-prices 0.2.3 knows (looked up by our API id and provider) must
cost exactly the same, to the last Decimal digit, on a grid of usage vectors: plain calls,
cache reads, 5-minute and 1-hour cache writes, reasoning-heavy answers, and prompts just
under and over each long-context threshold; on the day the prices were checked and on both
sides of every dated price change. Calls made before a model's check date are out of scope
(the registry bills calls from now on, not history). Gemini explicit-cache storage has no unit
in genai-prices and is not compared.
"""

from __future__ import annotations

import datetime as dt

import pytest
from genai_prices import Usage as OracleUsage
from genai_prices import calc_price

from llm.models import ModelInfo
from llm.pricing import compute_cost
from llm.registry import load_registry
from llm.types import Usage

REGISTRY = load_registry()
CHECK_DAY = dt.date(2026, 11, 27)


def oracle_price(model: ModelInfo, usage: Usage, day: dt.date, *, batch: bool = False):
    """genai-prices' price of ``usage`` on ``model`` at noon UTC of ``day`` (its batch
    variant when ``batch``): the one oracle call of the price tests."""
    fields = {
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cached_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.cache_write_1h_tokens:
        fields["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
    if usage.reasoning_tokens:
        fields["output_reasoning_tokens"] = usage.reasoning_tokens
    when = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    return calc_price(
        OracleUsage(**fields),
        model.api_id,
        provider_id=model.provider,
        genai_request_timestamp=when,
        price_context={"processing": "batch"} if batch else None,
    )


def _known(model: ModelInfo) -> bool:
    try:
        oracle_price(model, Usage(input_tokens=1, output_tokens=1), CHECK_DAY)
    except LookupError:
        return False
    return True


KNOWN = [model for model in REGISTRY.models() if _known(model)]


def _grid(model: ModelInfo) -> list[Usage]:
    anthropic = model.provider == "anthropic"
    vectors = [
        Usage(input_tokens=1_000, output_tokens=500),
        Usage(input_tokens=50_000, cached_tokens=40_000, output_tokens=200),
        Usage(input_tokens=20_000, cache_write_tokens=15_000, output_tokens=100),
        Usage(input_tokens=2_000, output_tokens=30_000, reasoning_tokens=25_000),
        Usage(
            input_tokens=60_000,
            cached_tokens=10_000,
            cache_write_tokens=12_000,
            cache_write_1h_tokens=5_000 if anthropic else 0,
            output_tokens=3_000,
            reasoning_tokens=1_000,
        ),
    ]
    threshold = model.pricing.long_context_threshold
    for prompt in (threshold, threshold + 1) if threshold else (300_000,):
        if prompt <= model.context_window:
            vectors.append(
                Usage(
                    input_tokens=prompt,
                    cached_tokens=prompt // 4,
                    cache_write_tokens=prompt // 8,
                    cache_write_1h_tokens=prompt // 16 if anthropic else 0,
                    output_tokens=4_000,
                    reasoning_tokens=2_000,
                )
            )
    return vectors


def _days(model: ModelInfo) -> list[dt.date]:
    days = {max(CHECK_DAY, model.pricing.checked or CHECK_DAY)}
    for change in model.pricing.changes:
        days |= {change.effective_from - dt.timedelta(days=1), change.effective_from}
    return sorted(day for day in days if day >= CHECK_DAY)


def test_the_oracle_knows_nearly_every_model():
    unknown = sorted({m.name for m in REGISTRY.models()} - {m.name for m in KNOWN})
    assert unknown == []
    assert len(KNOWN) >= 50


@pytest.mark.parametrize("model", KNOWN, ids=lambda model: model.name)
def test_registry_bills_like_genai_prices(model):
    mismatches = []
    for day in _days(model):
        for usage in _grid(model):
            ours = compute_cost(model, usage, at=day).total_cost
            theirs = oracle_price(model, usage, day).total_price
            if ours != theirs:
                mismatches.append(f"{day} {usage!r}: ours {ours} != genai-prices {theirs}")
    assert mismatches == []
