"""Registry record types: what we know about one model (prices, limits, capabilities, lifecycle).

These are plain frozen values; :mod:`llm.registry` loads them from ``llm/data/models.toml``
(plus a user's own file) and answers look-ups. Prices are USD per million tokens as
:class:`~decimal.Decimal`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Provider = Literal["anthropic", "openai", "google"]
#: How a model takes a reasoning budget:
#: anthropic_budget (thinking.budget_tokens), openai_effort (reasoning_effort),
#: gemini_budget (thinkingConfig.thinkingBudget), gemini_level (thinkingConfig.thinkingLevel).
ReasoningStyle = Literal["anthropic_budget", "openai_effort", "gemini_budget", "gemini_level"]
LifecycleStatus = Literal["active", "deprecated", "retired"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceTier(_Frozen):
    """One set of per-million-token rates."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None


class Pricing(_Frozen):
    """Standard rates, an optional long-context tier, explicit-cache storage, provenance."""

    standard: PriceTier
    #: Prompts with more input tokens than this are billed entirely at ``long_context``.
    long_context_threshold: int | None = None
    long_context: PriceTier | None = None
    #: Gemini explicit caches: USD per million tokens per hour of storage.
    cache_storage_per_hour: Decimal | None = None
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


class Lifecycle(_Frozen):
    status: LifecycleStatus = "active"
    deprecated_on: dt.date | None = None
    retires_on: dt.date | None = None
    replacement: str | None = None
    note: str = ""

    def status_on(self, today: dt.date) -> LifecycleStatus:
        """The status on ``today``: past the retirement date means retired."""
        if self.retires_on is not None and today >= self.retires_on:
            return "retired"
        if self.status == "retired":
            return "retired"
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
        return self.lifecycle.status_on(today or dt.date.today())
