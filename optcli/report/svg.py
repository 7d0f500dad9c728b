"""Inline SVG charts for report.html: no script, no external asset, readable in any browser offline."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from optcli.report.tables import number

WIDTH, LABEL, ROW, TOP = 760, 200, 34, 26
_POINTS = 300  # a strip of at most this many dots per engine: enough to see the shape, small file


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class _Scale:
    """Milliseconds to x pixels; logarithmic when the values span more than a factor of 10."""

    def __init__(self, low: float, high: float) -> None:
        low = max(low, 1e-6)
        high = max(high, low * 1.01)
        self.log = high / low > 10
        self.low, self.high = (math.log10(low), math.log10(high)) if self.log else (0.0, high)
        if self.log:
            self.low, self.high = self.low - 0.05, self.high + 0.05
        else:
            self.high *= 1.05

    def __call__(self, ms: float) -> float:
        value = math.log10(max(ms, 1e-6)) if self.log else ms
        share = (value - self.low) / ((self.high - self.low) or 1.0)
        return LABEL + min(max(share, 0.0), 1.0) * (WIDTH - LABEL - 20)

    def ticks(self) -> list[float]:
        if self.log:
            return [10**e for e in range(math.floor(self.low), math.ceil(self.high) + 1)]
        rough = self.high / 5
        magnitude = 10 ** math.floor(math.log10(rough)) if rough > 0 else 1.0
        step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough)
        return [step * i for i in range(int(self.high / step) + 1)]


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12, cls: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{attrs}>'
        f"{escape(text)}</text>"
    )


def _row(y: float, label: str, scale: _Scale, samples: list[float] | None, stats: dict[str, Any]) -> str:
    """One engine: its dots (when raw timings exist), the interquartile box and the p50/p90/p99 marks."""
    mid = y + ROW / 2
    parts = [f'<g class="engine" data-engine="{escape(label)}"><title>{escape(label)}</title>']
    parts.append(_text(LABEL - 8, mid + 4, label, "end", cls="engine-name"))
    if samples:
        step = max(1, len(samples) // _POINTS)
        for i, ms in enumerate(samples[::step]):
            jitter = ((i * 7919) % 17 - 8) * 0.9  # fixed, so the same data draws the same picture
            parts.append(
                f'<circle cx="{scale(ms):.1f}" cy="{mid + jitter:.1f}" r="1.6" fill="#4a78b5" '
                'opacity="0.35"/>'
            )
        q1, q3 = _quantile(samples, 0.25), _quantile(samples, 0.75)
        parts.append(
            f'<rect x="{scale(q1):.1f}" y="{y + 6}" width="{max(scale(q3) - scale(q1), 1):.1f}" '
            f'height="{ROW - 12}" fill="none" stroke="#1d3f6e" stroke-width="1.5"/>'
        )
    p50, p90, p99 = (number(stats.get(k)) for k in ("p50", "p90", "p99"))
    if isinstance(p50, float) and isinstance(p99, float):
        parts.append(
            f'<line x1="{scale(p50):.1f}" y1="{mid}" x2="{scale(p99):.1f}" y2="{mid}" stroke="#888" '
            'stroke-dasharray="3 2"/>'
        )
    for name, value, color in (("p50", p50, "#c0392b"), ("p90", p90, "#e67e22"), ("p99", p99, "#7f8c8d")):
        if isinstance(value, float):
            x = scale(value)
            parts.append(
                f'<line x1="{x:.1f}" y1="{y + 4}" x2="{x:.1f}" y2="{y + ROW - 4}" stroke="{color}" '
                f'stroke-width="2"><title>{name} {value:.4g} ms</title></line>'
            )
    parts.append("</g>")
    return "".join(parts)


def latency_chart(batch: int, rows: list[tuple[str, list[float] | None, dict[str, Any]]]) -> str:
    """One chart per batch size: a row per engine (label, raw timings in ms or None, latency_ms)."""
    values = [ms for _, samples, _ in rows for ms in (samples or [])]
    marks = [number(stats.get(k)) for _, _, stats in rows for k in ("p50", "p99")]
    values += [v for v in marks if isinstance(v, float)]
    if not values:
        return ""
    scale = _Scale(min(values), max(values))
    height = TOP + ROW * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="latency" data-batch="{batch}" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">',
        f"<title>Latency per engine at batch {batch} (ms)</title>",
        _text(
            LABEL,
            16,
            f"batch {batch}: latency ms ({'log' if scale.log else 'linear'} scale); "
            "box = interquartile range, red p50, orange p90, grey p99",
            size=11,
        ),
    ]
    for i, (label, samples, stats) in enumerate(rows):
        parts.append(_row(TOP + i * ROW, label, scale, samples, stats))
    axis = TOP + ROW * len(rows) + 4
    parts.append(f'<line x1="{LABEL}" y1="{axis}" x2="{WIDTH - 20}" y2="{axis}" stroke="#333"/>')
    for tick in scale.ticks():
        x = scale(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{axis}" x2="{x:.1f}" y2="{axis + 4}" stroke="#333"/>')
        parts.append(_text(x, axis + 16, f"{tick:.3g}", "middle", size=10))
    parts.append("</svg>")
    return "".join(parts)


def layer_chart(layers: list[dict[str, Any]], top: int = 20) -> str:
    """The worst layers of the diagnosis: the model's output SQNR (dB) with that layer alone quantized
    (lower is worse), or the layer's own output SQNR when the first is missing."""
    shown = layers[:top]
    if not shown:
        return ""

    def sqnr(layer: dict[str, Any]) -> float:
        value = number(layer.get("model_sqnr_db"))
        value = value if isinstance(value, (int, float)) else number(layer.get("sqnr_db"))
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0

    highest = max(max(sqnr(layer) for layer in shown), 1.0)
    height = TOP + ROW * len(shown) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="layers" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img">',
        f"<title>Per-layer quantization error (worst {len(shown)} of {len(layers)})</title>",
        _text(LABEL, 16, "model output SQNR dB, only this layer quantized (shorter = more damage)", size=11),
    ]
    for i, layer in enumerate(shown):
        y, value = TOP + i * ROW, sqnr(layer)
        name = str(layer.get("module") or layer.get("node") or "?")
        width = value / highest * (WIDTH - LABEL - 80)
        parts.append(f'<g class="layer" data-node="{escape(str(layer.get("node", "")))}">')
        label = f"{name} ({layer.get('op_type', '?')})"
        parts.append(_text(LABEL - 8, y + ROW / 2 + 4, label, "end", size=11))
        parts.append(
            f'<rect x="{LABEL}" y="{y + 6}" width="{max(width, 1):.1f}" height="{ROW - 12}" fill="#c0392b" '
            f'opacity="{0.9 - 0.5 * i / max(len(shown), 1):.2f}"><title>{value:.1f} dB</title></rect>'
        )
        parts.append(_text(LABEL + width + 6, y + ROW / 2 + 4, f"{value:.1f} dB", size=11))
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
