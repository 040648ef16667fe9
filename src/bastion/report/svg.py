"""Inline SVG charts, generated here (no JavaScript, no external resources)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
LEVEL_COLOURS = {"low": "#2e7d32", "medium": "#f9a825", "high": "#ef6c00", "critical": "#c62828"}


def _e(x: object) -> str:
    return escape(str(x), quote=True)


def _heat(v: float) -> str:
    """White (0) to dark red (1)."""
    v = min(max(v, 0.0), 1.0)
    r = 255 - int(55 * v)
    g = int(255 * (1 - v) ** 1.2)
    b = int(255 * (1 - v) ** 1.2)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(rows: Sequence[str], cols: Sequence[str], cells: dict[tuple[str, str], tuple[int, int]],
            title: str = "") -> str:
    """ASR heat-map: one cell per (row, col) with `(attempts, successes)`; blank where nothing was tried."""
    cw, ch, left, top = 54, 26, 150, 120
    w, h = left + cw * len(cols) + 20, top + ch * len(rows) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" width="{w}" '
           f'height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">']
    if title:
        out.append(f'<text x="4" y="14" font-size="13" font-weight="bold">{_e(title)}</text>')
    for j, c in enumerate(cols):
        x = left + j * cw + cw / 2
        out.append(f'<text transform="translate({x:.1f},{top - 6}) rotate(-55)" text-anchor="start">{_e(c)}</text>')
    for i, r in enumerate(rows):
        y = top + i * ch
        out.append(f'<text x="{left - 6}" y="{y + ch / 2 + 4:.1f}" text-anchor="end">{_e(r)}</text>')
        for j, c in enumerate(cols):
            x = left + j * cw
            n, k = cells.get((r, c), (0, 0))
            if n == 0:
                out.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="#f3f3f3"/>')
                continue
            v = k / n
            fg = "#fff" if v > 0.5 else "#000"
            out.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{_heat(v)}">'
                       f'<title>{_e(r)} × {_e(c)}: {k}/{n} = {100 * v:.1f}%</title></rect>')
            out.append(f'<text x="{x + cw / 2 - 1:.1f}" y="{y + ch / 2 + 4:.1f}" text-anchor="middle" '
                       f'fill="{fg}">{100 * v:.0f}%</text>')
    out.append(f'<text x="{left}" y="{h - 10}" fill="#555">cell = ASR of the technique on the category; grey = not '
               'tried</text></svg>')
    return "".join(out)


def _nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= raw."""
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))


def line_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], x_label: str, y_label: str,
               title: str = "", x_max: float | None = None, y_max: float | None = None,
               vline: tuple[float, str] | None = None,
               marks: Sequence[tuple[float, float, str]] = (), x_ticks: Sequence[tuple[float, str]] | None = None,
               percent: bool = True, width: int = 620, height: int = 340) -> str:
    """A small multi-series line chart. Points are (x, y); `marks` are labelled highlighted points."""
    left, right, top, bottom = 62, 150, 28, 48
    pw, ph = width - left - right, height - top - bottom
    xs = [x for _, pts in series for x, _ in pts] + [m[0] for m in marks] + ([vline[0]] if vline else [])
    ys = [y for _, pts in series for _, y in pts] + [m[1] for m in marks]
    xmax = x_max if x_max is not None else max(xs + [1e-9]) * 1.05
    if y_max is not None:
        ymax, n_y = y_max, 5
    else:  # a round axis (0, 20, 40, 60%), and a flat-zero series still gets a readable one
        ystep = _nice_step(max(ys + [0.05]) / 5)
        n_y = max(1, math.ceil(max(ys + [0.05]) / ystep - 1e-9))
        ymax = ystep * n_y
    xmin = 0.0 if x_ticks is None else min(t for t, _ in x_ticks)
    xmax = max(xmax, xmin + 1e-9)

    def sx(x: float) -> float:
        return left + (x - xmin) / (xmax - xmin) * pw

    def sy(y: float) -> float:
        return top + ph - y / ymax * ph

    fmt = (lambda v: f"{100 * v:.0f}%") if percent else (lambda v: f"{v:.2g}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">']
    if title:
        out.append(f'<text x="4" y="15" font-size="13" font-weight="bold">{_e(title)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>')
    for i in range(n_y + 1):
        yv = ymax * i / n_y
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 5}" y="{sy(yv) + 4:.1f}" text-anchor="end">{fmt(yv)}</text>')
    ticks = x_ticks if x_ticks is not None else [(xmax * i / 5, fmt(xmax * i / 5)) for i in range(6)]
    for xv, lab in ticks:
        out.append(f'<text x="{sx(xv):.1f}" y="{top + ph + 15}" text-anchor="middle">{_e(lab)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{_e(x_label)}</text>')
    out.append(f'<text transform="translate(14,{top + ph / 2}) rotate(-90)" text-anchor="middle">{_e(y_label)}</text>')
    if vline:
        out.append(f'<line x1="{sx(vline[0]):.1f}" x2="{sx(vline[0]):.1f}" y1="{top}" y2="{top + ph}" '
                   f'stroke="#888" stroke-dasharray="5,4"/><text x="{sx(vline[0]) + 4:.1f}" y="{top + 12}" '
                   f'fill="#555">{_e(vline[1])}</text>')
    for i, (name, pts) in enumerate(series):
        col = PALETTE[i % len(PALETTE)]
        if pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="{path}"/>')
            out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{col}"/>' for x, y in pts)
        ly = top + 12 + 16 * i
        out.append(f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{col}"/>'
                   f'<text x="{left + pw + 24}" y="{ly + 1}">{_e(name)}</text>')
    for x, y, lab in marks:
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="6" fill="none" stroke="#000" stroke-width="2"/>'
                   f'<text x="{sx(x) + 8:.1f}" y="{sy(y) - 8:.1f}" font-weight="bold">{_e(lab)}</text>')
    out.append("</svg>")
    return "".join(out)


def level_strip(levels: Sequence[tuple[str, str]]) -> str:
    """A row of coloured level chips (category, level)."""
    w = 130 * len(levels) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="46" viewBox="0 0 {w} 46" '
           'font-family="sans-serif" font-size="11">']
    for i, (name, lvl) in enumerate(levels):
        x = 5 + 130 * i
        out.append(f'<rect x="{x}" y="4" width="122" height="38" rx="5" fill="{LEVEL_COLOURS.get(lvl, "#999")}"/>'
                   f'<text x="{x + 61}" y="20" text-anchor="middle" fill="#fff">{_e(name)}</text>'
                   f'<text x="{x + 61}" y="35" text-anchor="middle" fill="#fff" font-weight="bold">'
                   f'{_e(lvl.capitalize())}</text>')
    out.append("</svg>")
    return "".join(out)


__all__ = ["heatmap", "line_chart", "level_strip", "LEVEL_COLOURS"]
