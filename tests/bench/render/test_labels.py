"""Plot label placement (bench.render.labels): bar labels that fit their bar, point labels that never collide."""

from __future__ import annotations

import itertools

from bench.render.labels import BarLabel, Box, Placement, bar_label, contrast, place_labels


def test_bar_label_across_when_it_fits_else_upright_inside_or_above() -> None:
    assert bar_label(label_w=25, label_h=9, bar_w=30, bar_h=5) == BarLabel("above", upright=False)
    assert bar_label(label_w=25, label_h=9, bar_w=16, bar_h=200) == BarLabel("inside", upright=True)
    assert bar_label(label_w=25, label_h=9, bar_w=16, bar_h=20) == BarLabel("above", upright=True)


def test_contrast_picks_a_readable_text_colour() -> None:
    assert contrast((0.12, 0.47, 0.71)) == "white"  # tab10 blue
    assert contrast((1.0, 0.9, 0.3)) == "black"  # a light fill


def _boxes(
    points: list[tuple[float, float]], sizes: list[tuple[float, float]], placements: list[Placement]
) -> list[Box]:
    return [
        Box(x + p.dx, y + p.dy, x + p.dx + w, y + p.dy + h)
        for (x, y), (w, h), p in zip(points, sizes, placements, strict=True)
    ]


def test_a_cluster_of_labels_does_not_overlap_itself_or_the_markers() -> None:
    # ten points a few pixels apart, as pipelines of similar speed and quality land on the Pareto plot
    points = [(500.0 + 6 * (i % 3), 300.0 + 5 * i) for i in range(10)]
    sizes = [(60.0, 9.0)] * 10
    bounds = Box(0, 0, 1000, 600)
    placements = place_labels(points, sizes, bounds, marker=4.0)
    assert all(p.clear for p in placements)
    boxes = _boxes(points, sizes, placements)
    for a, b in itertools.combinations(boxes, 2):
        assert a.overlap(b) == 0
    markers = [Box(x - 4, y - 4, x + 4, y + 4) for x, y in points]
    assert all(box.overlap(m) == 0 for box in boxes for m in markers)
    assert all(box.within(bounds) for box in boxes)


def test_a_lone_point_is_labelled_right_next_to_it_and_lines_are_avoided() -> None:
    [free] = place_labels([(100.0, 100.0)], [(30.0, 9.0)], Box(0, 0, 400, 400), marker=4.0)
    assert free.clear and 0 < free.dx <= 8 and abs(free.dy) <= 9  # to its right, touching distance
    line = Box(100, 99, 400, 101)  # a horizontal front through the point
    [moved] = place_labels([(100.0, 100.0)], [(30.0, 9.0)], Box(0, 0, 400, 400), obstacles=[line])
    box = Box(100 + moved.dx, 100 + moved.dy, 130 + moved.dx, 109 + moved.dy)
    assert moved.clear and box.overlap(line) == 0


def test_labels_stay_inside_the_axes_at_the_edge() -> None:
    [p] = place_labels([(395.0, 395.0)], [(30.0, 9.0)], Box(0, 0, 400, 400))
    assert p.clear and p.dx < 0 and p.dy < 0  # left and below: the only side with room


def test_when_nothing_is_clear_the_least_bad_spot_is_said_to_be_so() -> None:
    points = [(50.0, 50.0)] * 3
    placements = place_labels(points, [(90.0, 90.0)] * 3, Box(0, 0, 100, 100), rings=1)
    assert not all(p.clear for p in placements)


def test_placement_is_deterministic() -> None:
    points = [(float(i * 7 % 50), float(i * 13 % 40)) for i in range(20)]
    sizes = [(20.0 + i, 9.0) for i in range(20)]
    assert place_labels(points, sizes, Box(-100, -100, 200, 200)) == place_labels(
        points, sizes, Box(-100, -100, 200, 200)
    )
