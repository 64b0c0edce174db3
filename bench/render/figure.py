"""Matplotlib mechanics shared by the report's plots: PNG bytes, colours, layout, text sizes, bar labels.

Matplotlib is imported inside the functions only. Labels are placed after the
figure's layout has run (``laid_out``), in pixels, by the pure rules of
bench.render.labels; they are kept out of the layout (``set_in_layout(False)``)
so placing them cannot move the axes they were placed for.
"""

from __future__ import annotations

import io
import math
from typing import Any

from bench.core.numbers import num
from bench.render.labels import bar_label, contrast

FONT = 7  # points, for every label drawn on a plot
DPI = 100
MAX_WIDTH_IN = 12.6  # the report page is 1,300 px wide: a wider PNG would be scaled down, its text with it
MIN_BAR_PX = 16  # an upright 7-point label fits across a bar this wide


def figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})  # no version stamp: same bytes
    return buffer.getvalue()


def colors_for(devices: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {d: cmap(i % 10) for i, d in enumerate(devices)}


def darker(color: Any) -> tuple[float, float, float]:
    """The device's colour, darkened enough for 7-point text on white."""
    return (color[0] * 0.7, color[1] * 0.7, color[2] * 0.7)


def grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def plain_log_labels(axis: Any) -> None:
    """Log axes labelled with plain numbers (1,000 not 10^3): decades, or finer steps on a short axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    axis.axes.autoscale_view()  # limits are computed lazily; the choice of ticks needs them now
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 and high > 0 else 3.0
    if decades > 2:
        subs: tuple[float, ...] = (1.0,)
    elif decades > 0.7:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = tuple(float(i) for i in range(1, 10))
    if decades < 0.5:  # under a factor of 3: a log locator would leave one tick or none
        axis.set_major_locator(MaxNLocator(nbins=5))
    else:
        axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: num(v)))
    axis.set_minor_formatter(NullFormatter())


def panel_width(bars: int) -> float:
    """Inches for one panel of ``bars`` bars, each at least MIN_BAR_PX wide (plus the axis' labels)."""
    return min(max(4.6, (bars * MIN_BAR_PX / 0.76 + 90) / DPI), MAX_WIDTH_IN)


def laid_out(fig: Any) -> Any:
    """Run the figure's layout now and return a renderer: label placement needs the final pixel geometry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return canvas.get_renderer()


def text_size(renderer: Any, text: str) -> tuple[float, float]:
    from matplotlib.font_manager import FontProperties

    w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=FONT), ismath=False)
    return float(w), float(h)


def label_bars(ax: Any, bars: Any, labels: list[str], color: Any, renderer: Any) -> None:
    """Each bar's label across and above it when it fits the bar's width, else upright, inside or above."""
    bottom_px = ax.get_window_extent(renderer).y0
    for bar, label in zip(bars, labels, strict=True):
        box = bar.get_window_extent(renderer)
        w, h = text_size(renderer, label)
        place = bar_label(w, h, box.width, box.y1 - max(box.y0, bottom_px))
        inside = place.where == "inside"
        text = ax.annotate(
            label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, -3 if inside else 2),
            textcoords="offset pixels", ha="center", va="top" if inside else "bottom",
            rotation=90 if place.upright else 0, fontsize=FONT, color=contrast(color) if inside else "#222222",
            annotation_clip=False,
        )  # fmt: skip
        text.set_in_layout(False)
