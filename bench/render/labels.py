"""Where plot labels go so that they do not overlap: pure geometry in display pixels, no matplotlib.

Two problems, two rules. A bar's label goes across the bar, above it, when it
is no wider than the bar; otherwise it is turned upright and goes inside the
bar's top when the bar is tall enough, above it when not. Labels of scattered
points (the speed/quality plot) are placed greedily: each in turn takes the
first spot, nearest first, whose box stays inside the axes and overlaps no
marker and no label placed before it; a label pushed away from its point gets
a leader line. Same inputs, same places: the plots stay deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in display pixels (y up, as matplotlib's display space)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def overlap(self, other: Box) -> float:
        """The area both boxes cover (0 when they only touch)."""
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return w * h if w > 0 and h > 0 else 0.0

    def within(self, bounds: Box) -> bool:
        return self.x0 >= bounds.x0 and self.y0 >= bounds.y0 and self.x1 <= bounds.x1 and self.y1 <= bounds.y1


@dataclass(frozen=True)
class BarLabel:
    """How a bar's label is drawn: ``where`` "above" or "inside" (at the bar's top), upright or not."""

    where: str
    upright: bool


def bar_label(label_w: float, label_h: float, bar_w: float, bar_h: float, pad: float = 3.0) -> BarLabel:
    """Across and above when the label is no wider than its bar; else upright, inside when the bar is
    tall enough to hold it, above when not. Sizes in pixels; the label's size is when not rotated."""
    if label_w <= bar_w:
        return BarLabel("above", upright=False)
    return BarLabel("inside" if label_w + 2 * pad <= bar_h else "above", upright=True)


def contrast(rgb: tuple[float, ...]) -> str:
    """Black or white, whichever reads better on a fill of colour ``rgb`` (0..1 channels)."""
    r, g, b = rgb[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _candidates(w: float, h: float, reach: float, gap: float) -> list[tuple[float, float]]:
    """Lower-left corners of a w x h label around a point, ``reach`` pixels out: right, left, above, below."""
    return [
        (reach + gap, gap / 2),  # right, rising
        (reach + gap, -h - gap / 2),  # right, falling
        (-reach - gap - w, gap / 2),  # left, rising
        (-reach - gap - w, -h - gap / 2),  # left, falling
        (-w / 2, reach + gap),  # above
        (-w / 2, -reach - gap - h),  # below
    ]


@dataclass(frozen=True)
class Placement:
    """A label's lower-left corner as an offset from its point, in pixels; ``clear`` when it overlaps
    nothing (no marker, no line, no other label) and lies inside the axes."""

    dx: float
    dy: float
    clear: bool


def place_labels(
    points: list[tuple[float, float]],
    sizes: list[tuple[float, float]],
    bounds: Box,
    *,
    obstacles: list[Box] | None = None,
    marker: float = 4.0,
    gap: float = 2.0,
    rings: int = 5,
) -> list[Placement]:
    """Where each point's label goes, in the order given.

    Points are markers of radius ``marker``; ``obstacles`` are other things not to cover
    (lines, as thin boxes). Each label takes the first candidate spot, ring by ring
    outward, that lies in ``bounds`` and overlaps nothing drawn or placed; when no
    spot is clear, the one that overlaps least.
    """
    taken = [Box(x - marker, y - marker, x + marker, y + marker) for x, y in points] + list(obstacles or [])
    placements: list[Placement] = []
    for (x, y), (w, h) in zip(points, sizes, strict=True):
        best: tuple[float, float, float, Box] | None = None
        for ring in range(rings):
            for dx, dy in _candidates(w, h, marker + ring * (h + gap), gap):
                box = Box(x + dx, y + dy, x + dx + w, y + dy + h)
                cost = sum(box.overlap(other) for other in taken)
                if not box.within(bounds):
                    cost += w * h  # outside the axes is as bad as covering another label
                if best is None or cost < best[0]:
                    best = (cost, dx, dy, box)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        placements.append(Placement(best[1], best[2], best[0] == 0))
        box = best[3]  # kept ``gap`` clear of the next labels, so two numbers never read as one
        taken.append(Box(box.x0 - gap, box.y0 - gap, box.x1 + gap, box.y1 + gap))
    return placements
