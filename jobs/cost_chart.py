"""The cost chart of ``python -m jobs.costs LEDGER --plot FILE``, drawn with matplotlib.

One bar per day, stacked by model: what was paid. On top of each bar, hatched, what prompt
caching saved that day (the ledger's ``cache_savings``: the price of the cached tokens at the
full input rate minus what was paid for them), so the whole bar is what the day would have
cost without caching. The title carries the totals.

:func:`chart_data` aggregates the ledger (a stream of tables, so memory stays bounded) into
exact Decimal sums per model and day; :func:`write_chart` renders by the file's extension:
``.png``, ``.svg``, or ``.html`` (a self-contained page with the SVG inline and a table of
totals per model). matplotlib's object API is used (no ``pyplot``, no global state, no
display needed).
"""

from __future__ import annotations

import html
import io
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

FORMATS = ("png", "svg", "html")

_ZERO = Decimal(0)


@dataclass
class CostChartData:
    """Cost per model per day and cache savings per day, exact."""

    cost: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    savings: dict[str, Decimal] = field(default_factory=dict)

    @property
    def days(self) -> list[str]:
        """Every day with a row, in order (``YYYY-MM-DD``)."""
        found = set(self.savings)
        for days in self.cost.values():
            found.update(days)
        return sorted(found)

    @property
    def models(self) -> list[str]:
        """Models, the most expensive first (the bottom of each stack)."""
        return sorted(self.cost, key=lambda m: (-sum(self.cost[m].values(), _ZERO), m))

    def model_total(self, model: str) -> Decimal:
        """What ``model`` cost over the whole range."""
        return sum(self.cost[model].values(), _ZERO)

    @property
    def total_cost(self) -> Decimal:
        """What was paid."""
        return sum((self.model_total(m) for m in self.cost), _ZERO)

    @property
    def total_savings(self) -> Decimal:
        """What caching saved."""
        return sum(self.savings.values(), _ZERO)


def chart_data(tables: pa.Table | Iterable[pa.Table]) -> CostChartData:
    """Sum ``total_cost`` by (model, day) and ``cache_savings`` by day.

    ``tables`` are ledger tables with a ``day`` column (:func:`jobs.costs.scan`).
    """
    cost: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    savings: dict[str, Decimal] = defaultdict(Decimal)
    for table in [tables] if isinstance(tables, pa.Table) else tables:
        if table.num_rows == 0:
            continue
        grouped = table.group_by(["model", "day"]).aggregate(
            [("total_cost", "sum"), ("cache_savings", "sum")]
        )
        for row in grouped.to_pylist():
            cost[row["model"] or "-"][row["day"]] += Decimal(row["total_cost_sum"] or 0)
            savings[row["day"]] += Decimal(row["cache_savings_sum"] or 0)
    return CostChartData(
        cost={model: dict(days) for model, days in cost.items()}, savings=dict(savings)
    )


def figure(data: CostChartData, title: str = "LLM cost per day") -> Any:
    """The chart as a matplotlib ``Figure``."""
    from matplotlib.figure import Figure

    days, models = data.days, data.models
    fig = Figure(figsize=(max(8.0, min(0.45 * len(days) + 4, 20.0)), 5.2), layout="constrained")
    ax = fig.add_subplot()
    colors = _colors(len(models))
    positions = list(range(len(days)))
    bottom = [0.0] * len(days)
    for model, color in zip(models, colors, strict=True):
        heights = [float(data.cost[model].get(day, _ZERO)) for day in days]
        ax.bar(positions, heights, bottom=bottom, color=color, label=model, width=0.75)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    saved = [float(data.savings.get(day, _ZERO)) for day in days]
    if any(saved):
        ax.bar(
            positions,
            saved,
            bottom=bottom,
            width=0.75,
            color="none",
            edgecolor="#2a9d8f",
            hatch="///",
            linewidth=0.8,
            label="saved by prompt caching",
        )
    step = max(1, math.ceil(len(days) / 16))
    ax.set_xticks(positions[::step], [day for day in days[::step]], rotation=45, ha="right")
    ax.set_ylabel("USD")
    peak = max((b + v for b, v in zip(bottom, saved, strict=True)), default=0.0)
    decimals = 2 if peak >= 0.5 else 4
    ax.yaxis.set_major_formatter(lambda value, _pos: f"${value:,.{decimals}f}")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    if not days:
        ax.text(0.5, 0.5, "no ledger rows", ha="center", va="center", transform=ax.transAxes)
    paid, saved_total = data.total_cost, data.total_savings
    share = f" ({saved_total / (paid + saved_total):.0%} of the uncached cost)" if paid else ""
    subtitle = f"paid ${paid:,.4f} · saved by prompt caching ${saved_total:,.4f}{share}"
    ax.set_title(f"{title}\n{subtitle}".replace("$", r"\$"), fontsize=11)  # no mathtext
    if models or any(saved):
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
            ncols=2 if len(models) > 16 else 1,
        )
    return fig


def write_chart(data: CostChartData, path: str | Path, title: str = "LLM cost per day") -> Path:
    """Render to ``path``; the format is its extension (png, svg or html)."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    kind = "html" if kind == "htm" else kind
    if kind not in FORMATS:
        raise ValueError(f"--plot FILE must end in .{', .'.join(FORMATS)} (got {path.name!r})")
    from matplotlib import rc_context

    fig = figure(data, title)
    if kind == "png":
        fig.savefig(path, format="png", dpi=110)
        return path
    with rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, searchable
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    if kind == "svg":
        path.write_text(svg, encoding="utf-8")
    else:
        path.write_text(_html_page(data, title, svg), encoding="utf-8")
    return path


def _html_page(data: CostChartData, title: str, svg: str) -> str:
    svg = svg[svg.index("<svg") :]  # drop the XML prologue and doctype
    rows = "".join(
        f"<tr><td>{html.escape(model)}</td><td>${data.model_total(model):.4f}</td></tr>"
        for model in data.models
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}</style></head>"
        f"<body><h2>{html.escape(title)}</h2>{svg}"
        f"<table><tr><th>model</th><th>cost</th></tr>{rows}"
        f"<tr><td>saved by caching</td><td>${data.total_savings:.4f}</td></tr></table>"
        "</body></html>"
    )


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab20" if n > 10 else "tab10"]
    return [palette(i % palette.N) for i in range(n)]
