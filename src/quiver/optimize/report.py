"""The report: a terminal table and a self-contained HTML page (inline SVG, no scripts) with the Pareto
plots of accuracy vs batch-1 latency and accuracy vs size; kept variants green, rejected grey, the Pareto
front joined by a line."""

from __future__ import annotations

import html
from pathlib import Path

from quiver.optimize.passes.prune import SIZE_ONLY_NOTE
from quiver.optimize.pipeline import Result, Variant


def rows(result: Result) -> list[Variant]:
    return [result.baseline, *result.variants]


def table(result: Result) -> str:
    base = result.baseline.timing
    head = [
        "variant",
        "metric",
        "drop",
        "p50 b1 ms",
        "p99 b1 ms",
        "speedup",
        "best b",
        "rows/s",
        "MB",
        "kept",
        "reason",
    ]
    body = []
    for v in rows(result):
        t = v.timing
        metric = f"{v.scores.primary} {v.scores.value:.2f}" if v.scores else "-"
        body.append(
            [
                v.name,
                metric,
                f"{v.drop:.2f}" if v.scores else "-",
                _ms(t.p50_b1_ms) if t else "-",
                _ms(t.p99_b1_ms) if t else "-",
                f"{(t.speedup_b1 or base.p50_b1_ms / t.p50_b1_ms):.2f}x" if t and base else "-",
                str(t.best_batch) if t else "-",
                f"{t.throughput:.0f}" if t else "-",
                f"{t.size_bytes / 1e6:.1f}" if t else "-",
                "yes" if v.kept else "no",
                v.reason,
            ]
        )
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines = [fmt.format(*head), fmt.format(*["-" * w for w in widths], "-" * 6)]
    lines += [fmt.format(*r) for r in body]
    m = result.machine
    feats = ", ".join(k for k, on in m.get("features", {}).items() if on) or "none"
    lines += ["", f"machine: {m.get('cpu')} ({m.get('cores')} cores); features: {feats}"]
    lines += [f"  {n}" for n in m.get("notes", [])]
    if any(SIZE_ONLY_NOTE in v.notes for v in result.variants):
        lines.append(f"note: sparsify = {SIZE_ONLY_NOTE}")
    return "\n".join(lines)


def _ms(x: float) -> str:
    return f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x and higher y are better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _plot(vs: list[Variant], x_of: str, x_label: str, y_label: str) -> str:
    pts = [
        (getattr(v.timing, x_of) / (1e6 if x_of == "size_bytes" else 1), v.scores.value, v)
        for v in vs
        if v.timing and v.scores
    ]
    if not pts:
        return "<p>No measured variants.</p>"
    w, h, pad = 560, 340, 56
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = 0.0, max(xs) * 1.1
    y0, y1 = min(ys) - 0.5, max(ys) + 0.5
    sx = lambda x: pad + (x - x0) / (x1 - x0 or 1) * (w - 2 * pad)  # noqa: E731
    sy = lambda y: h - pad - (y - y0) / (y1 - y0 or 1) * (h - 2 * pad)  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="#fff"/>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
        f'<text x="{w / 2}" y="{h - 14}" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">'
        f"{html.escape(y_label)}</text>",
    ]
    for k in range(5):
        xv, yv = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        out.append(f'<text x="{sx(xv):.0f}" y="{h - pad + 16}" text-anchor="middle">{xv:.3g}</text>')
        out.append(f'<text x="{pad - 6}" y="{sy(yv) + 4:.0f}" text-anchor="end">{yv:.2f}</text>')
    front = pareto([(p[0], p[1]) for p in pts])
    line = " ".join(f"{sx(pts[i][0]):.1f},{sy(pts[i][1]):.1f}" for i in front)
    out.append(f'<polyline points="{line}" fill="none" stroke="#2a7" stroke-dasharray="4 3"/>')
    for x, y, v in pts:
        color = "#1a73e8" if v.recipe == "" else ("#2a7" if v.kept else "#aaa")
        out.append(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" fill="{color}"><title>'
            f"{html.escape(v.name)}: {y:.2f} at {x:.3g} — {html.escape(v.reason)}</title></circle>"
        )
        out.append(f'<text x="{sx(x) + 8:.1f}" y="{sy(y) - 6:.1f}" fill="#444">{html.escape(v.name[:28])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _row(v: Variant) -> str:
    t, s = v.timing, v.scores
    cells = [html.escape(v.name)]
    cells += [f"{s.value:.2f}", f"{v.drop:.2f}"] if s else ["-", "-"]
    if t:
        cells += [_ms(t.p50_b1_ms), _ms(t.p99_b1_ms), str(t.best_batch), f"{t.throughput:.0f}"]
        cells += [f"{t.size_bytes / 1e6:.2f}", f"{t.peak_mem_mb:.0f}"]
    else:
        cells += ["-"] * 6
    extra = ", ".join(f"{k} {val:.3g}" for k, val in (s.values.items() if s else []))
    cells += ["yes" if v.kept else "no", html.escape(v.reason), html.escape(extra)]
    return f"<tr class={'kept' if v.kept else 'rej'}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


_STYLE = """body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
tr.kept td:first-child{color:#197a4b;font-weight:bold} tr.rej{color:#777} .plots{display:flex;flex-wrap:wrap;gap:1em}"""
_HEAD = (
    "variant",
    "{primary}",
    "drop",
    "p50 b1 ms",
    "p99 b1 ms",
    "best batch",
    "rows/s",
    "MB",
    "peak MB",
    "kept",
    "reason",
    "all metrics",
)


def html_page(result: Result) -> str:
    vs = rows(result)
    primary = result.baseline.scores.primary if result.baseline.scores else "metric"
    m = result.machine
    feats = ", ".join(f"<b>{k}</b>" if on else f"<s>{k}</s>" for k, on in m.get("features", {}).items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in m.get("notes", []))
    if any(SIZE_ONLY_NOTE in v.notes for v in result.variants):
        notes += f"<li>sparsify: {html.escape(SIZE_ONLY_NOTE)}</li>"
    head = "".join(f"<th>{html.escape(h.format(primary=primary))}</th>" for h in _HEAD)
    name = html.escape(result.model)
    s = result.settings
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>quiver optimize: {name}</title>
<style>{_STYLE}</style></head><body>
<h1>{name}: {len(result.kept)} of {len(result.variants)} variants kept</h1>
<p>Task <b>{html.escape(result.task)}</b>, primary metric <b>{html.escape(primary)}</b> (points, higher is
better), allowed drop {s.max_drop}; a variant must be at least {s.min_speedup}x faster (batch-1 p50 or
throughput) than the fp32 baseline. Blue: baseline, green: kept, grey: rejected; dashed: Pareto front.</p>
<div class=plots>{_plot(vs, "p50_b1_ms", "p50 latency at batch 1 (ms)", primary)}
{_plot(vs, "size_bytes", "model size (MB)", primary)}</div>
<table><tr>{head}</tr>{"".join(_row(v) for v in vs)}</table>
<p>Machine: {html.escape(str(m.get("cpu")))}, {m.get("cores")} cores, {s.threads} threads.
CPU features: {feats}</p>
<ul>{notes}</ul></body></html>
"""


def write_html(result: Result, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(result), encoding="utf-8")
    return path
