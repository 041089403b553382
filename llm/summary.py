"""The text of a cost summary, in the product brief's format.

Shared by :meth:`LLMService.print_cost_summary` (in-process :class:`~llm.cost.CostTracker`
stats) and the ledger-backed summary of batch jobs: both pass the same ``stats`` shape
(see :meth:`CostTracker.get_stats`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

WIDTH = 60


def _money(value: Decimal | float | int) -> str:
    return f"${Decimal(str(value)):.4f}"


def _model_block(name: str, entry: dict[str, Any]) -> list[str]:
    return [
        "",
        f"{name}:",
        f"  Requests: {entry['requests']:,}",
        f"  Total Cost: {_money(entry['total_cost'])}",
        f"  Avg Cost: {_money(entry['avg_cost'])}",
        f"  Tokens: {entry['total_tokens']:,} (Input: {entry['input_tokens']:,}, "
        f"Output: {entry['output_tokens']:,}, Cached: {entry['cached_tokens']:,})",
    ]


def format_cost_summary(stats: dict[str, Any]) -> str:
    """The summary block for ``stats`` (ends without a trailing newline)."""
    lines = [
        "=" * WIDTH,
        "LLM COST SUMMARY",
        "=" * WIDTH,
        f"Total Cost: {_money(stats['total_cost'])}",
        f"Total Requests: {stats['total_requests']:,}",
        f"Total Tokens: {stats['total_tokens']:,}",
        f"Avg Cost/Request: {_money(stats['avg_cost'])}",
        "",
        "By Model:",
        "-" * WIDTH,
    ]
    for name, entry in stats.get("by_model", {}).items():
        lines.extend(_model_block(name, entry))
    lines.append("=" * WIDTH)
    return "\n".join(lines)
