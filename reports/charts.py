"""Charts as inline SVG: the report works offline and prints (HTML and PDF) with no script.

Two shapes are enough for a QC manager: scores as bars with their 95 % interval, and a score's
trend over runs. Text in the SVG uses the page's font, so Chinese labels render wherever the page does.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

GOOD, WARN, BAD, INK, GRID = "#2e7d32", "#f9a825", "#c62828", "#37474f", "#cfd8dc"


def colour(score: float | None) -> str:
    if score is None:
        return GRID
    return GOOD if score >= 99 else WARN if score >= 95 else BAD


def bars(items: Sequence[tuple[str, float | None, float | None, float | None]], *, width: int = 640,
         label_width: int = 190, row: int = 22, lo: float = 0.0) -> str:
    """Horizontal bars, one per (label, score, low, high), on a ``lo``–100 axis."""
    if not items:
        return ""
    plot = width - label_width - 60
    height = row * len(items) + 24

    def x(v: float) -> float:
        return label_width + plot * (max(lo, min(100.0, v)) - lo) / (100.0 - lo)

    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" class="chart">']
    for t in (lo, lo + (100 - lo) / 2, 100.0):
        out.append(f'<line x1="{x(t):.1f}" y1="0" x2="{x(t):.1f}" y2="{height - 18}" stroke="{GRID}"/>'
                   f'<text x="{x(t):.1f}" y="{height - 4}" font-size="10" text-anchor="middle" fill="{INK}">{t:g}</text>')
    for i, (label, score, low, high) in enumerate(items):
        y = i * row + 4
        out.append(f'<text x="{label_width - 6}" y="{y + 13}" font-size="11" text-anchor="end" fill="{INK}">'
                   f'{escape(_clip(label, 18))}</text>')
        if score is None:
            out.append(f'<text x="{label_width + 4}" y="{y + 13}" font-size="11" fill="{INK}">无数据 no data</text>')
            continue
        out.append(f'<rect x="{label_width}" y="{y + 3}" width="{x(score) - label_width:.1f}" height="{row - 8}" '
                   f'fill="{colour(score)}"/>')
        if low is not None and high is not None and high > low:
            out.append(f'<line x1="{x(low):.1f}" y1="{y + row / 2 - 1}" x2="{x(high):.1f}" y2="{y + row / 2 - 1}" '
                       f'stroke="{INK}" stroke-width="1.5"/>')
        out.append(f'<text x="{x(score) + 4:.1f}" y="{y + 13}" font-size="11" fill="{INK}">{score:.1f}</text>')
    out.append("</svg>")
    return "".join(out)


def trend(points: Sequence[tuple[str, float | None]], *, width: int = 640, height: int = 160, lo: float | None = None) -> str:
    """A line of a score over runs (oldest first); the axis starts near the lowest value so that a
    change of a point is visible, and says where it starts."""
    values = [v for _, v in points if v is not None]
    if len(values) < 2:
        return '<p class="muted">运行次数不足，暂无趋势 — not enough runs for a trend yet</p>'
    lo = lo if lo is not None else max(0.0, min(values) - 2)
    hi = 100.0
    left, right, top, bottom = 40, 10, 10, 22
    pw, ph = width - left - right, height - top - bottom
    n = len(points)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + pw * (i / (n - 1)), top + ph * (1 - (v - lo) / (hi - lo or 1))

    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" class="chart">']
    for t in (lo, (lo + hi) / 2, hi):
        _, y = xy(0, t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
                   f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end" fill="{INK}">{t:.0f}</text>')
    path = " ".join(f"{xy(i, v)[0]:.1f},{xy(i, v)[1]:.1f}" for i, (_, v) in enumerate(points) if v is not None)
    out.append(f'<polyline points="{path}" fill="none" stroke="{INK}" stroke-width="1.5"/>')
    for i, (label, v) in enumerate(points):
        if v is None:
            continue
        px, py = xy(i, v)
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour(v)}"><title>{escape(label)}: {v:.2f}'
                   f'</title></circle>')
    for i, anchor in ((0, "start"), (n - 1, "end")):  # first and last run, inside the frame
        px, _ = xy(i, lo)
        out.append(f'<text x="{px:.1f}" y="{height - 6}" font-size="10" text-anchor="{anchor}" fill="{INK}">'
                   f'{escape(points[i][0])}</text>')
    out.append("</svg>")
    return "".join(out)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
