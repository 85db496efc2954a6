"""Small inline SVG charts for the run report: bars (tonight beside last night), histograms with
a threshold line, and trend lines. Hand-built so the report needs no network, no JavaScript and
no plotting library; every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

TONIGHT = "#2b6cb0"
LAST_NIGHT = "#a0aec0"
THRESHOLD = "#c53030"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _number(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{int(value):,}"


def bars(rows: Sequence[tuple[str, float | None, float | None]], width: int = 560) -> str:
    """Horizontal bars, one row per label: tonight (filled) and last night (grey, thin)."""
    if not rows:
        return '<p class="empty">none</p>'
    label_width, row_height = 210, 26
    top = max([v or 0 for _, v, _ in rows] + [p or 0 for _, _, p in rows] + [1])
    plot = width - label_width - 90
    height = row_height * len(rows) + 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" {FONT}>']
    for i, (label, value, previous) in enumerate(rows):
        y = 4 + i * row_height
        parts.append(f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">'
                     f'{escape(label[:34])}</text>')
        w = plot * (value or 0) / top
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{w:.1f}" height="13" '
                     f'fill="{TONIGHT}"><title>{escape(label)}: {_number(value)}</title></rect>')
        if previous is not None:
            pw = plot * previous / top
            parts.append(f'<rect x="{label_width}" y="{y + 17}" width="{pw:.1f}" height="4" '
                         f'fill="{LAST_NIGHT}"><title>last night: {_number(previous)}</title>'
                         '</rect>')
        parts.append(f'<text x="{label_width + w + 4:.1f}" y="{y + 13}">{_number(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(edges: list[float], counts: list[int], previous: list[int] | None = None,
              marker: float | None = None, marker_label: str = "", width: int = 560,
              height: int = 170) -> str:
    """Columns per bin (tonight), last night's counts as an outline, a vertical threshold line."""
    if not counts or not any(counts) and not any(previous or []):
        return '<p class="empty">no values</p>'
    left, bottom, top_pad = 40, 24, 14
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    top = max(counts + (previous or []) + [1])
    lo, hi = edges[0], edges[-1]

    def x(v: float) -> float:
        return left + plot_w * (v - lo) / ((hi - lo) or 1)

    def y(c: float) -> float:
        return top_pad + plot_h * (1 - c / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" {FONT}>',
             f'<line x1="{left}" y1="{y(0)}" x2="{width - 10}" y2="{y(0)}" stroke="#718096"/>',
             f'<text x="{left - 4}" y="{y(top) + 4}" text-anchor="end">{_number(top)}</text>',
             f'<text x="{left - 4}" y="{y(0)}" text-anchor="end">0</text>']
    for i, count in enumerate(counts):
        x0, x1 = x(edges[i]), x(edges[i + 1])
        parts.append(f'<rect x="{x0 + 0.5:.1f}" y="{y(count):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                     f'height="{y(0) - y(count):.1f}" fill="{TONIGHT}"><title>'
                     f'{_number(edges[i])} to {_number(edges[i + 1])}: {count:,}</title></rect>')
    if previous:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(edges[i]):.1f},{y(c):.1f} "
                        f"L{x(edges[i + 1]):.1f},{y(c):.1f}" for i, c in enumerate(previous))
        parts.append(f'<path d="{path}" fill="none" stroke="{LAST_NIGHT}" stroke-width="2"/>')
    for value in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{x(value):.1f}" y="{height - 8}" text-anchor="middle">'
                     f'{_number(value)}</text>')
    if marker is not None and lo <= marker <= hi:
        # the label sits on the side of the line with room for it
        right_half = x(marker) > left + plot_w / 2
        anchor, dx = ("end", -4) if right_half else ("start", 4)
        parts.append(f'<line x1="{x(marker):.1f}" y1="{top_pad - 4}" x2="{x(marker):.1f}" '
                     f'y2="{y(0)}" stroke="{THRESHOLD}" stroke-dasharray="4 3"/>'
                     f'<text x="{x(marker) + dx:.1f}" y="{top_pad + 4}" fill="{THRESHOLD}" '
                     f'text-anchor="{anchor}">{escape(marker_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def trend(labels: list[str], values: list[float | None], width: int = 270,
          height: int = 90) -> str:
    """A line over the last nights, the newest point marked and labelled."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return '<p class="empty">no history</p>'
    left, right, top_pad, bottom = 6, 46, 10, 18
    lo = min(v for _, v in points)
    hi = max(v for _, v in points)
    span = (hi - lo) or max(abs(hi), 1)
    n = max(len(values) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - right) * i / n

    def y(v: float) -> float:
        return top_pad + (height - top_pad - bottom) * (1 - (v - lo) / span)

    path = " ".join(f"{'M' if k == 0 else 'L'}{x(i):.1f},{y(v):.1f}"
                    for k, (i, v) in enumerate(points))
    last_i, last_v = points[-1]
    circles = "".join(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{TONIGHT}">'
                      f'<title>{escape(labels[i])}: {_number(v)}</title></circle>'
                      for i, v in points)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" {FONT}>'
            f'<path d="{path}" fill="none" stroke="{TONIGHT}" stroke-width="1.5"/>{circles}'
            f'<text x="{x(last_i) + 5:.1f}" y="{y(last_v) + 4:.1f}">{_number(last_v)}</text>'
            f'<text x="{left}" y="{height - 4}">{escape(labels[0])}</text>'
            f'<text x="{width - right}" y="{height - 4}" text-anchor="end">'
            f'{escape(labels[-1])}</text></svg>')
