"""``contrastive report RUN_DIR``: one self-contained HTML page of what a run learned.

``RUN_DIR/report.html`` (images embedded as PNG data URIs, inline CSS, no script, no network)
holds, each section replaced by a one-line note when its input is missing:

- the training curves over steps (loss, lr, views/s and the contrastive diagnostics the method
  logs — every numeric key of metrics.jsonl's training records, grouped);
- the online evaluation over epochs (``knn_top1``, ``effective_rank``) beside the final scores;
- the final table: learned vs random init vs raw pixels (``results.json`` ``eval``; label-free
  metrics for data without labels);
- a 2-D map (t-SNE, PCA for large samples) of the frozen test features, coloured by label;
- a nearest-neighbour grid: test images and their nearest training images by cosine, a red
  border where the label differs;
- an augmentation preview: one training image and views of it drawn by the run's pipelines.

One job per module: `collect` (files, features, projections: plain arrays),
`plots` (matplotlib figures as PNG bytes), `page` (the HTML).  ``fit`` writes the
report at its end unless the recipe says ``report: false``
([`Report`][contrastive.training.callbacks.report.Report]).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contrastive.errors import EvaluationError
from contrastive.evaluation.report.collect import MAP_POINTS, ReportData, gather
from contrastive.evaluation.report.page import SECTIONS, render
from contrastive.storage.files import atomic_write_text
from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from contrastive.registry import Registries

REPORT_FILE = RunDir.REPORT

__all__ = ["REPORT_FILE", "SECTIONS", "ReportData", "gather", "render", "write_report"]


def write_report(run_dir: str | Path, registries: Registries, *, out: str | Path | None = None, map_method: str = "auto",
                 map_points: int = MAP_POINTS, **given) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``), atomically;
    returns its path.  ``given``: what a caller already holds (``recipe``, ``backbone``, ``data``,
    ``training_data``, ``plan``, ``device``; see `gather`)."""
    if map_method not in ("auto", "tsne", "pca"):
        raise EvaluationError(f"--map must be auto, tsne or pca, got {map_method!r}")
    if map_points < 2:
        raise EvaluationError(f"--map-points must be at least 2, got {map_points}")
    report = gather(run_dir, registries, map_method=map_method, map_points=map_points, **given)
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, render(report))
    except OSError as exc:
        raise EvaluationError(f"cannot write {path}: {exc.strerror or exc}; pass another --out") from exc
    return path
