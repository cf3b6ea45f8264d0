"""Small server-side SVG charts (no JavaScript, no front-end build). Pure functions that
return SVG markup; every text label is escaped here.

Example:
    >>> svg = line_chart([("PSI", "#c33", [0.1, 0.3])], x_labels=["a", "b"])
    >>> svg.startswith("<svg") and "polyline" in svg
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 220, 48, 12, 14, 34


def _y(v: float, lo: float, hi: float) -> float:
    span = (hi - lo) or 1.0
    return PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / span)


def _frame(lo: float, hi: float, title: str) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" class="axis"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" class="axis"/>',
    ]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = _y(v, lo, hi)
        parts.append(f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" class="tick" text-anchor="end">')
        parts.append(f"{v:.2f}</text>")
    return parts


def line_chart(
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    x_labels: Sequence[str],
    title: str = "",
    thresholds: Sequence[tuple[str, float]] = (),
    lo: float | None = None,
    hi: float | None = None,
) -> str:
    """Lines over evenly spaced points; ``None`` values leave gaps. ``thresholds`` are
    dashed horizontal lines (e.g. the warn and drift PSI levels)."""
    values = [v for _, _, vs in series for v in vs if v is not None] + [t for _, t in thresholds]
    lo = min(values, default=0.0) if lo is None else lo
    hi = max(values, default=1.0) if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    n = max((len(vs) for _, _, vs in series), default=0)
    step = (W - PAD_L - PAD_R) / max(1, n - 1)
    parts = _frame(lo, hi, title)
    for name, value in thresholds:
        y = _y(value, lo, hi)
        parts.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" class="threshold"/>'
            f'<text x="{W - PAD_R}" y="{y - 3:.1f}" class="tick" text-anchor="end">'
            f"{escape(name)}</text>"
        )
    for i, (name, color, vs) in enumerate(series):
        run: list[str] = []
        runs: list[list[str]] = []
        for j, v in enumerate(vs):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{PAD_L + j * step:.1f},{_y(v, lo, hi):.1f}")
        if run:
            runs.append(run)
        for pts in runs:
            parts.append(
                f'<polyline points="{" ".join(pts)}" fill="none" stroke="{escape(color)}" '
                'stroke-width="2"/>'
            )
            if len(pts) == 1:
                cx, cy = pts[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{escape(color)}"/>')
        parts.append(
            f'<text x="{PAD_L + 8 + 150 * i}" y="{H - 6}" fill="{escape(color)}" class="legend">'
            f"{escape(name)}</text>"
        )
    if x_labels:
        for j in sorted({0, len(x_labels) - 1}):
            anchor = "start" if j == 0 else "end"
            parts.append(
                f'<text x="{PAD_L + j * step:.1f}" y="{H - PAD_B + 14}" class="tick" '
                f'text-anchor="{anchor}">{escape(x_labels[j])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def bar_pairs(
    labels: Sequence[str],
    first: tuple[str, str, Sequence[float]],
    second: tuple[str, str, Sequence[float]],
    *,
    title: str = "",
) -> str:
    """Two bars per category (e.g. reference vs current share of each confidence bin)."""
    hi = max([*first[2], *second[2], 0.0]) or 1.0
    n = max(1, len(labels))
    slot = (W - PAD_L - PAD_R) / n
    bar = slot * 0.38
    parts = _frame(0.0, hi, title)
    for k, (_, color, vs) in enumerate((first, second)):
        for j, v in enumerate(vs):
            x = PAD_L + j * slot + slot * 0.1 + k * bar
            y = _y(v, 0.0, hi)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{H - PAD_B - y:.1f}" fill="{escape(color)}"/>'
            )
    for j, label in enumerate(labels):
        parts.append(
            f'<text x="{PAD_L + (j + 0.5) * slot:.1f}" y="{H - PAD_B + 14}" class="tick" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    for k, (name, color, _) in enumerate((first, second)):
        parts.append(
            f'<text x="{PAD_L + 8 + 150 * k}" y="{PAD_T + 4}" fill="{escape(color)}" '
            f'class="legend">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
