"""Recommendation policy: which model to use for a task and budget, and cross-provider fallbacks.

Owns the policy; the inputs (capabilities, prices, lifecycle, ``task_scores``, ``speed``)
all come from the registry. Steps, for a task and budget:

1. Candidates: models that are *active* on ``today`` (never deprecated or retired) and have
   what the task needs: ``vision`` for vision_analysis, ``reasoning`` for deep_reasoning,
   ``structured_output`` for structured_extraction, ``speed >= FAST_SPEED`` for
   fast_evaluation, plus any capability in ``require``.
2. Order: current models before *legacy* ones (``lifecycle.legacy``: still served but
   superseded, like Anthropic's 4.6 line), then by the model's task score (0..10) and its
   blended price ``3 x input + output`` (USD per 1M tokens, standard tier in force on
   ``today``, so a dated price change counts from its date; a 3:1 prompt-heavy mix):

   * ``low``: the cheapest model whose score is at least ``MIN_ACCEPTABLE_SCORE``; models
     below that bar follow, also cheapest first.
   * ``high``: the best score; cheaper first on ties.
   * ``medium``: the best value ``score - PRICE_WEIGHT x log10(blended price)``: with the
     weight at 1, a model ten times the price must score one point more to win.

Ties are broken by price, then name, so the answer is deterministic.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal

from llm.exceptions import ModelNotFoundError
from llm.models import Capabilities, ModelInfo, lifecycle_day
from llm.pricing import rates_on
from llm.registry import Registry, get_registry

TASKS = (
    "vision_analysis",
    "code_generation",
    "deep_reasoning",
    "fast_evaluation",
    "structured_extraction",
    "classification",
    "summarization",
    "general",
)
BUDGETS = ("low", "medium", "high")

#: Capabilities a task cannot do without.
TASK_NEEDS: dict[str, frozenset[str]] = {
    "vision_analysis": frozenset({"vision"}),
    "deep_reasoning": frozenset({"reasoning"}),
    "structured_extraction": frozenset({"structured_output"}),
}
#: Minimum speed tier for fast_evaluation.
FAST_SPEED = 7
#: The "low" budget prefers models scoring at least this on the task.
MIN_ACCEPTABLE_SCORE = 7.0
#: Points of task score a tenfold blended price must buy ("medium").
PRICE_WEIGHT = 1.0
#: Score for a task a (user-added) model has no score for, if it has no "general" score.
DEFAULT_SCORE = 5.0
#: Capabilities a fallback must share with the model it stands in for.
CORE_CAPABILITIES = ("vision", "tools", "structured_output", "reasoning")
_FLAGS = tuple(
    name for name, field in Capabilities.model_fields.items() if field.annotation is bool
)
_PRICE_FLOOR = Decimal("0.01")


def blended_price(model: ModelInfo, today: dt.date | None = None) -> Decimal:
    """``3 x input + output`` in USD per 1M tokens, at the standard rates in force ``today``."""
    standard = rates_on(model.pricing, today).standard
    return 3 * standard.input + standard.output


def task_score(model: ModelInfo, task: str) -> float:
    """The model's score for ``task``, else its "general" score, else ``DEFAULT_SCORE``."""
    scores = model.task_scores
    return float(scores.get(task, scores.get("general", DEFAULT_SCORE)))


def _log_price(model: ModelInfo, today: dt.date | None = None) -> float:
    return math.log10(max(blended_price(model, today), _PRICE_FLOOR))


def _check_choice(kind: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; expected one of: {', '.join(valid)}")


def _has(model: ModelInfo, capabilities: frozenset[str]) -> bool:
    return all(getattr(model.capabilities, name) for name in capabilities)


def _candidates(
    task: str, today: dt.date, require: frozenset[str], registry: Registry
) -> list[ModelInfo]:
    needs = TASK_NEEDS.get(task, frozenset()) | require
    return [
        model
        for model in registry.models()
        if model.status_on(today) == "active"
        and _has(model, needs)
        and (task != "fast_evaluation" or model.speed >= FAST_SPEED)
    ]


def _sort_key(task: str, budget: str, day: dt.date) -> Callable[[ModelInfo], tuple]:
    def low(model: ModelInfo) -> tuple:
        below_bar = task_score(model, task) < MIN_ACCEPTABLE_SCORE
        legacy = model.lifecycle.legacy
        return (legacy, below_bar, blended_price(model, day), -task_score(model, task), model.name)

    def medium(model: ModelInfo) -> tuple:
        value = task_score(model, task) - PRICE_WEIGHT * _log_price(model, day)
        return (model.lifecycle.legacy, -value, blended_price(model, day), model.name)

    def high(model: ModelInfo) -> tuple:
        legacy = model.lifecycle.legacy
        return (legacy, -task_score(model, task), blended_price(model, day), model.name)

    return {"low": low, "medium": medium, "high": high}[budget]


def rank_models(
    task: str,
    budget: str = "medium",
    *,
    today: dt.date | None = None,
    require: set[str] | None = None,
    registry: Registry | None = None,
) -> list[ModelInfo]:
    """Active models fit for ``task``, best first for ``budget`` (see the module docstring).

    ``require`` adds capability flags (e.g. ``{"tools"}``) every candidate must have.
    Raises ``ValueError`` for an unknown task, budget or capability.
    """
    _check_choice("task", task, TASKS)
    _check_choice("budget", budget, BUDGETS)
    required = frozenset(require or ())
    for name in sorted(required):
        _check_choice("capability", name, _FLAGS)
    day = lifecycle_day(today)
    candidates = _candidates(task, day, required, registry or get_registry())
    return sorted(candidates, key=_sort_key(task, budget, day))


def get_best_model_for_task(
    task: str,
    budget: str = "medium",
    *,
    today: dt.date | None = None,
    registry: Registry | None = None,
) -> str:
    """The canonical name of the best active model for ``task`` within ``budget``.

    Raises ``ValueError`` for an unknown task or budget and :class:`ModelNotFoundError`
    when no active model fits.
    """
    ranked = rank_models(task, budget, today=today, registry=registry)
    if not ranked:
        raise ModelNotFoundError(f"no active model fits task {task!r}")
    return ranked[0].name


def fallback_models(
    model: ModelInfo,
    *,
    today: dt.date | None = None,
    registry: Registry | None = None,
) -> list[ModelInfo]:
    """Active models of the *other* providers that can stand in for ``model``, best first.

    A fallback has every core capability ``model`` has (vision, tools, structured output,
    reasoning). "Best" is the closest match among current models (legacy ones follow):
    smallest ``|general score difference| + PRICE_WEIGHT x |log10 of the blended price ratio|``.
    """
    day = lifecycle_day(today)
    needs = frozenset(name for name in CORE_CAPABILITIES if getattr(model.capabilities, name))
    others = [
        candidate
        for candidate in (registry or get_registry()).models()
        if candidate.provider != model.provider
        and candidate.status_on(day) == "active"
        and _has(candidate, needs)
    ]
    reference_score, reference_price = task_score(model, "general"), _log_price(model, day)

    def distance(candidate: ModelInfo) -> tuple[bool, float, str]:
        score_gap = abs(task_score(candidate, "general") - reference_score)
        price_gap = abs(_log_price(candidate, day) - reference_price)
        return (candidate.lifecycle.legacy, score_gap + PRICE_WEIGHT * price_gap, candidate.name)

    return sorted(others, key=distance)
