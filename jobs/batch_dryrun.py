"""``--dry-run`` of the batch job, and the per-row cost estimate the budget guard uses.

A dry run reads every row, prepares it exactly as the service does (the row's one
:meth:`~jobs.batch_input.RowRequest.request`, built by :mod:`llm.prepare`: same checks, same
typed errors) and, per model, sums rows, estimated prompt tokens
(:func:`llm.providers.common.estimate_prompt_tokens`: exact against the emulator), the
output bound (the sum of ``max_tokens``) and a cost range from the input-only price to
the price with every row using its whole output budget (no caching assumed), and per model
the same upper bound online and at batch prices (:func:`batch_cost_estimates`, the table of
``--mode batch``/``auto``). It calls nothing, starts nothing and writes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from jobs.batch_input import DEFAULT_MODEL, InputItem, InvalidRow, RowRequest
from llm.exceptions import LLMError
from llm.pricing import estimate_cost
from llm.providers.base import ProviderRequest
from llm.providers.common import estimate_prompt_tokens
from llm.providers.factory import output_token_limit

_ZERO = Decimal(0)


def build_request(
    row: RowRequest, *, default_model: str = DEFAULT_MODEL, caching_default: bool = False
) -> ProviderRequest:
    """The provider request the service would build for ``row`` (the row's one prepared
    request, :meth:`RowRequest.request`); raises its typed errors."""
    return row.request(default_model=default_model, caching_default=caching_default)


@dataclass(frozen=True)
class RowEstimate:
    """Prompt tokens, output bound and cost range of one row."""

    model: str
    input_tokens: int
    max_output_tokens: int
    min_cost: Decimal
    max_cost: Decimal


def estimate_row(
    row: RowRequest, *, default_model: str = DEFAULT_MODEL, caching_default: bool = False
) -> RowEstimate:
    """Estimate one row (raises the service's typed error for an invalid row)."""
    request = build_request(row, default_model=default_model, caching_default=caching_default)
    tokens = estimate_prompt_tokens(request)
    output_bound = output_token_limit(request)  # reasoning/thinking allowance included
    return RowEstimate(
        model=request.model.name,
        input_tokens=tokens,
        max_output_tokens=output_bound,
        min_cost=estimate_cost(request.model, tokens, 0).total_cost,
        max_cost=estimate_cost(request.model, tokens, output_bound).total_cost,
    )


def max_cost_or_zero(
    row: RowRequest, *, default_model: str = DEFAULT_MODEL, caching_default: bool = False
) -> Decimal:
    """Upper cost bound of ``row`` for the budget guard (0 if the row will be rejected)."""
    try:
        return estimate_row(
            row, default_model=default_model, caching_default=caching_default
        ).max_cost
    except LLMError:
        return Decimal(0)


@dataclass
class ModelEstimate:
    """Totals of one model's rows."""

    rows: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    min_cost: Decimal = Decimal(0)
    max_cost: Decimal = Decimal(0)

    def add(self, estimate: RowEstimate) -> None:
        self.rows += 1
        self.input_tokens += estimate.input_tokens
        self.max_output_tokens += estimate.max_output_tokens
        self.min_cost += estimate.min_cost
        self.max_cost += estimate.max_cost


@dataclass
class DryRunReport:
    """What a dry run found: per-model totals, invalid rows by error type, duplicates."""

    by_model: dict[str, ModelEstimate] = field(default_factory=dict)
    invalid: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0

    @property
    def valid_rows(self) -> int:
        return sum(m.rows for m in self.by_model.values())

    @property
    def total(self) -> ModelEstimate:
        total = ModelEstimate()
        for m in self.by_model.values():
            total.rows += m.rows
            total.input_tokens += m.input_tokens
            total.max_output_tokens += m.max_output_tokens
            total.min_cost += m.min_cost
            total.max_cost += m.max_cost
        return total


def dry_run(items: Iterable[InputItem], *, default_model: str = DEFAULT_MODEL) -> DryRunReport:
    """Validate and estimate every row; holds only per-model totals and the seen ids."""
    report = DryRunReport()
    seen: set[str] = set()
    for item in items:
        if item.row_id in seen:
            report.duplicates += 1
            continue
        seen.add(item.row_id)
        if isinstance(item, InvalidRow):
            report.invalid[item.error.error_type] += 1
            continue
        try:
            estimate = estimate_row(item, default_model=default_model)
        except LLMError as error:
            report.invalid[error.error_type] += 1
            continue
        report.by_model.setdefault(estimate.model, ModelEstimate()).add(estimate)
    return report


def format_dry_run(report: DryRunReport) -> str:
    """The dry-run table printed by ``--dry-run``."""
    lines = [
        "DRY RUN (nothing is sent)",
        f"{'model':<26}{'rows':>8}{'input tok':>13}{'max output':>13}{'cost range $':>26}",
        "-" * 86,
    ]
    rows = sorted(report.by_model.items(), key=lambda kv: (-kv[1].max_cost, kv[0]))
    for name, m in [*rows, ("TOTAL", report.total)]:
        if name == "TOTAL":
            lines.append("-" * 86)
        cost = f"{m.min_cost:.4f} .. {m.max_cost:.4f}"
        lines.append(
            f"{name[:25]:<26}{m.rows:>8,}{m.input_tokens:>13,}{m.max_output_tokens:>13,}{cost:>26}"
        )
    invalid = sum(report.invalid.values())
    lines.append(f"Invalid rows: {invalid}")
    for error_type, count in sorted(report.invalid.items()):
        lines.append(f"  {error_type}: {count}")
    if report.duplicates:
        lines.append(f"Duplicate ids (skipped): {report.duplicates}")
    return "\n".join(lines)


def batch_cost_estimates(
    rows: Iterable[InputItem], *, default_model: str
) -> dict[str, tuple[Decimal, Decimal]]:
    """Per model: (online, batch) upper cost bound of the valid rows (for the dry run)."""
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for item in rows:
        if isinstance(item, InvalidRow):
            continue
        try:
            request = build_request(item, default_model=default_model)
        except LLMError:
            continue
        tokens = estimate_prompt_tokens(request)
        online = estimate_cost(request.model, tokens, request.max_tokens).total_cost
        batch = estimate_cost(
            request.model, tokens, request.max_tokens, service_tier="batch"
        ).total_cost
        before = out.get(request.model.name, (_ZERO, _ZERO))
        out[request.model.name] = (before[0] + online, before[1] + batch)
    return out


def format_batch_costs(costs: dict[str, tuple[Decimal, Decimal]]) -> str:
    """The dry run's online-vs-batch table (upper bounds)."""
    lines = [
        f"{'model':<26}{'online max $':>16}{'batch max $':>16}{'saving $':>14}",
        "-" * 72,
    ]
    total_online = total_batch = _ZERO
    for name, (online, batch) in sorted(costs.items(), key=lambda kv: -kv[1][0]):
        total_online += online
        total_batch += batch
        lines.append(f"{name[:25]:<26}{online:>16.4f}{batch:>16.4f}{online - batch:>14.4f}")
    lines.append("-" * 72)
    lines.append(
        f"{'TOTAL':<26}{total_online:>16.4f}{total_batch:>16.4f}{total_online - total_batch:>14.4f}"
    )
    return "\n".join(lines)
