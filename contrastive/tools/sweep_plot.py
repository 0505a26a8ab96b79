"""The picture of a sweep (``DIR/heatmap.png``), drawn with matplotlib's object API on the Agg
canvas (no pyplot, no display, no global state).

What is drawn depends on the number of grid axes:

* **1 axis** — one line chart: the axis's values along x (in grid order, as written), one line
  per score, each point annotated;
* **2 axes** — one heat-map per score (kNN top-1, linear top-1): the first axis down the rows,
  the second across the columns, every cell annotated with its value;
* **3 or more axes** — the first two axes make each heat-map; there is one row of panels per
  combination of the remaining axes (titled with their values), one column per score; a score's
  colour scale is shared by all its panels, so colours compare across rows.

The scores are those of `SCORES` that some cell has; with none (evaluation off) the final loss
is drawn instead.  A cell without a number shows its status (``failed``, ``pending``, ...).  The
best value of each panel is written in bold.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

#: The scores drawn (and tabulated by `contrastive.tools.sweep`): results.json ``eval`` key -> title.
SCORES = {"knn_top1": "kNN top-1", "linear_top1": "linear top-1"}
LOSS = ("loss", "final loss")


@dataclass
class Panel:
    """One heat-map (or, for one axis, one line): ``values[r][c]`` is the score at row value
    ``rows[r]`` of the first axis and column value ``columns[c]`` of the second (``[""]`` when
    there is none); ``fixed`` holds the values of the further axes the panel is drawn at."""

    metric: str
    title: str
    rows: list[str]
    columns: list[str]
    values: list[list[float]]  # nan: no number
    labels: list[list[str]]  # what a cell without a number shows
    fixed: dict[str, str]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def panels(axes: list[tuple[str, list[str]]], cells: list[tuple[dict[str, str], dict[str, Any], str]]) -> list[Panel]:
    """The panels for ``axes`` (``[(key, values as written), ...]``) and ``cells``
    (``[(values as written by key, scores, status), ...]``), metric by metric."""
    by_point = {tuple(texts[key] for key, _ in axes): (found, status) for texts, found, status in cells}
    metrics = [m for m in SCORES.items() if any(math.isfinite(_number(found.get(m[0]))) for _, found, _ in cells)] or [LOSS]
    rows, rest = axes[0][1], axes[1:]
    columns = rest[0][1] if rest else [""]
    further = rest[1:]
    out = []
    for combination in itertools.product(*(values for _, values in further)):
        fixed = {key: value for (key, _), value in zip(further, combination, strict=True)}
        for metric, title in metrics:
            values, labels = [], []
            for row in rows:
                row_values, row_labels = [], []
                for column in columns:
                    point = (row, column, *combination) if rest else (row,)
                    found, status = by_point.get(point, ({}, "pending"))
                    row_values.append(_number(found.get(metric)))
                    row_labels.append("" if status == "pending" else status)
                values.append(row_values)
                labels.append(row_labels)
            out.append(Panel(metric, title, list(rows), list(columns), values, labels, fixed))
    return out


def draw(axes: list[tuple[str, list[str]]], cells: list[tuple[dict[str, str], dict[str, Any], str]], path: str,
         title: str) -> list[Panel]:
    """Write the picture of the sweep to ``path`` (PNG); returns the panels drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = panels(axes, cells)
    if len(axes) == 1:
        figure = Figure(figsize=(max(4.5, 1.0 + 0.9 * len(axes[0][1])), 3.6), layout="constrained")
        _line_chart(figure.add_subplot(), drawn, axes[0][0])
    else:
        metrics = list(dict.fromkeys(p.metric for p in drawn))
        n_rows = len(drawn) // len(metrics)
        n_cols_cells, n_rows_cells = len(axes[1][1]), len(axes[0][1])
        width = max(3.8, 1.6 + 0.85 * n_cols_cells)
        height = max(2.8, 1.3 + 0.5 * n_rows_cells)
        figure = Figure(figsize=(width * len(metrics), height * n_rows), layout="constrained")
        grid = figure.subplots(n_rows, len(metrics), squeeze=False)
        limits = {m: _limits([p for p in drawn if p.metric == m]) for m in metrics}
        for index, panel in enumerate(drawn):
            _heatmap(figure, grid[index // len(metrics)][index % len(metrics)], panel, axes[0][0], axes[1][0],
                     limits[panel.metric])
    figure.suptitle(title)
    FigureCanvasAgg(figure).print_figure(path, format="png", dpi=110)
    return drawn


def _limits(group: list[Panel]) -> tuple[float, float]:
    found = [v for p in group for row in p.values for v in row if math.isfinite(v)]
    if not found:
        return 0.0, 1.0
    low, high = min(found), max(found)
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def _best(panel: Panel) -> float:
    found = [v for row in panel.values for v in row if math.isfinite(v)]
    if not found:
        return math.nan
    return min(found) if panel.metric == LOSS[0] else max(found)


def _heatmap(figure, ax, panel: Panel, row_key: str, column_key: str, limits: tuple[float, float]) -> None:
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    cmap = colormaps["viridis_r" if panel.metric == LOSS[0] else "viridis"].with_extremes(bad="#d9d9d9")
    norm = Normalize(*limits)
    image = ax.imshow(np.ma.masked_invalid(np.array(panel.values, dtype=float)), cmap=cmap, norm=norm, aspect="auto")
    best = _best(panel)
    for r, row in enumerate(panel.values):
        for c, value in enumerate(row):
            if math.isfinite(value):
                red, green, blue, _ = cmap(norm(value))
                colour = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
                ax.text(c, r, f"{value:.3f}", ha="center", va="center", color=colour,
                        fontweight="bold" if value == best else "normal", fontsize=9)
            elif panel.labels[r][c]:
                ax.text(c, r, panel.labels[r][c], ha="center", va="center", color="#444444", fontsize=8)
    ax.set_xticks(range(len(panel.columns)), panel.columns)
    ax.set_yticks(range(len(panel.rows)), panel.rows)
    ax.set_xlabel(column_key)
    ax.set_ylabel(row_key)
    fixed = ", ".join(f"{k}={v}" for k, v in panel.fixed.items())
    ax.set_title(f"{panel.title} ({fixed})" if fixed else panel.title, fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.85)


def _line_chart(ax, drawn: list[Panel], key: str) -> None:
    positions = range(len(drawn[0].rows))
    for number, panel in enumerate(drawn):
        values = [row[0] for row in panel.values]
        (line,) = ax.plot(positions, values, marker="o", label=panel.title)
        best = _best(panel)
        for x, value in zip(positions, values, strict=True):
            if math.isfinite(value):
                ax.annotate(f"{value:.3f}", (x, value), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=8, color=line.get_color(), fontweight="bold" if value == best else "normal")
            elif panel.labels[x][0] and number == 0:  # a status, once for all lines
                ax.annotate(panel.labels[x][0], (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                            textcoords="offset points", ha="center", fontsize=8, color="#444444")
    ax.set_xticks(list(positions), drawn[0].rows)
    ax.set_xlabel(key)
    ax.set_ylabel("final loss" if drawn[0].metric == LOSS[0] else "top-1 accuracy (frozen backbone)")
    ax.margins(y=0.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
