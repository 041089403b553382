"""Batch-tier prices (llm.pricing.batch_tier) checked against genai-prices 0.2.3's batch
variants (``price_context={"processing": "batch"}``), plus each provider's rule on its own."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from llm.models import ModelInfo
from llm.pricing import batch_keeps_cached_input_rate, compute_cost, tier_for
from llm.registry import load_registry
from llm.types import Usage
from tests.test_genai_prices import KNOWN, _days, _grid, oracle_price

REGISTRY = load_registry()


def _oracle(model: ModelInfo, usage: Usage, day: dt.date, batch: bool) -> Decimal:
    return oracle_price(model, usage, day, batch=batch).total_price


def _has_batch_variant(model: ModelInfo) -> bool:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    day = _days(model)[0]
    return _oracle(model, usage, day, True) != _oracle(model, usage, day, False)


BATCHED = [model for model in KNOWN if _has_batch_variant(model)]


def test_the_oracle_has_batch_prices_for_each_provider():
    assert {model.provider for model in BATCHED} == {"anthropic", "openai", "google"}
    assert len(BATCHED) >= 20


@pytest.mark.parametrize("model", BATCHED, ids=lambda model: model.name)
def test_batch_tier_bills_like_genai_prices(model):
    mismatches = []
    for day in _days(model):
        for usage in _grid(model):
            ours = compute_cost(model, usage, at=day, service_tier="batch").total_cost
            theirs = _oracle(model, usage, day, True)
            if ours != theirs:
                mismatches.append(f"{day} {usage!r}: ours {ours} != genai-prices {theirs}")
    assert mismatches == []


def _rates(name: str):
    model = REGISTRY.resolve(name)
    standard = tier_for(model.pricing, 1_000, model=model)
    batch = tier_for(model.pricing, 1_000, model=model, service_tier="batch")
    return model, standard, batch


def test_anthropic_batch_halves_cache_reads_and_writes():
    for model in REGISTRY.models():
        if model.provider != "anthropic":
            continue
        _, standard, batch = _rates(model.name)
        assert batch.input == standard.input / 2
        assert batch.output == standard.output / 2
        assert batch.cache_read == standard.cache_read / 2
        assert batch.cache_write_5m == standard.cache_write_5m / 2
        assert batch.cache_write_1h == standard.cache_write_1h / 2


def test_openai_cached_input_rule_depends_on_generation():
    openai = [m for m in REGISTRY.models() if m.provider == "openai"]
    kept = [m for m in openai if m.api_id.startswith(("gpt-4", "o1", "o3", "o4"))]
    halved = [
        m
        for m in openai
        if m.api_id.startswith("gpt-")
        and not m.api_id.startswith("gpt-4")
        and m.pricing.batch_cache_read is None
    ]
    assert kept and halved
    for model in kept:
        assert batch_keeps_cached_input_rate(model)
        _, standard, batch = _rates(model.name)
        assert batch.cache_read == standard.cache_read
    for model in halved:
        assert not batch_keeps_cached_input_rate(model), model.name
        _, standard, batch = _rates(model.name)
        assert batch.cache_read == standard.cache_read / 2


def test_gemini_batch_keeps_standard_cache_reads_unless_the_registry_says_halved():
    for model in REGISTRY.models():
        if model.provider != "google" or batch_overridden(model):
            continue
        _, standard, batch = _rates(model.name)
        assert batch.input == standard.input / 2
        assert batch.cache_read == (standard.cache_read or standard.input)


def test_unknown_tier_is_a_clear_error():
    model = REGISTRY.resolve("claude-haiku-5.5")
    with pytest.raises(ValueError, match="unknown service tier"):
        compute_cost(model, Usage(input_tokens=1), service_tier="priority")  # type: ignore[arg-type]


def batch_overridden(model: ModelInfo) -> bool:
    pricing = model.pricing
    return pricing.batch_cache_read_rule is not None or pricing.batch_cache_read is not None


def test_ledger_row_carries_the_tier(tmp_path):
    from runtime.ledger_store import LedgerRecord, LedgerWriter, read_ledger

    now = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    rows = [
        LedgerRecord(request_id="a", job_id="j", ts=now, provider="openai", model="m"),
        LedgerRecord(
            request_id="b", job_id="j", ts=now, provider="openai", model="m", tier="batch"
        ),
    ]
    LedgerWriter(tmp_path).append(rows, durable=True)
    table = read_ledger(tmp_path)
    assert sorted(table.column("tier").to_pylist()) == ["batch", "standard"]
    assert LedgerRecord(**{**rows[0].model_dump(), "tier": None}).tier == "standard"
