"""``contrastive sweep``: train a grid of recipe variants one after another and tabulate them.

    contrastive sweep --recipe R --grid loss.args.temperature=0.1,0.2,0.5 --grid trainer.batch_size=64,256
                      --out DIR [recipe overrides ...]

Each ``--grid KEY=V1,V2,...`` is one axis; its values are recipe overrides parsed exactly as
``--KEY V`` is (YAML; commas inside ``[...]``, ``{...}`` or quotes do not split), and the cells
are the cartesian product of the axes, first axis outermost.  Every other override applies to
every cell.  All cells are validated (`plan`) before the first one trains, so a bad key
or value stops the sweep at once with the usual one-line error.

Each cell trains in its own run directory ``DIR/<cell name>`` (``trainer.output_dir``; the
name is the cell's ``KEY=VALUE`` pairs joined by commas, made filesystem-safe by `cell_name`)
with ``trainer.resume: auto``.  A rerun of the same command therefore

* skips a *finished* cell — a complete ``results.json`` beside a ``config.yaml`` of the same
  resolved recipe (compared as ``resume: auto`` compares, `recipe_differences`);
* continues an *interrupted* one (checkpoints, no results) from its newest checkpoint;
* refuses, before training, a ``DIR`` whose cells were trained with another recipe.

A cell that fails with a [`ContrastiveError`][contrastive.errors.ContrastiveError] (a non-finite loss,
a batch larger than the data, ...) is recorded as ``failed`` with its one-line error and the
sweep goes on (a rerun tries it again); when every cell failed the command exits 2.  A
preemption signal (Ctrl-C, SIGTERM) during a cell lets ``fit`` save a checkpoint and stops the
whole sweep with ``128 + signal``; rerunning continues where it stopped.

``DIR/sweep.json``, ``DIR/sweep.csv`` (one row per cell: the grid values, kNN and linear top-1
of the learned backbone, final loss, wall time, status) and ``DIR/heatmap.png``
(`contrastive.tools.sweep_plot`) are rewritten after every cell.  The cells run in one process:
under several processes (``accelerate launch``, ``torchrun``) the sweep refuses to start.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive import recipe as recipes
from contrastive.errors import ContrastiveError, Preempted, RecipeError, TrainingError
from contrastive.storage.files import atomic_write, atomic_write_text, read_json_object
from contrastive.storage.run_dir import RunDir
from contrastive.tools.sweep_plot import SCORES, draw

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: Keys the sweep sets in every cell itself.
OWNED_KEYS = ("trainer.output_dir", "trainer.resume")
STATUSES = ("pending", "interrupted", "done", "failed")
#: Longest cell name (a directory name; file systems allow 255 bytes).
MAX_NAME = 160
_SAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclass(frozen=True)
class Axis:
    """One ``--grid KEY=V1,V2`` axis: the values as written (``texts``) and parsed (``values``)."""

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass
class Cell:
    """One grid point: its values, run directory, validated recipe and outcome."""

    texts: dict[str, str]  # axis key -> value as written
    values: dict[str, Any]  # axis key -> parsed value
    name: str
    run_dir: Path
    recipe: recipes.Recipe
    status: str = "pending"
    scores: dict[str, float | None] = field(default_factory=dict)  # SCORES keys, loss, wall_time_s
    error: str | None = None


@dataclass
class Sweep:
    """A planned (validated) sweep: its axes and cells, in run order."""

    recipe: str | None
    overrides: list[str]
    axes: list[Axis]
    out: Path
    cells: list[Cell]

    def to_dict(self) -> dict[str, Any]:
        """What ``sweep.json`` holds."""
        return {
            "recipe": self.recipe or "quickstart",
            "overrides": self.overrides,
            "grid": [{"key": a.key, "values": list(a.texts)} for a in self.axes],
            "out": str(self.out),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cells": [
                {"name": c.name, "run_dir": str(c.run_dir), "values": c.values, "status": c.status,
                 **{key: c.scores.get(key) for key in (*SCORES, "loss", "wall_time_s")}, "error": c.error}
                for c in self.cells
            ],
        }


# -- the grid -------------------------------------------------------------------------------
def split_values(text: str) -> list[str]:
    """``"0.1,[0.2,1.0],'a,b'"`` -> ``["0.1", "[0.2,1.0]", "'a,b'"]``: commas split values
    except inside brackets, braces or quotes (so a list or mapping value needs no escaping)."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_grid(specs: Sequence[str]) -> list[Axis]:
    """``["loss.args.temperature=0.1,0.2", ...]`` -> axes, values parsed as recipe overrides are."""
    if not specs:
        raise RecipeError("contrastive sweep needs at least one --grid KEY=V1,V2,... (e.g. --grid loss.args.temperature=0.1,0.2,0.5)")
    axes: list[Axis] = []
    for spec in specs:
        key, sep, rest = spec.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key or not rest.strip():
            raise RecipeError(f"--grid '{spec}' should be KEY=V1,V2,... (e.g. --grid loss.args.temperature=0.1,0.2,0.5)")
        texts = split_values(rest)
        if "" in texts:
            raise RecipeError(f"--grid '{spec}' has an empty value; separate values with single commas")
        values = [value for _, value in recipes.parse_overrides([f"--{key}={text}" for text in texts])]
        for i, value in enumerate(values):
            if value in values[:i]:
                raise RecipeError(f"--grid {key} lists the value {texts[i]} twice")
        if any(key == a.key for a in axes):
            raise RecipeError(f"--grid {key} is given twice: list all its values in one --grid {key}=V1,V2,...")
        axes.append(Axis(key, tuple(texts), tuple(values)))
    return axes


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _check_keys(axes: list[Axis], overrides: list[str]) -> None:
    keys = [key for key, _ in recipes.parse_overrides(list(overrides))]
    for axis in axes:
        for other in axes:
            if other is not axis and _overlap(axis.key, other.key):
                raise RecipeError(f"--grid {axis.key} and --grid {other.key} set the same recipe key; keep one")
        for key in keys:
            if _overlap(axis.key, key):
                raise RecipeError(f"--grid {axis.key} is also given as the override --{key}: give it once, as a grid axis or as an override")
    for key in [*keys, *(a.key for a in axes)]:
        for owned in OWNED_KEYS:
            if _overlap(key, owned):
                raise RecipeError(
                    f"the sweep sets {owned} itself (each cell: DIR/<cell name>, resume auto); remove --{key} "
                    f"(the sweep's folder is --out)"
                )


def cell_name(texts: dict[str, str]) -> str:
    """``{"loss.args.temperature": "0.1", "trainer.batch_size": "64"}`` ->
    ``loss.args.temperature=0.1,trainer.batch_size=64``: characters other than letters, digits
    and ``._=,+-`` become ``_``, and a name that had to be changed (or shortened to
    `MAX_NAME`) ends with 8 hex digits of its original's hash, so two cells never share a folder."""
    name = ",".join(f"{key}={text}" for key, text in texts.items())
    safe = _SAFE.sub("_", name)
    if safe == name and len(name) <= MAX_NAME:
        return name
    return f"{safe[: MAX_NAME - 9]}-{sha1(name.encode()).hexdigest()[:8]}"


# -- planning -------------------------------------------------------------------------------
def plan(recipe: str | None, grid: Sequence[str], overrides: Sequence[str], out: str | Path, registries: Registries) -> Sweep:
    """Validate every cell of the sweep and read what ``out`` already holds for each; raises a
    [`RecipeError`][contrastive.errors.RecipeError] (nothing trained, nothing written) for a bad grid, key or value, or an
    ``out`` whose cells were trained with another recipe."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RecipeError(
            "contrastive sweep runs its cells one after another in one process; under accelerate launch / torchrun "
            "train each cell with contrastive fit --trainer.output_dir DIR/<cell> instead"
        )
    overrides = list(overrides)
    axes = parse_grid(grid)
    _check_keys(axes, overrides)
    out = Path(out)
    cells = []
    for choice in itertools.product(*(range(len(a.texts)) for a in axes)):
        texts = {a.key: a.texts[i] for a, i in zip(axes, choice, strict=True)}
        name = cell_name(texts)
        run_dir = out / name
        tokens = [*overrides, *(f"--{key}={text}" for key, text in texts.items()),
                  f"--trainer.output_dir={run_dir}", "--trainer.resume=auto"]
        try:
            cell_recipe = recipes.load(recipe, tokens, registries)
        except ContrastiveError as exc:
            _raise_for_cell(exc, recipe, overrides, registries, texts)
        cell = Cell(texts, {a.key: a.values[i] for a, i in zip(axes, choice, strict=True)}, name, run_dir, cell_recipe)
        _read_state(cell, out)
        cells.append(cell)
    return Sweep(recipe, overrides, axes, out, cells)


def _raise_for_cell(exc: ContrastiveError, recipe, overrides, registries: Registries, texts) -> None:
    """Re-raise a cell's validation error: as it is when the recipe and overrides alone give it
    (it is not the grid's), else naming the grid values that cause it."""
    try:
        recipes.load(recipe, overrides, registries)
    except ContrastiveError as base:
        if str(base) == str(exc):
            raise base from None
    raise RecipeError(f"sweep cell {','.join(f'{k}={t}' for k, t in texts.items())}: {exc}") from None


def resolved_recipe(recipe: recipes.Recipe) -> dict[str, Any]:
    """The recipe as its run's ``config.yaml`` records it (the batch resolved for one process)."""
    return dataclasses.replace(recipe, trainer=recipes.resolve_batch(recipe.trainer, 1)).to_dict()


def _complete(results: dict[str, Any] | None, recipe: recipes.Recipe) -> bool:
    """A results.json of a finished run: training's numbers, and the evaluation if the recipe has one."""
    return bool(results) and "steps" in results and "loss" in results and (not recipe.eval.protocols or "eval" in results)


def _read_state(cell: Cell, out: Path) -> None:
    """Set ``cell``'s status (and scores) from its run directory: done, interrupted or pending."""
    import yaml

    from contrastive.recipe import yaml_values
    from contrastive.storage import checkpoint
    from contrastive.training.resume import recipe_differences

    results = read_json_object(RunDir(cell.run_dir).results)
    started = results is not None or bool(checkpoint.complete(RunDir(cell.run_dir).checkpoints))
    if not started:
        return
    try:
        saved = yaml_values.load(RunDir(cell.run_dir).config.read_text())
    except (OSError, yaml.YAMLError):
        saved = None
    if not isinstance(saved, dict):
        cell.status = "interrupted"  # fit's resume auto decides what the checkpoints are worth
        return
    differences = recipe_differences(saved, resolved_recipe(cell.recipe))
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise RecipeError(
            f"--out '{out}' holds another sweep: its cell {cell.name} was trained with a different recipe ({shown}); "
            f"rerun that sweep's command, or pick a new --out"
        )
    if _complete(results, cell.recipe):
        cell.status, cell.scores = "done", scores(results)
    else:
        cell.status = "interrupted"


def scores(results: dict[str, Any]) -> dict[str, float | None]:
    """A row's numbers from a run's ``results.json``: kNN and linear top-1 of the learned
    backbone (None when not evaluated), the final loss and the wall time (training + evaluation)."""
    evaluation = results.get("eval") or {}
    wall = results.get("wall_time_s")
    if wall is not None and evaluation.get("wall_time_s") is not None:
        wall += evaluation["wall_time_s"]
    return {**{key: evaluation.get(key) for key in SCORES}, "loss": results.get("loss"), "wall_time_s": wall}


# -- running --------------------------------------------------------------------------------
def run(sweep: Sweep, registries: Registries, log: Callable[[str], None] = print) -> Sweep:
    """Train the cells that are not finished, one after another, rewriting the tables after
    each; returns ``sweep`` with every cell's outcome.  Raises [`Preempted`][contrastive.errors.Preempted] when a signal
    stopped a cell (after writing the tables), [`TrainingError`][contrastive.errors.TrainingError] when every cell failed."""
    from contrastive.storage.run_lock import RunLock, holder
    from contrastive.training import fit

    sweep.out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(sweep.out)
    try:
        lock.acquire()
    except RecipeError:
        other = holder(sweep.out) or {}
        raise RecipeError(
            f"--out '{sweep.out}' is being written by another sweep (pid {other.get('pid', '?')}: {other.get('command', '?')}); "
            f"wait for it to finish, stop it, or pick a new --out"
        ) from None
    try:
        write_tables(sweep)
        total = len(sweep.cells)
        for number, cell in enumerate(sweep.cells, 1):
            where = f"[{number}/{total}] {cell.name}"
            if cell.status == "done":
                log(f"{where}: finished before, skipped ({RunDir(cell.run_dir).results})")
                continue
            log(f"{where}: {'continuing' if cell.status == 'interrupted' else 'training'} -> {cell.run_dir}")
            try:
                results = fit(cell.recipe, registries)
            except Preempted as exc:
                cell.status = "interrupted"
                write_tables(sweep)
                stopped = str(exc).split(";")[0]  # fit's "stopped by SIGTERM after step 24 of 30 (epoch 2)"
                if not stopped.startswith("stopped by"):
                    stopped = f"stopped by {signal.Signals(exc.signum).name}"
                raise Preempted(
                    f"sweep {stopped} in cell {number}/{total} ({cell.name}); rerun the same contrastive sweep command "
                    f"to continue (finished cells are skipped, this one resumes from its newest checkpoint)",
                    exc.signum,
                ) from exc
            except ContrastiveError as exc:
                cell.status, cell.error = "failed", (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log(f"{where}: failed: {cell.error}")
            except BaseException:
                cell.status = "interrupted"
                write_tables(sweep)
                raise
            else:
                cell.status, cell.scores, cell.error = "done", scores(results), None
                log(f"{where}: done, {_summary(cell)}")
            write_tables(sweep)
    finally:
        lock.release()
    failed = [c for c in sweep.cells if c.status == "failed"]
    if failed and len(failed) == total:
        raise TrainingError(f"every cell of the sweep failed (the first, {failed[0].name}: {failed[0].error}); "
                            f"see {sweep.out / 'sweep.csv'}")
    return sweep


def _summary(cell: Cell) -> str:
    parts = [f"{title} {cell.scores[key]:.4f}" for key, title in SCORES.items() if cell.scores.get(key) is not None]
    if cell.scores.get("loss") is not None:
        parts.append(f"loss {cell.scores['loss']:.4f}")
    if cell.scores.get("wall_time_s") is not None:
        parts.append(f"{cell.scores['wall_time_s']:.0f} s")
    return ", ".join(parts)


# -- tables ---------------------------------------------------------------------------------
def csv_text(sweep: Sweep) -> str:
    """``sweep.csv``: a header, then one row per cell (grid values as written; empty: no number)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["cell", *(a.key for a in sweep.axes), *SCORES, "loss", "wall_time_s", "status", "error"])
    for cell in sweep.cells:
        numbers = ["" if cell.scores.get(k) is None else cell.scores[k] for k in (*SCORES, "loss", "wall_time_s")]
        writer.writerow([cell.name, *cell.texts.values(), *numbers, cell.status, cell.error or ""])
    return buffer.getvalue()


def write_tables(sweep: Sweep) -> None:
    """Rewrite ``sweep.json``, ``sweep.csv`` and (once a cell has numbers) ``heatmap.png`` in ``out``."""
    atomic_write_text(sweep.out / "sweep.json", json.dumps(sweep.to_dict(), indent=2, default=str))
    atomic_write_text(sweep.out / "sweep.csv", csv_text(sweep))
    if any(_finite(v) for c in sweep.cells for v in c.scores.values()):
        title = f"contrastive sweep: {sweep.recipe or 'quickstart'}"
        axes = [(a.key, list(a.texts)) for a in sweep.axes]
        cells = [(c.texts, c.scores, c.status) for c in sweep.cells]
        atomic_write(sweep.out / "heatmap.png", lambda tmp: draw(axes, cells, tmp, title))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def format_table(sweep: Sweep) -> str:
    """The compact table printed at the end: one line per cell, then the best cell per score."""
    header = [a.key for a in sweep.axes] + list(SCORES.values()) + ["loss", "wall s", "status"]
    rows = []
    for cell in sweep.cells:
        numbers = [f"{cell.scores[k]:.4f}" if _finite(cell.scores.get(k)) else "-" for k in (*SCORES, "loss")]
        wall = cell.scores.get("wall_time_s")
        rows.append([*cell.texts.values(), *numbers, f"{wall:.0f}" if _finite(wall) else "-", cell.status])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    grid_columns = len(sweep.axes)

    def line(row: list[str]) -> str:
        return "  ".join(str(v).ljust(w) if i < grid_columns or i == len(row) - 1 else str(v).rjust(w)
                         for i, (v, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    lines = [f"sweep of {sweep.recipe or 'quickstart'} ({len(sweep.cells)} cells) -> {sweep.out}", line(header)]
    lines += [line(r) for r in rows]
    for key, title in SCORES.items():
        scored = [c for c in sweep.cells if _finite(c.scores.get(key))]
        if scored:
            best = max(scored, key=lambda c: c.scores[key])
            lines.append(f"best {title}: {best.scores[key]:.4f} at {best.name}")
    failed = [c for c in sweep.cells if c.status == "failed"]
    if failed:
        lines.append(f"{len(failed)} cell(s) failed (the error column of {sweep.out / 'sweep.csv'}; a rerun tries them again)")
    plot = f"; plot: {sweep.out / 'heatmap.png'}" if (sweep.out / "heatmap.png").is_file() else ""
    lines.append(f"tables: {sweep.out / 'sweep.csv'}, {sweep.out / 'sweep.json'}{plot}")
    return "\n".join(lines)
