"""The training diagnostics of a few runs over steps, one panel per number, one line per run.

    python benchmarks/temperature_curves.py RUN_DIR RUN_DIR [...] --out curves.png
    python benchmarks/temperature_curves.py /tmp/sweep_fmnist/loss.args.temperature=0.1,trainer.batch_size=64 \\
        /tmp/sweep_fmnist/loss.args.temperature=1.0,trainer.batch_size=64 --out docs/images/temperature_curves.png

Reads each run directory's ``metrics.jsonl`` (the records ``fit`` writes every ``trainer.log_every``
steps, docs/diagnostics.md) and draws ``loss``, ``positive_cosine``, ``hardest_negative_cosine``,
``contrastive_accuracy``, ``logit_entropy`` and ``uniformity`` (or the ``--metrics`` given) against
the step, with matplotlib's object API on the Agg canvas.  The pseudo-metric ``temperature`` is the
τ each logged step used: ``schedule/loss.temperature`` or ``learned/loss.temperature`` where the run
logged one, else the fixed number of its ``config.yaml``.  Each line is named by the run's
temperature (a number, a schedule or ``learned``) and batch size, or by ``--labels``.  Meant for the
cells of a ``contrastive sweep`` over ``loss.args.temperature`` (docs/temperature.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

METRICS = ("loss", "positive_cosine", "hardest_negative_cosine", "contrastive_accuracy", "logit_entropy", "uniformity")
#: What each panel's y axis says (docs/diagnostics.md has the definitions).
TITLES = {
    "loss": "training loss",
    "positive_cosine": "positive-pair cosine",
    "hardest_negative_cosine": "hardest-negative cosine",
    "contrastive_accuracy": "contrastive accuracy",
    "logit_entropy": "logit entropy (normalised)",
    "uniformity": "uniformity (lower: more spread)",
    "alignment": "alignment (lower: views closer)",
    "temperature": "temperature τ used",
}
#: Where metrics.jsonl holds the τ a step used, when it is not one fixed number.
TEMPERATURE_KEYS = ("schedule/loss.temperature", "learned/loss.temperature")


def _config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    return (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}


def _temperature_setting(config: dict):
    return ((config.get("loss") or {}).get("args") or {}).get("temperature")


def read_series(run_dir: Path, metrics: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """``{metric: (steps, values)}`` from ``run_dir/metrics.jsonl``, steps ascending.  Records
    without the metric (online kNN, a batch without negatives) are skipped; when a resumed run
    logged a step twice, the later record counts."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl: pass the trainer.output_dir of a run (or a sweep cell)")
    by_step: dict[str, dict[int, float]] = {m: {} for m in metrics}
    fixed = _temperature_setting(_config(run_dir)) if "temperature" in metrics else None
    fixed = float(fixed) if isinstance(fixed, (int, float)) and not isinstance(fixed, bool) else None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        step = record.get("step")
        if not isinstance(step, int):
            continue
        for metric in metrics:
            value = record.get(metric)
            if metric == "temperature" and value is None and "loss" in record:  # a training record
                value = next((record[k] for k in TEMPERATURE_KEYS if k in record), fixed)
            if isinstance(value, (int, float)) and math.isfinite(value):
                by_step[metric][step] = float(value)
    return {m: (sorted(found), [found[s] for s in sorted(found)]) for m, found in by_step.items()}


def temperature_label(setting) -> str:
    """A recipe's ``loss.args.temperature`` in a legend's words: ``τ=0.2``, ``τ cosine 0.5→0.1``,
    ``τ periodic_cosine 0.1–1.0``, ``τ learned``, ``τ learned (lr×0.05)``."""
    if isinstance(setting, dict) and "schedule" in setting:
        kind = setting["schedule"]
        if "min" in setting:
            return f"τ {kind} {setting['min']}–{setting['max']}"
        if "value" in setting:
            return f"τ={setting['value']}"
        return f"τ {kind} {setting.get('start')}→{setting.get('end')}"
    if setting == "learned" or isinstance(setting, dict) and setting.get("learned"):
        scale = setting.get("lr_scale") if isinstance(setting, dict) else None
        return "τ learned" + (f" (lr×{scale})" if scale not in (None, 1, 1.0) else "")
    return f"τ={setting}"


def run_label(run_dir: Path) -> str:
    """``τ=0.1, B=64`` (or ``τ cosine 0.5→0.1, B=64``) from the run's ``config.yaml`` (the folder
    name when it has neither)."""
    config = _config(run_dir)
    temperature = _temperature_setting(config)
    batch = (config.get("trainer") or {}).get("batch_size")
    parts = [temperature_label(temperature) if temperature is not None else "", f"B={batch}" if batch is not None else ""]
    return ", ".join(p for p in parts if p) or run_dir.name


def draw(runs: list[tuple[str, dict[str, tuple[list[int], list[float]]]]], metrics: list[str], path: str,
         title: str = "") -> None:
    """Write one PNG: a panel per metric (three a row), a line per ``(label, series)`` run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(3.6 * columns, 2.7 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, metric in enumerate(metrics):
        ax = grid[index // columns][index % columns]
        for label, series in runs:
            steps, values = series[metric]
            ax.plot(steps, values, marker="." if len(steps) < 40 else None, label=label)
        ax.set_title(TITLES.get(metric, metric), fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if index == 0:
            ax.legend(fontsize=8)
    for index in range(len(metrics), rows * columns):
        grid[index // columns][index % columns].set_axis_off()
    if title:
        figure.suptitle(title, fontsize=11)
    FigureCanvasAgg(figure).print_figure(path, format="png", dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each holds metrics.jsonl)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated metrics.jsonl keys, one panel each")
    parser.add_argument("--labels", help="comma-separated line names, one per run (default: τ and B from config.yaml)")
    parser.add_argument("--title", default="", help="the figure's title")
    args = parser.parse_args(argv)
    metrics = [m for m in args.metrics.split(",") if m]
    labels = args.labels.split(",") if args.labels else [run_label(r) for r in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels names {len(labels)} lines for {len(args.runs)} runs")
    try:
        runs = [(label, read_series(run, metrics)) for label, run in zip(labels, args.runs, strict=True)]
    except FileNotFoundError as exc:
        parser.error(str(exc))
    empty = [m for m in metrics if not any(series[m][0] for _, series in runs)]
    if empty:
        parser.error(f"no run logged {', '.join(empty)} (docs/diagnostics.md lists what metrics.jsonl holds)")
    draw(runs, metrics, args.out, args.title)
    print(f"wrote {args.out}: {len(metrics)} panels, {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
