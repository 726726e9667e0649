"""Line plots as inline SVG for the HTML reports: axes with ticks and tick labels, axis labels, a
legend, and a style per series that stays visible when curves coincide.

Why not matplotlib: onnxcam's runtime dependencies stay onnx, onnxruntime, numpy and OpenCV, and a
report must be one self-contained file. Why the styles: methods often give identical curves
(HiResCAM = Grad-CAM on a GAP head), and a line drawn on top of an identical one hides it. Each
series therefore has its own colour (Okabe-Ito, readable by colour-blind readers), its own dash
pattern (a dashed line over a solid one shows both colours) and its own hollow marker shape; later
series are drawn thinner and with smaller markers, so a curve identical to an earlier one runs
inside it and both stay visible.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999"]
DASHES = ["", "8,5", "2,3", "10,4,2,4", "5,5", "1,4", "14,5", "4,3,1,3"]
MARKERS = ["circle", "square", "triangle", "diamond", "cross", "plus", "down", "x"]


@dataclass
class Style:
    color: str
    dash: str
    marker: str
    size: float = 4.5
    width: float = 2.0


def style(index: int) -> Style:
    """The index-th series' style: colour, dash and marker all change with the index."""
    return Style(COLORS[index % len(COLORS)], DASHES[index % len(DASHES)], MARKERS[index % len(MARKERS)],
                 max(2.5, 6.5 - 1.1 * index), max(1.5, 3.6 - 0.7 * index))


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    style: Style = field(default_factory=lambda: style(0))


def nice_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(most - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)   # the data inside the frame
    return [round(k * step, 10) for k in range(first, max(last, first + 1) + 1)]


def _number(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-9 else "0"


def _marker(kind: str, x: float, y: float, r: float, color: str) -> str:
    common = f'fill="none" stroke="{color}" stroke-width="1.4"'
    if kind == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {common}/>'
    if kind == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {common}/>'
    if kind in ("triangle", "down"):
        s = -1 if kind == "triangle" else 1
        return (f'<polygon points="{x:.1f},{y + s * r * 1.2:.1f} {x - r:.1f},{y - s * r * 0.8:.1f} '
                f'{x + r:.1f},{y - s * r * 0.8:.1f}" {common}/>')
    if kind == "diamond":
        return (f'<polygon points="{x:.1f},{y - r * 1.2:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r * 1.2:.1f} '
                f'{x - r:.1f},{y:.1f}" {common}/>')
    if kind == "plus":
        return f'<path d="M{x - r:.1f},{y:.1f}H{x + r:.1f}M{x:.1f},{y - r:.1f}V{y + r:.1f}" {common}/>'
    return (f'<path d="M{x - r:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}M{x - r:.1f},{y + r:.1f}L{x + r:.1f},'
            f'{y - r:.1f}" {common}/>')   # cross / x


def line_plot(series: list[Series], title: str, xlabel: str, ylabel: str,
              x_ticks: list[float] | None = None, x_tick_labels: list[str] | None = None,
              y_range: tuple[float, float] | None = None, reference: tuple[float, str] | None = None,
              width: int = 460, height: int = 300, markers: bool = True) -> str:
    """One plot as an <svg> element. Non-finite points are left out (the line breaks there).
    reference: (y, label) draws a dotted horizontal line, e.g. a threshold; markers=False draws
    the lines only (histogram steps)."""
    left, right, top, bottom = 58, 14, 30, 46
    pw, ph = width - left - right, height - top - bottom
    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
    xs = x_ticks if x_ticks else nice_ticks(min((p[0] for p in points), default=0.0),
                                             max((p[0] for p in points), default=1.0))
    x_lo, x_hi = min(xs), max(xs)
    if y_range is None:
        ys = [p[1] for p in points] + ([reference[0]] if reference else [])
        y_ticks = nice_ticks(min(0.0, min(ys, default=0.0)), max(ys, default=1.0) or 1.0)
    else:
        y_ticks = nice_ticks(*y_range)
    y_lo, y_hi = min(y_ticks), max(y_ticks)

    def px(x):
        return left + pw * (x - x_lo) / ((x_hi - x_lo) or 1.0)

    def py(y):
        return top + ph * (1 - (y - y_lo) / ((y_hi - y_lo) or 1.0))

    legend_h = 8 + 16 * len(series)
    out = [f'<svg class="plot" width="{width}" height="{height + legend_h}" viewBox="0 0 {width} {height + legend_h}" '
           f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" role="img">',
           f'<title>{html.escape(title)}</title>',
           f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
           f'{html.escape(title)}</text>']
    for k, y in enumerate(y_ticks):   # horizontal grid and y tick labels
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{_number(y)}</text>')
    labels = x_tick_labels or [_number(x) for x in xs]
    for x, text in zip(xs, labels):
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top + ph}" y2="{top + ph + 5}" stroke="#333"/>')
        out.append(f'<text x="{px(x):.1f}" y="{top + ph + 17}" text-anchor="middle" font-size="11">'
                   f'{html.escape(text)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text class="axis-label x" x="{left + pw / 2:.0f}" y="{top + ph + 36}" text-anchor="middle" '
               f'font-size="12">{html.escape(xlabel)}</text>')
    out.append(f'<text class="axis-label y" x="14" y="{top + ph / 2:.0f}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {top + ph / 2:.0f})">{html.escape(ylabel)}</text>')
    if reference is not None:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(reference[0]):.1f}" y2="{py(reference[0]):.1f}" '
                   f'stroke="#b00" stroke-dasharray="1,3" stroke-width="1.5"/>')
        out.append(f'<text x="{left + pw - 4}" y="{py(reference[0]) - 4:.1f}" text-anchor="end" font-size="10" '
                   f'fill="#b00">{html.escape(reference[1])}</text>')
    for s in series:
        st = s.style
        dash = f' stroke-dasharray="{st.dash}"' if st.dash else ""
        for run in _finite_runs(s.xs, s.ys):
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{st.color}" stroke-width="{st.width:g}"{dash}/>')
        finite = [(x, y) for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
        every = max(1, math.ceil(len(finite) / 11))
        offset = series.index(s) % every
        for j, (x, y) in enumerate(finite if markers else ()):
            if j % every == offset or len(finite) <= 11:
                out.append(_marker(st.marker, px(x), py(y), st.size, st.color))
    out.append(f'<g class="legend" font-size="11">')
    for k, s in enumerate(series):
        y = height + 4 + 16 * k
        st = s.style
        dash = f' stroke-dasharray="{st.dash}"' if st.dash else ""
        out.append(f'<line x1="{left}" x2="{left + 34}" y1="{y:.0f}" y2="{y:.0f}" stroke="{st.color}" '
                   f'stroke-width="{st.width:g}"{dash}/>' + (_marker(st.marker, left + 17, y, st.size, st.color)
                                                             if markers else ""))
        out.append(f'<text x="{left + 42}" y="{y + 4:.0f}">{html.escape(s.label)}</text>')
    out.append("</g></svg>")
    return "".join(out)


def histogram(counts: dict[str, list[int]], edges: list[float], title: str, xlabel: str,
              ylabel: str = "images", width: int = 460, height: int = 300) -> str:
    """Histograms over shared bin edges as outlined steps, one style per series (a step drawn over
    an identical one stays visible by its dash), with axes, labels and a legend."""
    series = []
    for k, (label, c) in enumerate(counts.items()):
        xs, ys = [edges[0]], [0.0]
        for i, n in enumerate(c):
            xs += [edges[i], edges[i + 1]]
            ys += [float(n), float(n)]
        xs.append(edges[-1])
        ys.append(0.0)
        series.append(Series(label, xs, ys, style(k)))
    return line_plot(series, title, xlabel, ylabel, x_ticks=nice_ticks(edges[0], edges[-1]), width=width,
                     height=height, markers=False)


def _finite_runs(xs, ys):
    """The series split where a point is not finite (a gap, never a line to a NaN)."""
    run = []
    for x, y in zip(xs, ys):
        if math.isfinite(x) and math.isfinite(y):
            run.append((x, y))
        elif run:
            yield run
            run = []
    if run:
        yield run
