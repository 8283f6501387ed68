"""Chart geometry for the dashboard's inline SVG: numbers in, coordinates out.

The page draws its charts on the server (templates/_charts.html turns these shapes into
``<svg>`` markup), so it needs no JavaScript chart library and nothing from the internet.
Scales start at zero and end on a "nice" number so that gridlines read well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 640


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k at or above ``value`` (at least 1): the
    chart's top, close enough above the largest value that the data fills the plot."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * magnitude:
            return math.ceil(step * magnitude)
    return math.ceil(10 * magnitude)  # pragma: no cover - the loop always returns


# --- horizontal bars: occupied out of capacity ----------------------------------------


@dataclass(frozen=True)
class BarRow:
    label: str
    note: str  # under the label (a site's region, a region's level)
    value: int
    capacity: int
    y: float
    value_width: float
    capacity_width: float

    @property
    def percent(self) -> int:
        return round(100 * self.value / self.capacity) if self.capacity else 0


@dataclass(frozen=True)
class BarChart:
    rows: list[BarRow]
    width: int
    height: int
    label_width: int
    plot_width: int
    row_height: int
    scale_max: int


def bar_chart(items: Sequence[tuple[str, str, int, int]], *, width: int = WIDTH, label_width: int = 200, row_height: int = 34) -> BarChart:
    """Rows of (label, note, value, capacity): a pale bar for the capacity, a solid one for the value,
    all on one scale so that sites compare by size as well as by fill."""
    plot_width = width - label_width - 110  # room for the "occupied / total" text after the bar
    scale_max = nice_ceiling(max([c for *_, c in items] + [v for *_, v, _ in items] + [1]))
    rows = [
        BarRow(
            label=label,
            note=note,
            value=value,
            capacity=capacity,
            y=i * row_height,
            value_width=round(plot_width * value / scale_max, 1),
            capacity_width=round(plot_width * capacity / scale_max, 1),
        )
        for i, (label, note, value, capacity) in enumerate(items)
    ]
    return BarChart(rows, width, max(1, len(rows)) * row_height, label_width, plot_width, row_height, scale_max)


# --- lines: daily counts --------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    day: date
    value: int


@dataclass(frozen=True)
class Line:
    name: str
    label: str
    points: list[Point]

    @property
    def path(self) -> str:
        return " ".join(f"{p.x},{p.y}" for p in self.points)

    @property
    def values(self) -> str:
        return ",".join(str(p.value) for p in self.points)

    @property
    def last(self) -> Point | None:
        return self.points[-1] if self.points else None


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class LineChart:
    lines: list[Line]
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    x_ticks: list[Tick]
    y_ticks: list[Tick]


def line_chart(days: Sequence[date], series: Sequence[tuple[str, str, Sequence[int]]], *, width: int = WIDTH, height: int = 240) -> LineChart:
    """One line per (name, label, values-by-day); ``days`` oldest first."""
    left, top, right, bottom = 44, 12, 16, 28
    plot_width, plot_height = width - left - right, height - top - bottom
    scale_max = nice_ceiling(max([v for *_, values in series for v in values] + [1]))
    step = plot_width / max(1, len(days) - 1)

    def y_of(value: float) -> float:
        return round(top + plot_height * (1 - value / scale_max), 1)

    lines = [
        Line(name, label, [Point(round(left + i * step, 1), y_of(v), d, v) for i, (d, v) in enumerate(zip(days, values, strict=True))])
        for name, label, values in series
    ]
    every = max(1, math.ceil(len(days) / 7))  # at most about seven date labels
    x_ticks = [Tick(round(left + i * step, 1), f"{d:%m-%d}") for i, d in enumerate(days) if (len(days) - 1 - i) % every == 0]
    y_ticks = [Tick(y_of(v), f"{v:g}") for v in (0, scale_max / 2, scale_max)]
    return LineChart(lines, width, height, left, top, plot_width, plot_height, x_ticks, y_ticks)
