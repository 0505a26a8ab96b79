"""The report's figures, drawn with matplotlib and returned as PNG bytes.

Figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas (``savefig``),
never through ``pyplot``: no global figure state, no display backend, the same bytes on a
headless machine.  Each function takes the plain arrays of `collect`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from contrastive.evaluation.report.collect import Neighbours, ViewGroupPreview, numeric_keys, series

#: Panels of the training curves: (title, metrics.jsonl keys drawn in it); keys absent from the
#: records are left out, panels left empty are dropped, and any other numeric key of the records
#: (a plugin method's diagnostics) gets a panel of its own.
TRAINING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("loss",)),
    ("online linear probe top-1 on the training views (eval.online_linear)", ("online_linear_train_top1",)),
    ("learning rate", ("lr",)),
    ("cosine of positive pairs and of the hardest negative", ("positive_cosine", "hardest_negative_cosine")),
    ("contrastive accuracy and logit entropy (normalised)", ("contrastive_accuracy", "logit_entropy")),
    ("alignment (lower: positive pairs closer)", ("alignment",)),
    ("uniformity (lower: spread more evenly)", ("uniformity",)),
    ("std of the L2-normalised embeddings per dimension (about 1/sqrt(D) healthy, near 0 collapsed)", ("embedding_std",)),
    ("views per second", ("views_per_second",)),
)
#: Prefixes of the recipe's scheduled and learned values in the records (``schedule/loss.temperature``,
#: ``learned/loss.temperature``; `contrastive.training.scheduled`), each drawn in a panel of its own
#: after the learning rate, titled by what it is.
VALUE_PREFIXES = {"schedule/": "scheduled", "learned/": "learned"}
#: Panels of the online evaluation, over epochs.
EVALUATION_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("online kNN top-1", ("knn_top1",)),
    ("online linear probe top-1 (eval.online_linear)", ("online_linear_top1",)),
    ("online kNN top-5", ("knn_top5",)),
    ("effective rank of the test features (RankMe)", ("effective_rank",)),
)
BASELINE_STYLES = {"random_init": ("random init (final)", ":"), "raw_pixels": ("raw pixels (final)", "--")}


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def panels_for(records: list[dict[str, Any]], known: Sequence[tuple[str, tuple[str, ...]]]) -> list[tuple[str, list[str]]]:
    """``(title, keys)`` of the panels the numeric keys of ``records`` fill, in the order of ``known``,
    then one panel per key ``known`` does not name."""
    present = numeric_keys(records)
    panels = [(title, [k for k in keys if k in present]) for title, keys in known]
    named = {k for _, keys in known for k in keys}
    panels += [(key, [key]) for key in present if key not in named]
    return [(title, keys) for title, keys in panels if keys]


def training_panels(records: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The panels of the training curves: `TRAINING_PANELS`, with one panel per scheduled or
    learned value (`VALUE_PREFIXES`) right after the learning rate's, then the others' panels."""
    known: list[tuple[str, tuple[str, ...]]] = []
    for title, keys in TRAINING_PANELS:
        known.append((title, keys))
        if keys == ("lr",):
            known += [(f"{key.split('/', 1)[1]} ({what})", (key,)) for key in numeric_keys(records)
                      for prefix, what in VALUE_PREFIXES.items() if key.startswith(prefix)]
    return panels_for(records, known)


def _grid(count: int, columns: int = 2, row_height: float = 2.6, width: float = 11.0):
    rows = math.ceil(count / columns)
    figure = _figure(width, row_height * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes


def curves_png(records: list[dict[str, Any]], panels: list[tuple[str, list[str]]], axis: str = "step",
               finals: dict[str, dict[str, float]] | None = None) -> bytes:
    """One panel per ``(title, keys)`` of ``panels``: each key over ``axis``.  ``finals``:
    ``{key: {label: value}}`` drawn as horizontal reference lines (the final evaluation)."""
    figure, axes = _grid(len(panels))
    for ax, (title, keys) in zip(axes, panels, strict=False):
        for key in keys:
            x, y = series(records, key, axis)
            ax.plot(x, y, marker="o" if len(x) <= 30 else None, markersize=3, label=key)
        for label, value in (finals or {}).get(keys[0], {}).items():
            style = next((s for name, s in BASELINE_STYLES.values() if name == label), "-")
            ax.axhline(value, color="0.4", linestyle=style, linewidth=1, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(axis)
        ax.grid(alpha=0.3)
        if len(ax.get_legend_handles_labels()[0]) > 1:
            ax.legend(fontsize=8)
        if axis == "epoch":
            ax.xaxis.get_major_locator().set_params(integer=True)
    return png(figure)


def label_colours(count: int):
    """A colour per class: matplotlib's qualitative tab10 / tab20, a continuous map beyond 20."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](i / max(count - 1, 1)) for i in range(count)]


def map_png(coords: np.ndarray, labels: np.ndarray, classes: list[str] | None, title: str) -> bytes:
    """Scatter of ``coords`` ``(n, 2)`` coloured by ``labels`` ``(n,)`` (-1: no label), a legend
    of class names up to 20 classes."""
    figure = _figure(7.5, 6.0)
    ax = figure.subplots()
    labelled = labels.size and labels.min() >= 0
    if not labelled:
        ax.scatter(coords[:, 0], coords[:, 1], s=8, color="tab:blue", alpha=0.7, linewidths=0)
    else:
        count = int(labels.max()) + 1
        colours = label_colours(count)
        for label in range(count):
            chosen = labels == label
            if chosen.any():
                name = classes[label] if classes and label < len(classes) else str(label)
                ax.scatter(coords[chosen, 0], coords[chosen, 1], s=8, color=colours[label], alpha=0.8,
                           linewidths=0, label=name)
        if count <= 20:
            ax.legend(fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    return png(figure)


def _show(ax, image: np.ndarray, aspect: float | None = None) -> None:
    """``(H, W, C)`` in [0, 1] (C = 1: grey) on ``ax``, without ticks; ``aspect``: width / height
    to stretch the square image back to."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    if aspect:
        ax.set_aspect(1.0 / aspect)
    ax.set_xticks([])
    ax.set_yticks([])


def _border(ax, colour: str, width: float = 4.0) -> None:
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def _name(label: int, classes: list[str] | None) -> str:
    if label < 0:
        return ""
    name = classes[label] if classes and label < len(classes) else str(label)
    return name if len(name) <= 14 else name[:13] + "…"


def neighbours_png(found: Neighbours, classes: list[str] | None) -> bytes:
    """A row per query: the query image, then its nearest training images with their cosine;
    with labels, a red border marks a neighbour of another class than the query, green one of the same."""
    rows, k = len(found.queries), max((len(r) for r in found.images), default=0)
    figure = _figure(1.35 * (k + 1), 1.5 * rows)
    axes = figure.subplots(rows, k + 1, squeeze=False)
    for row in range(rows):
        query = axes[row][0]
        _show(query, found.queries[row])
        _border(query, "black", 2.0)
        query.set_title(f"query {_name(found.query_labels[row], classes)}".strip(), fontsize=8, fontweight="bold")
        for rank in range(k):
            ax = axes[row][rank + 1]
            if rank >= len(found.images[row]):
                ax.set_visible(False)
                continue
            _show(ax, found.images[row][rank])
            label = found.labels[row][rank]
            if found.labelled:
                _border(ax, "#2ca02c" if label == found.query_labels[row] else "#d62728")
            ax.set_title(f"{_name(label, classes)} {found.cosines[row][rank]:.2f}".strip(), fontsize=8)
    return png(figure)


def views_png(groups: list[ViewGroupPreview]) -> bytes:
    """A row per view group, titled with its pipeline: the source image (framed), then its views."""
    columns = 1 + max(len(g.views) for g in groups)
    figure = _figure(1.35 * columns, 1.9 * len(groups))
    for sub, group in zip(figure.subfigures(len(groups), 1, squeeze=False).ravel(), groups, strict=True):
        sub.suptitle(group.title, fontsize=9, x=0.01, horizontalalignment="left")
        axes = sub.subplots(1, columns, squeeze=False)[0]
        _show(axes[0], group.original, group.aspect)
        _border(axes[0], "black", 2.0)
        h, w = group.original.shape[:2]
        axes[0].set_title(f"image {w}×{h}", fontsize=8, fontweight="bold")
        for ax, view in zip(axes[1:], group.views, strict=False):
            _show(ax, view)
            ax.set_title(f"view {view.shape[1]}×{view.shape[0]}", fontsize=8)
        for ax in axes[1 + len(group.views):]:
            ax.set_visible(False)
    return png(figure)
