"""Exact cost of calls: every figure below is worked out by hand from wire-formats.md §4."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm.models import ModelInfo, PriceChange, PriceTier, Pricing
from llm.pricing import (
    billing_day,
    cache_savings,
    compute_cost,
    estimate_cost,
    price_effective_from,
    rates_on,
    tier_for,
)
from llm.registry import load_registry
from llm.types import Cost, Usage

REGISTRY = load_registry()
D = Decimal


def model(name: str) -> ModelInfo:
    found = REGISTRY.get(name)
    assert found is not None
    return found


def assert_cost(cost: Cost, *, input: str, output: str, read: str = "0", write: str = "0"):
    assert (cost.input_cost, cost.output_cost) == (D(input), D(output))
    assert (cost.cache_read_cost, cost.cache_write_cost) == (D(read), D(write))
    for part in (cost.input_cost, cost.output_cost, cost.cache_read_cost, cost.cache_write_cost):
        assert isinstance(part, Decimal)


# ------------------------------------------------------------------------------ Anthropic


def test_sonnet_45_plain():
    # 1000 x $3/M = 0.003; 500 x $15/M = 0.0075
    cost = compute_cost(model("claude-sonnet-4.5"), Usage(input_tokens=1000, output_tokens=500))
    assert_cost(cost, input="0.003", output="0.0075")
    assert cost.total_cost == D("0.0105")


def test_sonnet_45_five_minute_write_and_read():
    # 10000 prompt = 6000 read + 2000 written (5m) + 2000 uncached.
    # uncached 2000 x 3 = 0.006; read 6000 x 0.30 = 0.0018; write 2000 x 3.75 = 0.0075;
    # output 300 x 15 = 0.0045; total 0.0198
    usage = Usage(
        input_tokens=10_000, cached_tokens=6000, cache_write_tokens=2000, output_tokens=300
    )
    cost = compute_cost(model("claude-sonnet-4.5"), usage)
    assert_cost(cost, input="0.006", output="0.0045", read="0.0018", write="0.0075")
    assert cost.total_cost == D("0.0198")


def test_sonnet_45_one_hour_writes():
    # 4000 written: 3000 with 5m TTL x 3.75 = 0.01125, 1000 with 1h TTL x 6 = 0.006
    # uncached 1000 x 3 = 0.003; output 100 x 15 = 0.0015
    usage = Usage(
        input_tokens=5000, cache_write_tokens=4000, cache_write_1h_tokens=1000, output_tokens=100
    )
    cost = compute_cost(model("claude-sonnet-4.5"), usage)
    assert_cost(cost, input="0.003", output="0.0015", write="0.01725")


def test_sonnet_45_long_context_counts_cache_tokens_toward_threshold():
    # 250000 prompt (100000 uncached, 100000 read, 50000 written): > 200K -> all long rates.
    # uncached 100000 x 6 = 0.6; read 100000 x 0.60 = 0.06; write 50000 x 7.50 = 0.375;
    # output 1000 x 22.50 = 0.0225; total 1.0575
    usage = Usage(
        input_tokens=250_000, cached_tokens=100_000, cache_write_tokens=50_000, output_tokens=1000
    )
    cost = compute_cost(model("claude-sonnet-4.5"), usage)
    assert_cost(cost, input="0.6", output="0.0225", read="0.06", write="0.375")
    assert cost.total_cost == D("1.0575")


def test_sonnet_45_long_context_one_hour_write_rate():
    # 210000 prompt with 10000 one-hour writes: 200000 x 6 = 1.2; 10000 x 12 = 0.12
    usage = Usage(input_tokens=210_000, cache_write_tokens=10_000, cache_write_1h_tokens=10_000)
    cost = compute_cost(model("claude-sonnet-4.5"), usage)
    assert_cost(cost, input="1.2", output="0", write="0.12")


def test_sonnet_45_exactly_at_threshold_is_standard():
    # 200000 x 3 = 0.6; 1000 x 15 = 0.015 (threshold is "more than 200K")
    at = compute_cost(model("claude-sonnet-4.5"), Usage(input_tokens=200_000, output_tokens=1000))
    assert_cost(at, input="0.6", output="0.015")
    # one token more: 200001 x 6 = 1.200006; 1000 x 22.50 = 0.0225
    over = compute_cost(model("claude-sonnet-4.5"), Usage(input_tokens=200_001, output_tokens=1000))
    assert_cost(over, input="1.200006", output="0.0225")


def test_sonnet_46_has_no_long_context_surcharge():
    # 500000 x 3 = 1.5 (no tier since 2026-03-13)
    cost = compute_cost(model("claude-sonnet-4.6"), Usage(input_tokens=500_000))
    assert cost.total_cost == D("1.5")


def test_exact_decimal_total():
    # Haiku 4.5: 1230 x $1/M = 0.00123; 645 x $5/M = 0.003225; sum 0.004455 exactly
    cost = compute_cost(model("claude-haiku-4.5"), Usage(input_tokens=1230, output_tokens=645))
    assert cost.total_cost == D("0.004455")
    assert str(cost.total_cost) == "0.004455"


def test_exact_under_a_low_precision_caller_context():
    with localcontext() as ctx:
        ctx.prec = 3
        cost = compute_cost(model("claude-haiku-4.5"), Usage(input_tokens=1230, output_tokens=645))
    assert cost.total_cost == D("0.004455")


# ------------------------------------------------------------------------------ OpenAI


def test_gpt_41_cached_input():
    # uncached 2000 x 2 = 0.004; cached 8000 x 0.50 = 0.004; output 2000 x 8 = 0.016
    usage = Usage(input_tokens=10_000, cached_tokens=8000, output_tokens=2000)
    cost = compute_cost(model("gpt-4.1"), usage)
    assert_cost(cost, input="0.004", output="0.016", read="0.004")
    assert cost.total_cost == D("0.024")


def test_openai_cache_writes_cost_the_plain_input_rate():
    # gpt-4.1: 2000 uncached + 1000 written, all at $2/M -> 0.004 + 0.002
    usage = Usage(input_tokens=3000, cache_write_tokens=1000)
    cost = compute_cost(model("gpt-4.1"), usage)
    assert_cost(cost, input="0.004", output="0", write="0.002")


def test_o3_reasoning_billed_as_output():
    # 1500 x 2 = 0.003; 3000 output (2500 of it reasoning) x 8 = 0.024
    usage = Usage(input_tokens=1500, output_tokens=3000, reasoning_tokens=2500)
    cost = compute_cost(model("o3"), usage)
    assert_cost(cost, input="0.003", output="0.024")
    plain = compute_cost(model("o3"), Usage(input_tokens=1500, output_tokens=3000))
    assert cost == plain


# ------------------------------------------------------------------------------ Gemini


def test_gemini_25_flash_thoughts_and_implicit_cache():
    # uncached 4000 x 0.30 = 0.0012; cached 8000 x 0.03 = 0.00024;
    # output 1500 (1200 thoughts) x 2.50 = 0.00375; total 0.00519
    usage = Usage(
        input_tokens=12_000, cached_tokens=8000, output_tokens=1500, reasoning_tokens=1200
    )
    cost = compute_cost(model("gemini-2.5-flash"), usage)
    assert_cost(cost, input="0.0012", output="0.00375", read="0.00024")
    assert cost.total_cost == D("0.00519")


def test_gemini_25_pro_long_prompt_uses_long_tier_everywhere():
    # 300000 prompt > 200K: uncached 200000 x 2.50 = 0.5; cached 100000 x 0.25 = 0.025;
    # output 2000 x 15 = 0.03; total 0.555
    usage = Usage(input_tokens=300_000, cached_tokens=100_000, output_tokens=2000)
    cost = compute_cost(model("gemini-2.5-pro"), usage)
    assert_cost(cost, input="0.5", output="0.03", read="0.025")
    assert cost.total_cost == D("0.555")


def test_gemini_explicit_cache_storage_goes_into_cache_write_cost():
    # 50000 cached tokens kept 2 h = 100000 token-hours x $4.50/M/h = 0.45
    # uncached 10000 x 1.25 = 0.0125; read 50000 x 0.125 = 0.00625; output 500 x 10 = 0.005
    usage = Usage(input_tokens=60_000, cached_tokens=50_000, output_tokens=500)
    cost = compute_cost(model("gemini-2.5-pro"), usage, cache_storage_token_hours=100_000)
    assert_cost(cost, input="0.0125", output="0.005", read="0.00625", write="0.45")
    # fractional hours stay exact: 4098 tokens x 0.25 h = 1024.5 token-hours x $1/M = 0.0010245
    hours = D(4098) * D("0.25")
    flash = compute_cost(model("gemini-2.5-flash"), Usage(), cache_storage_token_hours=hours)
    assert flash.cache_write_cost == D("0.0010245")


def test_storage_hours_on_a_model_without_storage_price_is_an_error():
    with pytest.raises(ValueError, match="storage"):
        compute_cost(model("claude-haiku-4.5"), Usage(), cache_storage_token_hours=10)


# ------------------------------------------------------------------------------ other rules


def test_unset_cache_read_rate_means_input_rate():
    bare = ModelInfo(
        name="bare",
        provider="openai",
        api_id="bare",
        context_window=1000,
        max_output_tokens=100,
        pricing=Pricing(standard=PriceTier(input=D("4"), output=D("8"))),
    )
    # 1000 cached x 4 = 0.004; 500 written x 4 = 0.002
    cost = compute_cost(bare, Usage(input_tokens=1500, cached_tokens=1000, cache_write_tokens=500))
    assert_cost(cost, input="0", output="0", read="0.004", write="0.002")


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=100, cached_tokens=80, cache_write_tokens=30),
        Usage(input_tokens=100, cache_write_tokens=10, cache_write_1h_tokens=20),
        Usage(input_tokens=-1),
    ],
)
def test_inconsistent_usage_is_rejected(usage):
    with pytest.raises(ValueError):
        compute_cost(model("claude-sonnet-4.5"), usage)


def test_estimate_cost_is_the_uncached_price():
    # gemini-3.1-pro-preview: 1000 x 2 = 0.002; 100 x 12 = 0.0012
    cost = estimate_cost(model("gemini-3.1-pro-preview"), 1000, 100)
    assert_cost(cost, input="0.002", output="0.0012")


def test_tier_for_picks_by_prompt_size():
    pricing = model("gemini-3.1-pro-preview").pricing
    assert tier_for(pricing, 200_000).input == D("2")
    assert tier_for(pricing, 200_001).input == D("4")


def test_cache_savings():
    # Sonnet 4.5: reads save 6000 x (3 - 0.30) = 0.0162; 2000 5m writes cost 2000 x 0.75 extra
    usage = Usage(input_tokens=10_000, cached_tokens=6000, cache_write_tokens=2000)
    assert cache_savings(model("claude-sonnet-4.5"), usage) == D("0.0147")
    # writes only, one-hour TTL: -(10000 x (6 - 3)) = -0.03
    writes = Usage(input_tokens=10_000, cache_write_tokens=10_000, cache_write_1h_tokens=10_000)
    assert cache_savings(model("claude-sonnet-4.5"), writes) == D("-0.03")
    # OpenAI writes carry no surcharge: 8000 x (2 - 0.5) = 0.012
    openai = Usage(input_tokens=10_000, cached_tokens=8000, cache_write_tokens=2000)
    assert cache_savings(model("gpt-4.1"), openai) == D("0.012")


# ------------------------------------------------------------------------------ properties

COUNTS = st.integers(min_value=0, max_value=400_000)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    cached, writes, uncached = draw(COUNTS), draw(COUNTS), draw(COUNTS)
    return Usage(
        input_tokens=cached + writes + uncached,
        cached_tokens=cached,
        cache_write_tokens=writes,
        cache_write_1h_tokens=draw(st.integers(min_value=0, max_value=writes)),
        output_tokens=draw(COUNTS),
    )


def _bumped(usage: Usage, field: str, extra: int) -> Usage:
    """``usage`` with ``extra`` more tokens of one kind, keeping the counts consistent."""
    grow = {
        "uncached": ("input_tokens",),
        "cached": ("input_tokens", "cached_tokens"),
        "write_5m": ("input_tokens", "cache_write_tokens"),
        "write_1h": ("input_tokens", "cache_write_tokens", "cache_write_1h_tokens"),
        "output": ("output_tokens",),
    }[field]
    return usage.model_copy(update={name: getattr(usage, name) + extra for name in grow})


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(m.name for m in REGISTRY.models())),
    usage=usages(),
    field=st.sampled_from(["uncached", "cached", "write_5m", "write_1h", "output"]),
    extra=st.integers(min_value=1, max_value=300_000),
)
def test_total_is_sum_of_parts_and_monotone(name, usage, field, extra):
    info = model(name)
    cost = compute_cost(info, usage)
    parts = cost.input_cost + cost.output_cost + cost.cache_read_cost + cost.cache_write_cost
    assert cost.total_cost == parts
    assert compute_cost(info, _bumped(usage, field, extra)).total_cost >= cost.total_cost


# ------------------------------------------------------------------------------ new rules


def test_gpt_56_and_later_bill_cache_writes_at_125_percent_of_input():
    # gpt-6.1-sol: 6000 uncached x $2 = 0.012; 4000 written x $2.50 (1.25 x $2) = 0.01;
    # before the fix writes were billed at the input rate: 0.008 (20 % low)
    usage = Usage(input_tokens=10_000, cache_write_tokens=4_000, output_tokens=0)
    cost = compute_cost(model("gpt-6.1-sol"), usage, at=dt.date(2026, 11, 27))
    assert_cost(cost, input="0.012", output="0", write="0.01")
    for name in ("gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-6-luna", "gpt-6.1-terra"):
        tier = model(name).pricing.standard
        assert tier.cache_write_5m == tier.input * D("1.25"), name
    # before GPT-5.6 writes are free: billed at the plain input rate
    older = compute_cost(model("gpt-5.5"), usage, at=dt.date(2026, 11, 27))
    assert_cost(older, input="0.03", output="0", write="0.02")


@pytest.mark.parametrize(
    ("name", "tokens", "input_rate"),
    [
        ("claude-haiku-5.5", 100_000, "0.1"),
        ("claude-haiku-5.5", 100_001, "0.5"),
        ("gpt-6.1-sol", 272_000, "2"),
        ("gpt-6.1-sol", 272_001, "4"),
        ("gpt-5.4", 272_001, "5"),
    ],
)
def test_new_long_context_tiers(name, tokens, input_rate):
    cost = compute_cost(model(name), Usage(input_tokens=tokens), at=dt.date(2026, 11, 27))
    assert cost.input_cost == D(tokens) * D(input_rate) / 1_000_000


@pytest.mark.parametrize(
    ("name", "before", "after", "change"),
    [
        # the introductory prices end: the call is billed at the price in force when made
        (
            "gemini-4-argon",
            dt.datetime(2026, 11, 30, 23, 59, 59),
            dt.datetime(2026, 12, 1),
            "2026-12-01",
        ),
        (
            "gemini-3.6-flash",
            dt.datetime(2026, 12, 31, 23, 59),
            dt.datetime(2027, 1, 1),
            "2027-01-01",
        ),
        ("gemini-3.7-flash", dt.date(2026, 12, 31), dt.date(2027, 1, 1), "2027-01-01"),
        ("gemini-3.8-flash", dt.date(2026, 11, 27), dt.date(2027, 3, 1), "2027-01-01"),
    ],
)
def test_dated_price_changes_double_from_their_day(name, before, after, change):
    usage = Usage(input_tokens=1_000_000, cached_tokens=200_000, output_tokens=100_000)
    old, new = (
        compute_cost(model(name), usage, at=before),
        compute_cost(model(name), usage, at=after),
    )
    assert new.total_cost == 2 * old.total_cost
    assert price_effective_from(model(name), before) is None
    assert price_effective_from(model(name), after) == dt.date.fromisoformat(change)
    assert (
        estimate_cost(model(name), 1000, 10, at=after).total_cost
        == 2 * estimate_cost(model(name), 1000, 10, at=before).total_cost
    )


def test_the_billing_day_is_the_utc_day():
    argon = model("gemini-4-argon")
    new_york = dt.timezone(dt.timedelta(hours=-5))
    # 20:00 in New York on 30 Nov is 01:00 UTC on 1 Dec: the new price
    assert rates_on(
        argon.pricing, dt.datetime(2026, 11, 30, 20, tzinfo=new_york)
    ).standard.input == D("4")
    assert rates_on(
        argon.pricing, dt.datetime(2026, 11, 30, 18, tzinfo=new_york)
    ).standard.input == D("2")
    assert billing_day(dt.datetime(2026, 11, 30, 23, 0)) == dt.date(2026, 11, 30)  # naive = UTC


def test_price_changes_keep_the_long_context_tier():
    tier = PriceTier(input=D("1"), output=D("2"))
    long = PriceTier(input=D("2"), output=D("4"))
    pricing = Pricing(
        standard=tier,
        long_context_threshold=10,
        long_context=long,
        changes=(
            PriceChange(
                effective_from=dt.date(2027, 1, 1),
                standard=PriceTier(input=D("3"), output=D("6")),
                long_context=PriceTier(input=D("5"), output=D("10")),
            ),
        ),
    )
    assert tier_for(pricing, 11, dt.date(2026, 12, 31)).input == D("2")
    assert tier_for(pricing, 11, dt.date(2027, 1, 1)).input == D("5")
    assert tier_for(pricing, 10, dt.date(2027, 1, 1)).input == D("3")
