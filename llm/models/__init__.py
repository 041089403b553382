"""Registry record types: what we know about one model (prices, limits, capabilities, lifecycle).

These are plain frozen values; :mod:`llm.registry` loads them from ``llm/data/models.toml``
(plus a user's own file) and answers look-ups. Prices are USD per million tokens as
:class:`~decimal.Decimal`. ``python -m llm.models`` lists the models: the package's
``__main__`` runs :mod:`llm.models_cli`, which depends on these types, not the reverse.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Provider = Literal["anthropic", "openai", "google"]
#: How a model takes a reasoning budget:
#: anthropic_budget (thinking.budget_tokens), openai_effort (reasoning_effort),
#: gemini_budget (thinkingConfig.thinkingBudget), gemini_level (thinkingConfig.thinkingLevel).
ReasoningStyle = Literal["anthropic_budget", "openai_effort", "gemini_budget", "gemini_level"]
LifecycleStatus = Literal["active", "deprecated", "retired"]
#: A model retiring within this many days counts as deprecated, whatever its deprecation date.
RETIREMENT_NOTICE = dt.timedelta(days=30)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceTier(_Frozen):
    """One set of per-million-token rates."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None


class PriceChange(_Frozen):
    """Rates that replace the model's rates from ``effective_from`` (a UTC date) on."""

    effective_from: dt.date
    standard: PriceTier
    #: The long-context tier from that date (the threshold stays the model's).
    long_context: PriceTier | None = None


class Pricing(_Frozen):
    """Standard rates, an optional long-context tier, explicit-cache storage, provenance.

    ``standard``/``long_context`` are the rates in force before the first of ``changes``
    (dated price changes, such as an introductory price ending); :func:`llm.pricing.rates_on`
    picks the rates in force on a given day.
    """

    standard: PriceTier
    #: Prompts with more input tokens than this are billed entirely at ``long_context``.
    long_context_threshold: int | None = None
    long_context: PriceTier | None = None
    #: Later rates, by date (sorted on load).
    changes: tuple[PriceChange, ...] = ()

    @field_validator("changes")
    @classmethod
    def _by_date(cls, changes: tuple[PriceChange, ...]) -> tuple[PriceChange, ...]:
        ordered = tuple(sorted(changes, key=lambda change: change.effective_from))
        days = [change.effective_from for change in ordered]
        if len(set(days)) != len(days):
            raise ValueError("pricing.changes has two changes on the same date")
        return ordered

    #: Gemini explicit caches: USD per million tokens per hour of storage.
    cache_storage_per_hour: Decimal | None = None
    #: Batch APIs: whether cache reads are halved (``halved``) or stay at the online rate
    #: (``standard``); unset: the provider's rule (:func:`llm.pricing.batch_tier`).
    batch_cache_read_rule: Literal["halved", "standard"] | None = None
    #: Batch APIs: a published (rounded) cached-input rate for short prompts that overrides
    #: the rule (OpenAI publishes $0.13 where half of $0.25 would be $0.125).
    batch_cache_read: Decimal | None = None
    source: str = ""
    checked: dt.date | None = None


class Capabilities(_Frozen):
    vision: bool = False
    tools: bool = False
    structured_output: bool = False
    reasoning: bool = False
    reasoning_style: ReasoningStyle | None = None
    #: Reasoning cannot be switched off (o-series, Gemini 2.5 Pro).
    reasoning_always_on: bool = False
    caching: bool = False
    #: Shortest prefix the provider will cache, in tokens.
    min_cacheable_tokens: int | None = None
    #: The model rejects temperature/top_p (OpenAI reasoning models).
    sampling_params: bool = True


def lifecycle_day(today: dt.date | None = None) -> dt.date:
    """The day lifecycles are judged on: ``today`` when given, else the current UTC day. The
    one place the registry reads the calendar (``LLMService(today=...)`` and the tests pin a
    day; ``tests/conftest.py`` flags a test that lets a retiring model meet the real one)."""
    return today if today is not None else dt.datetime.now(dt.UTC).date()


class Lifecycle(_Frozen):
    status: LifecycleStatus = "active"
    deprecated_on: dt.date | None = None
    retires_on: dt.date | None = None
    replacement: str | None = None
    #: Still served but superseded (the provider's "legacy"/"previous" models): recommendations
    #: and fallbacks rank it after current models; no warning is shown.
    legacy: bool = False
    note: str = ""

    def status_on(self, today: dt.date) -> LifecycleStatus:
        """The status on ``today``: past the retirement date means retired; within
        :data:`RETIREMENT_NOTICE` of it means deprecated even before ``deprecated_on``."""
        if self.retires_on is not None and today >= self.retires_on:
            return "retired"
        if self.status == "retired":
            return "retired"
        if self.retires_on is not None and self.retires_on - today <= RETIREMENT_NOTICE:
            return "deprecated"
        if self.deprecated_on is not None:
            return "deprecated" if today >= self.deprecated_on else "active"
        if self.retires_on is not None:  # a shutdown date is announced: deprecated until then
            return "deprecated"
        return self.status


class ModelInfo(_Frozen):
    """Everything the registry knows about one model."""

    #: Canonical name, as users write it (``claude-sonnet-4.5``).
    name: str
    provider: Provider
    #: The id sent on the wire (``claude-sonnet-4-5``).
    api_id: str
    aliases: tuple[str, ...] = ()
    context_window: int
    max_output_tokens: int
    pricing: Pricing
    capabilities: Capabilities = Field(default_factory=Capabilities)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    #: Relative quality per task (0..10) used by the recommendation policy.
    task_scores: dict[str, float] = Field(default_factory=dict)
    #: Relative speed tier (higher is faster), used for fast_evaluation.
    speed: int = 5

    def status_on(self, today: dt.date | None = None) -> LifecycleStatus:
        return self.lifecycle.status_on(lifecycle_day(today))
