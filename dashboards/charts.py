"""Server-drawn SVG charts: bars, histograms with thresholds, line charts and scatter maps.

Drawing on the server keeps the pages working offline with no chart library, makes every chart a plain
element a test (or a browser test) can count, and costs microseconds for the few hundred marks we draw.
Each mark carries a `<title>` so hovering shows its exact value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 720, 260, 56, 36, 12, 12


def _fmt(v: float) -> str:
    if v == 0 or (abs(v) >= 0.01 and abs(v) < 1e5):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:.2e}"


def _svg(body: list[str], cls: str, width: int = W, height: int = H, label: str = "") -> Markup:
    head = (
        f'<svg class="chart {cls}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    )
    return Markup(head + "".join(body) + "</svg>")


def _axes(y_max: float, x_label: str = "", y_label: str = "") -> list[str]:
    out = [
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#888"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#888"/>',
    ]
    for i in range(5):
        v = y_max * i / 4
        y = H - PAD_B - (H - PAD_B - PAD_T) * i / 4
        out.append(f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_fmt(v)}</text>')
    if x_label:
        out.append(
            f'<text x="{(W + PAD_L) / 2}" y="{H - 4}" font-size="11" text-anchor="middle">{escape(x_label)}</text>'
        )
    if y_label:
        out.append(
            f'<text x="12" y="{(H - PAD_B + PAD_T) / 2}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 12 {(H - PAD_B + PAD_T) / 2})">{escape(y_label)}</text>'
        )
    return out


def bar_chart(labels: Sequence[str], values: Sequence[float], *, label: str = "", y_label: str = "") -> Markup:
    """Vertical bars, one `rect.bar` per label (the browser test counts them)."""
    n = max(1, len(values))
    top = max([float(v) for v in values] + [1.0])
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_B - PAD_T
    step = plot_w / n
    body = _axes(top, y_label=y_label)
    for i, (name, v) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * float(v) / top
        x = PAD_L + i * step + step * 0.1
        body.append(
            f'<rect class="bar" data-label="{escape(str(name))}" x="{x:.1f}" y="{H - PAD_B - h:.1f}" '
            f'width="{step * 0.8:.1f}" height="{h:.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{escape(str(name))}: {_fmt(float(v))}</title></rect>"
        )
        body.append(
            f'<text x="{x + step * 0.4:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">'
            f"{escape(str(name)[:14])}</text>"
        )
    return _svg(body, "bars", label=label)


def stacked_bars(labels: Sequence[str], series: dict[str, Sequence[float]], *, label: str = "") -> Markup:
    """Bars per label stacked by series (e.g. kept/rejected per category), with a legend."""
    n = max(1, len(labels))
    totals = [sum(float(s[i]) for s in series.values()) for i in range(len(labels))]
    top = max([*totals, 1.0])
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_B - PAD_T
    step = plot_w / n
    body = _axes(top)
    for i, name in enumerate(labels):
        y = H - PAD_B
        x = PAD_L + i * step + step * 0.1
        for j, (sname, vals) in enumerate(series.items()):
            h = plot_h * float(vals[i]) / top
            y -= h
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(str(name))} {escape(sname)}: '
                f"{_fmt(float(vals[i]))}</title></rect>"
            )
        body.append(
            f'<text x="{x + step * 0.4:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">'
            f"{escape(str(name)[:14])}</text>"
        )
    body += _legend(list(series))
    return _svg(body, "stacked", label=label)


def grouped_bars(
    labels: Sequence[str], series: dict[str, Sequence[float | None]], *, label: str = "", y_label: str = ""
) -> Markup:
    """Bars per label side by side, one per series (before/after per category); a missing value draws no bar.
    Each bar is a `rect.bar` with `data-label` and `data-series` so tests and the browser can find it."""
    n = max(1, len(labels))
    k = max(1, len(series))
    values = [float(v) for vals in series.values() for v in vals if v is not None]
    top = max([*values, 1.0])
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_B - PAD_T
    step = plot_w / n
    width = step * 0.8 / k
    body = _axes(top, y_label=y_label)
    for i, name in enumerate(labels):
        x0 = PAD_L + i * step + step * 0.1
        for j, (sname, vals) in enumerate(series.items()):
            v = vals[i]
            if v is None:
                continue
            h = plot_h * float(v) / top
            body.append(
                f'<rect class="bar" data-label="{escape(str(name))}" data-series="{escape(sname)}" '
                f'x="{x0 + j * width:.1f}" y="{H - PAD_B - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(str(name))} {escape(sname)}: '
                f"{_fmt(float(v))}</title></rect>"
            )
        body.append(
            f'<text x="{x0 + step * 0.4:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">'
            f"{escape(str(name)[:14])}</text>"
        )
    body += _legend(list(series))
    return _svg(body, "grouped", label=label)


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    for j, name in enumerate(names):
        x = W - PAD_R - 130
        y = PAD_T + 4 + 14 * j
        out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 9}" font-size="10">{escape(name)}</text>')
    return out


def histogram(lo: float, hi: float, counts: Sequence[int], thresholds: dict[str, float], *, label: str = "") -> Markup:
    """Equal-width bins over [lo, hi] with a dashed red line at each threshold (`min`/`max` of the rule)."""
    top = max([*counts, 1])
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_B - PAD_T
    n = max(1, len(counts))
    step = plot_w / n
    body = _axes(float(top), x_label=label)
    width = (hi - lo) / n
    for i, c in enumerate(counts):
        h = plot_h * c / top
        a = lo + i * width
        body.append(
            f'<rect class="bin" x="{PAD_L + i * step:.1f}" y="{H - PAD_B - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="#4e79a7"><title>[{_fmt(a)}, {_fmt(a + width)}): {c}</title></rect>'
        )
    for t in (0, n // 2, n):
        body.append(
            f'<text x="{PAD_L + t * step:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">'
            f"{_fmt(lo + t * width)}</text>"
        )
    for name, value in thresholds.items():
        if hi == lo:
            continue
        x = PAD_L + plot_w * (min(max(value, lo), hi) - lo) / (hi - lo)
        body.append(
            f'<line class="threshold" x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{H - PAD_B}" stroke="#d62728" '
            f'stroke-width="2" stroke-dasharray="5,3"><title>{escape(name)} = {_fmt(value)}</title></line>'
        )
        body.append(f'<text x="{x + 3:.1f}" y="{PAD_T + 10}" font-size="10" fill="#d62728">{escape(name)}</text>')
    return _svg(body, "histogram", label=label)


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]], *, x_label: str = "", y_label: str = "", label: str = ""
) -> Markup:
    """One polyline per series over shared axes (loss curves, metrics per step, cases per day)."""
    points = [p for s in series.values() for p in s if all(math.isfinite(v) for v in p)]
    if not points:
        return _svg(['<text x="20" y="40">no data</text>'], "lines", label=label)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y1 = max(p[1] for p in points)
    y0 = min(0.0, min(p[1] for p in points))
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_B - PAD_T
    body = _axes(y1, x_label=x_label, y_label=y_label)

    def px(x: float, y: float) -> str:
        return f"{PAD_L + plot_w * (x - x0) / (x1 - x0):.1f},{H - PAD_B - plot_h * (y - y0) / (y1 - y0):.1f}"

    for t in (0.0, 0.5, 1.0):
        body.append(
            f'<text x="{PAD_L + plot_w * t:.1f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">'
            f"{_fmt(x0 + (x1 - x0) * t)}</text>"
        )
    for j, (name, pts) in enumerate(series.items()):
        good = [p for p in pts if all(math.isfinite(v) for v in p)]
        colour = PALETTE[j % len(PALETTE)]
        body.append(
            f'<polyline class="series" data-name="{escape(name)}" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{" ".join(px(x, y) for x, y in good)}"><title>{escape(name)}</title></polyline>'
        )
        if len(good) <= 60:
            for x, y in good:
                c = px(x, y).split(",")
                body.append(
                    f'<circle cx="{c[0]}" cy="{c[1]}" r="2.5" fill="{colour}"><title>{escape(name)} '
                    f"{_fmt(x)}: {_fmt(y)}</title></circle>"
                )
    body += _legend(list(series))
    return _svg(body, "lines", label=label)


def scatter(points: Sequence[tuple[float, float, str, str]], *, label: str = "") -> Markup:
    """A 2-D map: (x, y, group, sample id); each point is a `circle.pt` with `data-id` for hover thumbnails."""
    if not points:
        return _svg(['<text x="20" y="40">no vectors</text>'], "scatter", label=label)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    groups = sorted({p[2] for p in points})
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    size = 560
    body = []
    for x, y, g, sid in points:
        cx = 10 + (size - 20) * (x - x0) / (x1 - x0)
        cy = 10 + (size - 20) * (1 - (y - y0) / (y1 - y0))
        body.append(
            f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour[g]}" fill-opacity="0.75" '
            f'data-id="{escape(sid)}" data-group="{escape(g)}"/>'
        )
    for j, g in enumerate(groups):
        body.append(f'<rect x="{size + 10}" y="{10 + 16 * j}" width="10" height="10" fill="{colour[g]}"/>')
        body.append(f'<text x="{size + 24}" y="{19 + 16 * j}" font-size="11">{escape(g)}</text>')
    return _svg(body, "scatter", width=size + 160, height=size, label=label)
