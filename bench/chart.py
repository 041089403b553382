"""A self-contained SVG bar chart of the key ratios, one panel per scenario.

Each panel has its own scale (the ratios differ in kind), one bar per measured contender
(this project's rows in blue, the others in grey, missing ones written "n/a") and a dashed
line at the scenario's target.
"""

from __future__ import annotations

from html import escape

from bench.common import Figure

WIDTH = 900
LABEL_W = 210
BAR_W = 430
BAR_H = 18
GAP = 6
TITLE_H = 30
PANEL_GAP = 26
TARGET_LINES = {"rate": 0.95, "realregime": 0.95, "cache": 1.05, "overhead": 0.5, "scale": 1.5}
OURS = (
    "runtime",
    "LLMService, in process",
    "LLMService, actors",
    "batch job",
    "jobs.batch",
    "LLMService gather",
)
COLORS = {"ours": "#2f6db5", "other": "#9a9a9a", "target": "#c0392b", "text": "#222"}


def _text(x: float, y: float, content: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(content)}</text>'


def _is_ours(contender: str) -> bool:
    return contender.startswith(OURS)


def annotation(figure: Figure) -> str:
    """A few raw numbers next to the ratio, where the ratio alone would mislead."""
    raw = figure.raw
    if figure.scenario == "rate" and "ok" in raw:
        return f"  ({raw['ok']}/{raw['requests']} answered, {raw['rate_limited_total']} x 429)"
    if figure.scenario == "realregime" and "timeline" in raw:
        timeline = raw["timeline"]
        return f"  ({timeline.get('throttled')} x 429, {timeline.get('max_in_flight')} in flight)"
    if figure.scenario == "overhead" and "rps" in raw:
        return f"  ({raw['rps']} req/s)"
    return ""


def _panel(title: str, figures: list[Figure], target: float | None, top: float) -> list[str]:
    measured = [f.ratio for f in figures if f.status == "ok" and f.ratio is not None]
    top_value = max([*measured, target or 0.0, 1e-9]) * 1.15
    scale = BAR_W / top_value
    parts = [_text(8, top + 20, title, font_weight="bold", font_size="14")]
    y = top + TITLE_H
    for figure in figures:
        parts.append(_text(LABEL_W - 8, y + 13, figure.contender, text_anchor="end"))
        if figure.status == "ok" and figure.ratio is not None:
            width = max(1.0, figure.ratio * scale)
            color = COLORS["ours"] if _is_ours(figure.contender) else COLORS["other"]
            parts.append(
                f'<rect x="{LABEL_W}" y="{y:.1f}" width="{width:.1f}" height="{BAR_H}" '
                f'fill="{color}"/>'
            )
            label = f"{figure.ratio:.3f}{annotation(figure)}"
            parts.append(_text(LABEL_W + width + 6, y + 13, label))
        else:
            parts.append(_text(LABEL_W + 6, y + 13, "n/a (not measured)", fill="#777"))
        y += BAR_H + GAP
    if target is not None:
        x = LABEL_W + target * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top + TITLE_H - 4:.1f}" x2="{x:.1f}" y2="{y + 10:.1f}" '
            f'stroke="{COLORS["target"]}" stroke-dasharray="4 3" stroke-width="1.5"/>'
        )
        parts.append(_text(x + 4, y + 8, f"target {target}", fill=COLORS["target"]))
    return parts


def panel_height(count: int) -> float:
    return TITLE_H + count * (BAR_H + GAP) + PANEL_GAP


def render_svg(figures: list[Figure], titles: dict[str, str]) -> str:
    """The chart as SVG text."""
    body: list[str] = []
    top = 4.0
    for scenario, title in titles.items():
        panel = [f for f in figures if f.scenario == scenario]
        if not panel:
            continue
        body += _panel(title, panel, TARGET_LINES.get(scenario), top)
        top += panel_height(len(panel))
    height = top + 4
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="sans-serif" font-size="12" '
        f'fill="{COLORS["text"]}">'
    )
    background = f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>'
    return "\n".join([header, background, *body, "</svg>"]) + "\n"
