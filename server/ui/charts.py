"""Small server-side SVG charts: writes per day (stacked bars) with live memories (a line).

No script and no style attribute (the dashboard's CSP allows neither): presentation attributes
only. Every text that reaches the SVG (dates, numbers, the scope) is escaped.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from milvus_memory_mcp.core.dashboard import ScopeActivity

WIDTH, HEIGHT = 640, 170
LEFT, RIGHT, TOP, BOTTOM = 34, 40, 12, 26
COLOURS = {"ADD": "#2e7d32", "UPDATE": "#1565c0", "DELETE": "#c62828"}
NAMES = {"ADD": "added", "UPDATE": "updated", "DELETE": "deleted"}
LINE = "#6d4c41"


def _nice(top: int) -> int:
    """A round axis maximum at or above `top`."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 50_000, 100_000):
        if top <= step:
            return step
    return top


def writes_chart(a: ScopeActivity) -> Markup:
    days = len(a.days)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(a.writes[k][i] for k in COLOURS) for i in range(days)]
    top = _nice(max(totals + [1]))
    live_top = _nice(max(a.live + [1]))
    slot = plot_w / max(days, 1)
    bar = max(slot * 0.7, 1.0)
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(_label(a))}">',
        f"<title>{escape(_label(a))}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#999"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="10" fill="#555">{top}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10" fill="#555">0</text>',
        f'<text x="{LEFT + plot_w + 4}" y="{TOP + 8}" font-size="10" fill="{LINE}">{live_top}</text>',
    ]
    for i in range(days):
        x = LEFT + i * slot + (slot - bar) / 2
        y = TOP + plot_h
        tip = f"{a.days[i]}: " + ", ".join(f"{a.writes[k][i]} {NAMES[k]}" for k in COLOURS) + f"; {a.live[i]} live"
        parts.append(f"<g><title>{escape(tip)}</title>")
        for kind, colour in COLOURS.items():
            n = a.writes[kind][i]
            if n:
                h = plot_h * n / top
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}"/>')
        parts.append(f'<rect x="{x:.1f}" y="{TOP}" width="{bar:.1f}" height="{plot_h}" fill="transparent"/></g>')
    points = " ".join(
        f"{LEFT + i * slot + slot / 2:.1f},{TOP + plot_h - plot_h * v / live_top:.1f}" for i, v in enumerate(a.live)
    )
    parts.append(f'<polyline points="{points}" fill="none" stroke="{LINE}" stroke-width="1.5"/>')
    for i in (0, days // 2, days - 1) if days > 2 else range(days):
        x = LEFT + i * slot + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="10" fill="#555">'
            f"{escape(a.days[i][5:])}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _label(a: ScopeActivity) -> str:
    return f"Writes per day and live memories, {a.scope.describe()}"
