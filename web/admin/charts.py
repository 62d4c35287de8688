"""Geometry for the small charts the training pages draw as inline SVG (no chart library,
no CDN). Plain functions: numbers in, coordinates out; templates escape every label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

BAR_WIDTH = 360  # pixels of the longest bar
LINE_WIDTH, LINE_HEIGHT = 560, 220
LINE_MARGIN = 40


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    width: float
    text: str
    second_value: float | None = None
    second_width: float | None = None
    second_text: str | None = None


def bars(
    items: Sequence[tuple[str, float]],
    *,
    maximum: float | None = None,
    percent: bool = False,
    second: dict[str, float] | None = None,
) -> list[Bar]:
    """One bar per item, scaled to the largest value (or ``maximum``); ``second`` adds a
    comparison bar per label (e.g. the baseline's F1)."""
    values = [value for _, value in items] + list((second or {}).values())
    top = maximum if maximum is not None else max(values, default=0) or 1
    result = []
    for label, value in items:
        other = (second or {}).get(label)
        result.append(
            Bar(
                label=label,
                value=value,
                width=round(BAR_WIDTH * max(0.0, value) / top, 1),
                text=_format(value, percent),
                second_value=other,
                second_width=None if other is None else round(BAR_WIDTH * max(0.0, other) / top, 1),
                second_text=None if other is None else _format(other, percent),
            )
        )
    return result


def _format(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.1f}%"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Line:
    name: str
    points: str  # SVG polyline "x,y x,y ..."
    css_class: str
    dots: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class LineChart:
    lines: list[Line]
    width: int
    height: int
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    x_label: str
    y_label: str

    @property
    def empty(self) -> bool:
        return not self.lines


def line_chart(
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
) -> LineChart:
    """Lines sharing one pair of axes. ``series`` items: (name, css class, [(x, y), ...])."""
    points = [point for _, _, data in series for point in data]
    if not points:
        return LineChart([], LINE_WIDTH, LINE_HEIGHT, [], [], x_label, y_label)
    x_min, x_max = min(x for x, _ in points), max(x for x, _ in points)
    y_min, y_max = min(0.0, min(y for _, y in points)), max(y for _, y in points)
    x_span = (x_max - x_min) or 1.0
    y_span = (y_max - y_min) or 1.0
    inner_w, inner_h = LINE_WIDTH - 2 * LINE_MARGIN, LINE_HEIGHT - 2 * LINE_MARGIN

    def place(x: float, y: float) -> tuple[float, float]:
        return (
            round(LINE_MARGIN + inner_w * (x - x_min) / x_span, 1),
            round(LINE_MARGIN + inner_h * (1 - (y - y_min) / y_span), 1),
        )

    lines = []
    for name, css_class, data in series:
        placed = [place(x, y) for x, y in data]
        if placed:
            lines.append(
                Line(
                    name=name,
                    points=" ".join(f"{x},{y}" for x, y in placed),
                    css_class=css_class,
                    dots=placed if len(placed) <= 30 or css_class == "line-val" else [],
                )
            )
    x_ticks = [
        (place(x_min + x_span * i / 4, y_min)[0], f"{x_min + x_span * i / 4:.3g}") for i in range(5)
    ]
    y_ticks = [
        (place(x_min, y_min + y_span * i / 4)[1], f"{y_min + y_span * i / 4:.3g}") for i in range(5)
    ]
    return LineChart(lines, LINE_WIDTH, LINE_HEIGHT, x_ticks, y_ticks, x_label, y_label)


@dataclass(frozen=True)
class HeatCell:
    value: int
    alpha: float
    dark: bool

    @property
    def level(self) -> int:
        """The colour strength in tenths: a CSS class (heat-0 .. heat-10), since the
        Content-Security-Policy allows no inline style."""
        return round(self.alpha * 10)


def heatmap(matrix: Sequence[Sequence[int]]) -> list[list[HeatCell]]:
    """Each cell's share of its row (the true category), as a colour strength 0..1."""
    rows = []
    for row in matrix:
        total = sum(row) or 1
        rows.append(
            [
                HeatCell(value=value, alpha=round(value / total, 3), dark=value / total > 0.55)
                for value in row
            ]
        )
    return rows


def loss_chart(results: dict[str, Any] | None) -> LineChart:
    """Training loss per step (as the run reported it) and validation loss per epoch."""
    results = results or {}
    training = results.get("training") or {}
    curve = results.get("loss_curve") or []
    steps = [(float(point["step"]), float(point["loss"])) for point in curve if "loss" in point]
    val_loss = training.get("val_loss") or []
    train_loss = training.get("train_loss") or []
    series: list[tuple[str, str, Sequence[tuple[float, float]]]] = []
    if steps:
        per_epoch = max(1.0, steps[-1][0] / max(1, len(train_loss))) if train_loss else 1.0
        series.append(("training loss (per step)", "line-train", steps))
        if val_loss:
            series.append(
                (
                    "validation loss (per epoch)",
                    "line-val",
                    [
                        (per_epoch * (index + 1), float(value))
                        for index, value in enumerate(val_loss)
                    ],
                )
            )
        return line_chart(series, x_label="step", y_label="loss")
    if train_loss:
        series.append(
            ("training loss", "line-train", [(i + 1.0, float(v)) for i, v in enumerate(train_loss)])
        )
    if val_loss:
        series.append(
            ("validation loss", "line-val", [(i + 1.0, float(v)) for i, v in enumerate(val_loss)])
        )
    return line_chart(series, x_label="epoch", y_label="loss")


def loss_per_epoch(results: dict[str, Any] | None) -> list[tuple[int, float | None, float | None]]:
    """(epoch, training loss, validation loss) per epoch, for the table under the chart."""
    training = (results or {}).get("training") or {}
    train_loss = training.get("train_loss") or []
    val_loss = training.get("val_loss") or []
    return [
        (
            epoch + 1,
            float(train_loss[epoch]) if epoch < len(train_loss) else None,
            float(val_loss[epoch]) if epoch < len(val_loss) else None,
        )
        for epoch in range(max(len(train_loss), len(val_loss)))
    ]
