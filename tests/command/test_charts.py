"""Chart geometry (service/command/charts.py): the numbers a person reads off the SVG."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from service.command import charts


@pytest.mark.parametrize(("value", "nice"), [(0, 1), (1, 1), (3, 3), (7, 8), (11, 15), (21, 25), (26, 30), (57, 60), (280, 300), (560, 600), (1001, 1500)])
def test_scales_end_on_a_nice_number(value, nice):
    assert charts.nice_ceiling(value) == nice


def test_bars_share_one_scale_so_sites_compare_by_size():
    chart = charts.bar_chart([("A", "", 150, 280), ("B", "", 0, 140), ("C", "", 5, 0)])
    a, b, c = chart.rows
    assert chart.scale_max == 300
    assert a.capacity_width == pytest.approx(2 * b.capacity_width, abs=0.1)
    assert a.value_width / a.capacity_width == pytest.approx(150 / 280, abs=0.01)
    assert b.value_width == 0 and c.capacity_width == 0 and c.percent == 0
    assert [r.y for r in chart.rows] == [0, chart.row_height, 2 * chart.row_height]
    assert max(r.capacity_width for r in chart.rows) <= chart.plot_width


def test_lines_put_each_day_and_count_in_place():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(14)]
    chart = charts.line_chart(days, [("admitted", "admitted", list(range(14))), ("released", "released", [0] * 14)])
    admitted, released = chart.lines
    xs = [p.x for p in admitted.points]
    assert xs[0] == chart.left and xs[-1] == pytest.approx(chart.left + chart.plot_width, abs=0.1) and xs == sorted(xs)
    bottom, top = chart.top + chart.plot_height, chart.top
    assert admitted.points[0].y == bottom and released.points[-1].y == bottom
    assert admitted.points[-1].y > top  # 13 on a scale of 15
    assert admitted.values == ",".join(map(str, range(14))) and admitted.last is not None and admitted.last.value == 13
    assert [t.label for t in chart.y_ticks] == ["0", "7.5", "15"]
    assert chart.x_ticks[-1].label == "11-14" and len(chart.x_ticks) <= 8


def test_a_single_day_and_an_empty_chart_draw():
    one = charts.line_chart([date(2026, 11, 1)], [("admitted", "admitted", [3])])
    assert one.lines[0].points[0].x == one.left
    empty = charts.bar_chart([])
    assert empty.rows == [] and empty.height > 0
