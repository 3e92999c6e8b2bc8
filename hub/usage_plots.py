"""Bar charts of the usage report as inline SVG (pure): no JavaScript, no plotting library.

Labels come from the records (group, profile and user names) and are escaped here, in
text and in attributes alike, so the page may insert the SVG as it is.
"""

from __future__ import annotations

from html import escape

BAR_HEIGHT = 18
GAP = 6
LABEL_WIDTH = 170
BAR_WIDTH = 360
VALUE_WIDTH = 90
TOP = 28
LABEL_CHARS = 24
MAX_BARS = 40


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _number(value: float) -> str:
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def bar_chart_svg(title: str, unit: str, bars: list[tuple[str, float]], chart_id: str) -> str:
    """A horizontal bar chart of ``bars`` ((label, value), drawn in that order; the first
    ``MAX_BARS``), titled ``title``, values in ``unit``. Labels that are empty read
    "(none)"; long ones are cut, with the full label as the bar's tooltip."""
    shown = bars[:MAX_BARS]
    largest = max((value for _, value in shown), default=0.0)
    height = TOP + max(1, len(shown)) * (BAR_HEIGHT + GAP) + GAP
    if len(bars) > MAX_BARS:
        height += 16
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="kh-usage-chart" id="{escape(chart_id)}"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    if not shown:
        parts.append(f'<text x="0" y="{TOP + BAR_HEIGHT - 4}" font-size="12">no usage</text>')
    for index, (label, value) in enumerate(shown):
        y = TOP + index * (BAR_HEIGHT + GAP)
        length = BAR_WIDTH * value / largest if largest > 0 else 0.0
        name = label or "(none)"
        parts.append(
            f'<g class="kh-bar" data-label="{escape(name)}"><title>{escape(name)}: '
            f"{_number(value)} {escape(unit)}</title>"
            f'<text x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT - 4}" text-anchor="end"'
            f' font-size="12">{escape(_short(name))}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}"'
            ' fill="#f37726"></rect>'
            f'<text x="{LABEL_WIDTH + length + 4:.1f}" y="{y + BAR_HEIGHT - 4}"'
            f' font-size="12">{_number(value)}</text></g>'
        )
    if len(bars) > MAX_BARS:
        parts.append(
            f'<text x="0" y="{height - 2}" font-size="11">and {len(bars) - MAX_BARS} more'
            " (see the table)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
