"""Recommendation policy: picks on 2026-11-24 derived by hand from models.toml, plus the rules.

Active on 2026-11-24 (everything else is deprecated or retired): blended price 3 x in + out
  claude-opus-4.6 $40, claude-sonnet-4.6 $24, gemini-3.1-pro-preview $18,
  claude-haiku-4.5 $8, gemini-2.5-flash-lite $0.70.
Medium value = score - log10(blended): penalties opus 1.602, sonnet 1.380, gemini-3.1 1.255,
haiku 0.903, flash-lite -0.155.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from llm.exceptions import ModelNotFoundError
from llm.models import Capabilities, Lifecycle, ModelInfo, PriceTier, Pricing
from llm.recommend import (
    BUDGETS,
    TASKS,
    blended_price,
    fallback_models,
    get_best_model_for_task,
    rank_models,
    task_score,
)
from llm.registry import Registry, load_registry

TODAY = dt.date(2026, 11, 24)
REGISTRY = load_registry()
#: Deprecated on TODAY: sonnet-4.5, opus-4.5, gpt-5, gpt-5-mini, o3, gpt-4.1, gpt-4o, the
#: gemini-2.5 Pro/Flash (all retire within months); gpt-5.1, gpt-5.4-nano, gemini-3.1-flash-lite.
ACTIVE = {
    m.name
    for m in REGISTRY.models()
    if m.lifecycle.retires_on is None and m.lifecycle.status == "active"
}
#: Superseded but served: ranked after every current model.
LEGACY = {m.name for m in REGISTRY.models() if m.lifecycle.legacy}


def best(task: str, budget: str) -> str:
    return get_best_model_for_task(task, budget, today=TODAY, registry=REGISTRY)


@pytest.mark.parametrize(
    ("task", "budget", "expected"),
    [
        # brief: vision -> Gemini. low: the cheapest current model scoring >= 7 on vision is
        # gemini-3.5-flash-lite ($3.40; haiku-5.5 6.8 and gpt-6-luna 6.9 are below the bar);
        # medium: gemini-3.1-pro 9.5 - log10(18) 1.255 = 8.245
        ("vision_analysis", "low", "gemini-3.5-flash-lite"),
        ("vision_analysis", "medium", "gemini-3.1-pro-preview"),
        ("vision_analysis", "high", "gemini-3.1-pro-preview"),
        # brief: code -> Sonnet, now 5.5. medium: sonnet-5.5 9.6 - log10(16) 1.204 = 8.396 >
        # haiku-5.5 8.0 + 0.097; low: haiku-5.5 ($0.80) is the cheapest at the bar
        ("code_generation", "low", "claude-haiku-5.5"),
        ("code_generation", "medium", "claude-sonnet-5.5"),
        ("code_generation", "high", "claude-fable-5.2"),
        # brief: cost-efficient thinking model. medium: argon 9.6 - log10(16) = 8.396
        ("deep_reasoning", "low", "claude-haiku-5.5"),
        ("deep_reasoning", "medium", "gemini-4-argon"),
        ("deep_reasoning", "high", "claude-fable-5.2"),
        # brief: Haiku, now 5.5 (fast_evaluation 9.0, $0.80).
        ("fast_evaluation", "low", "claude-haiku-5.5"),
        ("fast_evaluation", "medium", "claude-haiku-5.5"),
        ("fast_evaluation", "high", "claude-haiku-5.5"),
        # brief: Claude. haiku-5.5 8.3 + 0.097 > sonnet-5.5 9.6 - 1.204
        ("structured_extraction", "low", "claude-haiku-5.5"),
        ("structured_extraction", "medium", "claude-haiku-5.5"),
        ("structured_extraction", "high", "claude-fable-5.2"),
        ("classification", "medium", "claude-haiku-5.5"),
        ("summarization", "medium", "claude-haiku-5.5"),
        ("general", "medium", "claude-haiku-5.5"),
        ("general", "high", "claude-fable-5.2"),
    ],
)
def test_picks_on_2026_11_24(task, budget, expected):
    assert best(task, budget) == expected


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("budget", BUDGETS)
def test_never_deprecated_or_retired(task, budget):
    ranked = rank_models(task, budget, today=TODAY, registry=REGISTRY)
    assert ranked and {m.name for m in ranked} <= ACTIVE
    assert all(m.status_on(TODAY) == "active" for m in ranked)
    legacy = [m.lifecycle.legacy for m in ranked]
    assert legacy == sorted(legacy)  # every current model ranks before every legacy one
    assert ranked[0].name not in LEGACY


def test_task_needs_filter_candidates():
    reasoning = rank_models("deep_reasoning", today=TODAY, registry=REGISTRY)
    assert all(m.capabilities.reasoning for m in reasoning)
    fast = rank_models("fast_evaluation", today=TODAY, registry=REGISTRY)
    assert all(m.speed >= 7 for m in fast)
    assert {"claude-haiku-5.5", "gemini-3.8-flash", "gpt-6-luna"} <= {m.name for m in fast}
    assert {"claude-sonnet-5.5", "gpt-6.1-sol"}.isdisjoint(m.name for m in fast)


def test_vision_low_is_the_cheapest_active_vision_model():
    pick = REGISTRY.get(best("vision_analysis", "low"))
    at_the_bar = [
        m
        for m in REGISTRY.models()
        if m.capabilities.vision
        and m.status_on(TODAY) == "active"
        and not m.lifecycle.legacy
        and task_score(m, "vision_analysis") >= 7
    ]
    assert pick.capabilities.vision
    assert blended_price(pick) == min(blended_price(m) for m in at_the_bar) == Decimal("3.40")


def test_default_registry_is_the_shared_one():
    # On 2027-02-01 opus-4.5, gpt-4.1 and gpt-4o have retired too; sonnet-5.5 still wins.
    assert get_best_model_for_task("code_generation", today=dt.date(2027, 2, 1)) == (
        "claude-sonnet-5.5"
    )


def test_require_extra_capabilities():
    ranked = rank_models("general", "low", today=TODAY, require={"tools"}, registry=REGISTRY)
    assert ranked and all(m.capabilities.tools for m in ranked)
    with pytest.raises(ValueError, match="capability"):
        rank_models("general", require={"telepathy"}, registry=REGISTRY)


def test_unknown_task_or_budget_lists_valid_values():
    with pytest.raises(ValueError, match="vision_analysis") as caught:
        get_best_model_for_task("poetry", registry=REGISTRY)
    assert "general" in str(caught.value)
    with pytest.raises(ValueError, match="low, medium, high"):
        get_best_model_for_task("general", "free", registry=REGISTRY)


# ------------------------------------------------------------------------------ fallbacks


def test_fallbacks_are_other_providers_closest_first():
    # gemini-3.1 (general 9.2, $18): sonnet-5.5 |0.2| + log10(18/16) 0.051 = 0.251 is the
    # closest; legacy models (sonnet-4.6 ...) come after every current one
    gemini = REGISTRY.get("gemini-3.1-pro-preview")
    fallbacks = fallback_models(gemini, today=TODAY, registry=REGISTRY)
    assert [m.name for m in fallbacks[:2]] == ["claude-sonnet-5.5", "gpt-5.6-sol"]
    assert all(m.provider != "google" for m in fallbacks)
    legacy = [m.lifecycle.legacy for m in fallbacks]
    assert legacy == sorted(legacy) and "claude-sonnet-4.6" in {m.name for m in fallbacks}


def test_fallbacks_for_a_retired_model_are_active_and_capable():
    # o4-mini (general 8.0, $7.70): gemini-3.5-flash-lite |0.2| + log10(7.7/3.4) 0.355
    o4 = REGISTRY.get("o4-mini")
    fallbacks = fallback_models(o4, today=TODAY, registry=REGISTRY)
    assert fallbacks[0].name == "gemini-3.5-flash-lite"
    for model in fallbacks:
        assert model.provider != "openai" and model.status_on(TODAY) == "active"
        assert model.capabilities.reasoning and model.capabilities.structured_output


# ------------------------------------------------------------------------------ the rules


def synthetic(name: str, provider: str, price: str, score: float, **lifecycle) -> ModelInfo:
    """A model with blended price ``4 x price`` (input = output = price) and one score."""
    rate = Decimal(price)
    return ModelInfo(
        name=name,
        provider=provider,
        api_id=name,
        context_window=100_000,
        max_output_tokens=1000,
        pricing=Pricing(standard=PriceTier(input=rate, output=rate)),
        capabilities=Capabilities(vision=True, tools=True),
        lifecycle=Lifecycle(**lifecycle),
        task_scores={"general": score},
    )


def test_budget_rules_on_synthetic_models():
    # blended: weak $1 (score 6), mid $10 (8), strong $100 (8.8), gone $1 but retired (10)
    registry = Registry(
        [
            synthetic("weak", "openai", "0.25", 6.0),
            synthetic("mid", "anthropic", "2.5", 8.0),
            synthetic("strong", "google", "25", 8.8),
            synthetic("gone", "google", "0.25", 10.0, status="retired"),
        ]
    )

    def pick(budget: str) -> list[str]:
        return [m.name for m in rank_models("general", budget, today=TODAY, registry=registry)]

    assert pick("low") == ["mid", "strong", "weak"]  # weak is below the bar of 7
    assert pick("high") == ["strong", "mid", "weak"]
    # medium: weak 6 - 0 = 6; mid 8 - 1 = 7; strong 8.8 - 2 = 6.8
    assert pick("medium") == ["mid", "strong", "weak"]


def test_low_budget_with_nobody_at_the_bar_takes_the_cheapest():
    registry = Registry([synthetic("a", "openai", "1", 5.0), synthetic("b", "google", "0.5", 4.0)])
    assert get_best_model_for_task("general", "low", today=TODAY, registry=registry) == "b"


def test_no_active_model_raises_model_not_found():
    registry = Registry([synthetic("old", "openai", "1", 9.0, status="retired")])
    with pytest.raises(ModelNotFoundError):
        get_best_model_for_task("general", today=TODAY, registry=registry)


def test_legacy_models_rank_after_current_ones():
    registry = Registry(
        [
            synthetic("old-strong", "anthropic", "1", 9.5, legacy=True),
            synthetic("new-weaker", "anthropic", "1", 8.0),
        ]
    )
    for budget in BUDGETS:
        ranked = rank_models("general", budget, today=TODAY, registry=registry)
        assert [m.name for m in ranked] == ["new-weaker", "old-strong"]
    probe = synthetic("probe", "openai", "1", 9.5)
    assert [m.name for m in fallback_models(probe, today=TODAY, registry=registry)] == [
        "new-weaker",
        "old-strong",
    ]
