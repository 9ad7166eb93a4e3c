"""Server-rendered SVG charts: real pictures, readable without hovering, no script.

Every bar carries its value as text; the pages also show the numbers as a table for screen
readers (the SVG itself is aria-hidden). Colours are attributes, not styles, so the
Content-Security-Policy (no inline styles) holds.
"""

from django.utils.html import escape
from django.utils.safestring import mark_safe

PALETTE = ["#0d6efd", "#dc3545", "#6c757d", "#fd7e14", "#198754", "#6f42c1", "#20c997"]


def horizontal_bars(items, *, width=640, bar_height=28, label_width=170, unit=""):
    """items: [(label, value, shown text)]. One bar per item, scaled to the largest value."""
    if not items:
        return ""
    top = max(value for _, value, _ in items) or 1
    height = len(items) * (bar_height + 10) + 10
    room = width - label_width - 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-hidden="true" class="chart">'
    ]
    max_chars = int(label_width / 7.5)  # about 7.5 px a character at 14 px
    for index, (label, value, shown) in enumerate(items):
        y = 10 + index * (bar_height + 10)
        short = label if len(label) <= max_chars else label[: max_chars - 1] + "…"
        bar = max(2, int(room * value / top)) if value else 0
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<text x="{label_width - 8}" y="{y + bar_height * 0.68:.0f}" text-anchor="end" '
            f'font-size="14" fill="#212529"><title>{escape(label)}</title>{escape(short)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{bar}" height="{bar_height}" rx="3" '
            f'fill="{colour}"></rect>'
            f'<text x="{label_width + bar + 6}" y="{y + bar_height * 0.68:.0f}" font-size="14" '
            f'fill="#212529">{escape(shown)}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def columns(points, *, width=720, height=240, max_value=None, label_every=None, suffix=""):
    """points: [(label, value, shown text)] as vertical columns over time (e.g. one a day)."""
    if not points:
        return ""
    top = max_value or max(value for _, value, _ in points) or 1
    left, bottom, right = 40, 40, 10
    plot_w, plot_h = width - left - right, height - bottom - 10
    step = plot_w / len(points)
    label_every = label_every or max(1, len(points) // 10)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-hidden="true" class="chart">',
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - right}" y2="{10 + plot_h}" '
        f'stroke="#adb5bd"></line>',
        f'<text x="{left - 4}" y="16" text-anchor="end" font-size="11" fill="#495057">'
        f"{escape(str(top))}{escape(suffix)}</text>",
        f'<text x="{left - 4}" y="{10 + plot_h}" text-anchor="end" font-size="11" '
        f'fill="#495057">0</text>',
    ]
    for index, (label, value, shown) in enumerate(points):
        bar_h = plot_h * (value / top) if top else 0
        x = left + index * step + step * 0.1
        y = 10 + plot_h - bar_h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{bar_h:.1f}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {escape(shown)}</title></rect>'
        )
        if len(points) <= 31 and step >= 22:
            parts.append(
                f'<text x="{x + step * 0.4:.1f}" y="{max(y - 3, 20):.1f}" text-anchor="middle" '
                f'font-size="10" fill="#212529">{escape(shown)}</text>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + step * 0.4:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="11" fill="#495057">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def grouped_columns(groups, series, *, height=240, money=str):
    """groups: [(label, [value per series])]; series: [name]. One cluster of columns per group
    (e.g. a month), one colour per series (the page shows `legend(series)` beside it); each
    column tall enough to see carries its value."""
    if not groups or not series:
        return ""
    # Narrow when there are few groups: the text stays readable on a phone.
    width = min(720, max(420, 150 * len(groups)))
    top = max((v for _, values in groups for v in values), default=0) or 1
    left, bottom, headroom = 8, 26, 18
    plot_h = height - bottom - headroom
    step = (width - left * 2) / len(groups)
    bar_w = step * 0.84 / len(series)
    base = headroom + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-hidden="true" class="chart">',
        f'<line x1="{left}" y1="{base}" x2="{width - left}" y2="{base}" stroke="#adb5bd"></line>',
    ]
    for g, (label, values) in enumerate(groups):
        start = left + g * step + step * 0.08
        for index, value in enumerate(values):
            bar_h = plot_h * float(value) / float(top) if value else 0
            bx = start + index * bar_w
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            parts.append(
                f'<rect x="{bx:.1f}" y="{base - bar_h:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{bar_h:.1f}" fill="{colour}"><title>{escape(label)}, '
                f"{escape(series[index])}: {escape(money(value))}</title></rect>"
            )
            if bar_h >= 4:  # a column too short to see carries no label (the table has it)
                y = max(base - bar_h - 3, 12)
                parts.append(
                    f'<text x="{bx + bar_w * 0.45:.1f}" y="{y:.1f}" text-anchor="middle" '
                    f'font-size="11" fill="#212529">{escape(money(value))}</text>'
                )
        parts.append(
            f'<text x="{start + step * 0.42:.1f}" y="{height - 7}" text-anchor="middle" '
            f'font-size="14" fill="#495057">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def legend(series):
    """The colour of each series of `grouped_columns`, as readable text beside the chart."""
    items = []
    for index, name in enumerate(series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        items.append(
            '<li class="list-inline-item me-3"><svg width="12" height="12" aria-hidden="true">'
            f'<rect width="12" height="12" rx="2" fill="{colour}"></rect></svg> '
            f"{escape(name)}</li>"
        )
    return mark_safe(f'<ul class="list-inline small mb-1">{"".join(items)}</ul>')


# Spent on delivered, wasted on failures, saved by skipping, spent on lookups.
SERIES_COLOURS = ["#0d6efd", "#dc3545", "#198754", "#6f42c1"]
