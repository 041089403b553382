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
)
from llm.registry import Registry, load_registry

TODAY = dt.date(2026, 11, 24)
REGISTRY = load_registry()
ACTIVE = {
    "claude-opus-4.6",
    "claude-sonnet-4.6",
    "claude-haiku-4.5",
    "gemini-2.5-flash-lite",
    "gemini-3.1-pro-preview",
}


def best(task: str, budget: str) -> str:
    return get_best_model_for_task(task, budget, today=TODAY, registry=REGISTRY)


@pytest.mark.parametrize(
    ("task", "budget", "expected"),
    [
        # brief: vision -> Gemini. low: cheapest vision model scoring >= 7 = flash-lite ($0.70);
        # medium: gemini-3.1 9.5 - 1.255 = 8.245 > flash-lite 7.5 + 0.155 = 7.655
        ("vision_analysis", "low", "gemini-2.5-flash-lite"),
        ("vision_analysis", "medium", "gemini-3.1-pro-preview"),
        ("vision_analysis", "high", "gemini-3.1-pro-preview"),
        # brief: code -> Sonnet 4.5, now 4.6. medium: sonnet 9.5 - 1.380 = 8.120 >
        # opus 9.6 - 1.602 = 7.998; low: flash-lite (6.5) is below the bar -> haiku 7.8
        ("code_generation", "low", "claude-haiku-4.5"),
        ("code_generation", "medium", "claude-sonnet-4.6"),
        ("code_generation", "high", "claude-opus-4.6"),
        # brief: o4-mini (retired). medium: gemini-3.1 9.6 - 1.255 = 8.345 > opus 7.898;
        # low: haiku 7.0 is the cheapest at the bar (flash-lite 6.8 is below it)
        ("deep_reasoning", "low", "claude-haiku-4.5"),
        ("deep_reasoning", "medium", "gemini-3.1-pro-preview"),
        ("deep_reasoning", "high", "gemini-3.1-pro-preview"),
        # brief: haiku. Only speed >= 7 qualifies (haiku 8, flash-lite 9).
        # medium: haiku 8.8 - 0.903 = 7.897 > flash-lite 7.0 + 0.155 = 7.155
        ("fast_evaluation", "low", "gemini-2.5-flash-lite"),
        ("fast_evaluation", "medium", "claude-haiku-4.5"),
        ("fast_evaluation", "high", "claude-haiku-4.5"),
        # brief: Sonnet. medium: sonnet 9.5 - 1.380 = 8.120 > opus 9.6 - 1.602 = 7.998 >
        # flash-lite 7.8 + 0.155 = 7.955
        ("structured_extraction", "low", "gemini-2.5-flash-lite"),
        ("structured_extraction", "medium", "claude-sonnet-4.6"),
        ("structured_extraction", "high", "claude-opus-4.6"),
        # classification medium: flash-lite 7.8 + 0.155 = 7.955 > gemini-3.1 8.9 - 1.255
        ("classification", "low", "gemini-2.5-flash-lite"),
        ("classification", "medium", "gemini-2.5-flash-lite"),
        ("classification", "high", "claude-opus-4.6"),
        ("summarization", "medium", "gemini-3.1-pro-preview"),  # 9.1 - 1.255 = 7.845
        ("general", "medium", "gemini-3.1-pro-preview"),  # 9.2 - 1.255 = 7.945 > opus 7.898
        ("general", "high", "claude-opus-4.6"),
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


def test_task_needs_filter_candidates():
    reasoning = rank_models("deep_reasoning", today=TODAY, registry=REGISTRY)
    assert all(m.capabilities.reasoning for m in reasoning)
    fast = rank_models("fast_evaluation", today=TODAY, registry=REGISTRY)
    assert {m.name for m in fast} == {"claude-haiku-4.5", "gemini-2.5-flash-lite"}


def test_vision_low_is_the_cheapest_active_vision_model():
    pick = REGISTRY.get(best("vision_analysis", "low"))
    active_vision = [
        m for m in REGISTRY.models() if m.capabilities.vision and m.status_on(TODAY) == "active"
    ]
    assert pick.capabilities.vision
    assert blended_price(pick) == min(blended_price(m) for m in active_vision) == Decimal("0.70")


def test_default_registry_is_the_shared_one():
    # On 2027-02-01 opus-4.5, gpt-4.1 and gpt-4o have retired too; sonnet-4.6 still wins.
    assert get_best_model_for_task("code_generation", today=dt.date(2027, 2, 1)) == (
        "claude-sonnet-4.6"
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
    # gemini-3.1 (general 9.2, $18): sonnet |0.2| + log10(24/18) 0.125 = 0.325;
    # opus 0.3 + log10(40/18) 0.347 = 0.647; haiku 1.4 + log10(18/8) 0.352 = 1.752
    gemini = REGISTRY.get("gemini-3.1-pro-preview")
    names = [m.name for m in fallback_models(gemini, today=TODAY, registry=REGISTRY)]
    assert names == ["claude-sonnet-4.6", "claude-opus-4.6", "claude-haiku-4.5"]


def test_fallbacks_for_a_retired_model_are_active_and_capable():
    # o4-mini (general 8.0, $7.70): haiku 0.2 + log10(8/7.7) 0.017 is the closest
    o4 = REGISTRY.get("o4-mini")
    fallbacks = fallback_models(o4, today=TODAY, registry=REGISTRY)
    assert fallbacks[0].name == "claude-haiku-4.5"
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
