"""Plots as inline SVG strings: line charts and scatter charts with axes, ticks and a legend.

No JavaScript, no CDN: a report that embeds these opens offline in any browser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


@dataclass(frozen=True, slots=True)
class Series:
    """One named set of points. ``dashed`` for predictions; ``labels`` annotate points (scatter)."""

    name: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False
    markers: bool = True
    line: bool = True
    labels: Sequence[str] = field(default_factory=tuple)
    color: str | None = None


@dataclass(frozen=True, slots=True)
class Axes:
    x_label: str
    y_label: str
    title: str = ""
    log_x: bool = False
    log_y: bool = False
    width: int = 640
    height: int = 380
    hlines: Sequence[tuple[float, str]] = ()  # (y, label): reference lines such as an SLO
    vlines: Sequence[tuple[float, str]] = ()


_MARGIN = (64, 24, 40, 56)
_REF = 'stroke="#555" stroke-dasharray="2,3"'  # left, right, top, bottom


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while True:
        ticks.append(round(value, 12))
        if value >= hi - step * 1e-9:
            return ticks
        value += step


def _log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.0e}"
    return f"{value:g}"


class _Scale:
    def __init__(self, lo: float, hi: float, start: float, end: float, log: bool) -> None:
        self.log = log
        if log:
            lo, hi = math.log10(max(lo, 1e-12)), math.log10(max(hi, 1e-12))
        self.lo, self.hi = lo, (hi if hi > lo else lo + 1.0)
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        v = math.log10(max(value, 1e-12)) if self.log else value
        return self.start + (v - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def chart(series: Sequence[Series], axes: Axes) -> str:
    """An SVG chart of ``series`` (lines and/or markers) on shared axes."""
    pts = [p for s in series for p in s.points if all(map(math.isfinite, p))]
    xs = [p[0] for p in pts] + [v for v, _ in axes.vlines]
    ys = [p[1] for p in pts] + [v for v, _ in axes.hlines]
    if axes.log_x:
        xs = [x for x in xs if x > 0]
    if axes.log_y:
        ys = [y for y in ys if y > 0]
    xs = xs or [0.0, 1.0]
    ys = ys or [0.0, 1.0]
    left, right, top, bottom = _MARGIN
    w, h = axes.width, axes.height
    if axes.log_x:
        xt = _log_ticks(min(xs), max(xs))
    else:
        xt = nice_ticks(min(min(xs), 0.0), max(xs))
    yt = _log_ticks(min(ys), max(ys)) if axes.log_y else nice_ticks(min(min(ys), 0.0), max(ys))
    sx = _Scale(xt[0], xt[-1], left, w - right, axes.log_x)
    sy = _Scale(yt[0], yt[-1], h - bottom, top, axes.log_y)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(axes.title or axes.y_label)}">',
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>',
    ]
    if axes.title:
        out.append(f'<text x="{w / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(axes.title)}</text>')
    for t in xt:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{h - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle" font-size="11">{_fmt(t)}</text>')
    for t in yt:
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_fmt(t)}</text>')
    out.append(
        f'<path d="M{left},{top} V{h - bottom} H{w - right}" fill="none" stroke="#333"/>'
        f'<text x="{(left + w - right) / 2}" y="{h - 8}" text-anchor="middle" font-size="12">'
        f"{escape(axes.x_label)}</text>"
        f'<text transform="translate(14,{(top + h - bottom) / 2}) rotate(-90)" text-anchor="middle" '
        f'font-size="12">{escape(axes.y_label)}</text>'
    )
    for value, label in axes.hlines:
        y = sy(value)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" {_REF}/>'
            f'<text x="{w - right - 4}" y="{y - 4:.1f}" text-anchor="end" font-size="11">'
            f"{escape(label)}</text>"
        )
    for value, label in axes.vlines:
        x = sx(value)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{h - bottom}" {_REF}/>'
            f'<text x="{x + 4:.1f}" y="{top + 12}" font-size="11">{escape(label)}</text>'
        )
    for i, s in enumerate(series):
        out.extend(_series(s, s.color or PALETTE[i % len(PALETTE)], sx, sy))
    out.extend(_legend(series, w - right))
    out.append("</svg>")
    return "\n".join(out)


def _series(s: Series, color: str, sx: _Scale, sy: _Scale) -> list[str]:
    pts = [(sx(x), sy(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
    pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])]
    out = [f'<g class="series" data-name="{escape(s.name)}">']
    if s.line and len(pts) > 1:
        dash = ' stroke-dasharray="6,4"' if s.dashed else ""
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
    if s.markers:
        for i, (x, y) in enumerate(pts):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
            if i < len(s.labels) and s.labels[i]:
                out.append(f'<text x="{x + 5:.1f}" y="{y - 5:.1f}" font-size="10">{escape(s.labels[i])}</text>')
    out.append("</g>")
    return out


def _legend(series: Sequence[Series], right: float) -> list[str]:
    out = []
    for i, s in enumerate(series[:12]):
        y = _MARGIN[2] + 6 + 16 * i
        color = s.color or PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="6,4"' if s.dashed else ""
        out.append(
            f'<line x1="{right - 150}" y1="{y}" x2="{right - 130}" y2="{y}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{right - 125}" y="{y + 4}" font-size="11">{escape(s.name[:24])}</text>'
        )
    return out
