"""`contrastive sweep`: a 3 x 2 grid on the quickstart recipe at tiny settings (2 steps a cell,
180 generated shapes, cheap evaluation), stopped by a real SIGTERM in its third cell and rerun; a failing
cell; grid and override errors before any training; the grid parsing, cell names and plots."""

import csv
import json
import math
import os
import signal

import pytest
from PIL import Image

import contrastive.training
import contrastive.training.loop
from contrastive.cli import main
from contrastive.errors import RecipeError
from contrastive.storage.run_lock import RunLock
from contrastive.tools import sweep
from contrastive.tools.sweep_plot import draw, panels

# Every cell: 2 steps on 180 shapes; evaluation on 60 test shapes, no baselines.  SMALL: 16 a batch.
TINY = [
    "--trainer.max_steps", "2", "--data.args.num_train", "180",
    "--trainer.log_with", "[]", "--trainer.progress", "false", "--trainer.num_workers", "0",
    "--eval.test_data", "{name: shapes, args: {train: false, num_test: 60, image_size: 16}}",
    "--eval.baselines", "[]", "--eval.monitor_every", "0", "--eval.linear_max_iter", "20",
    "--eval.linear_weight_decay", "0.001",
]
SMALL = [*TINY, "--trainer.batch_size", "16"]
GRID = ["--grid", "loss.args.temperature=0.1,0.2,0.5", "--grid", "trainer.batch_size=16,32"]
CELLS = [f"loss.args.temperature={t},trainer.batch_size={b}" for t in ("0.1", "0.2", "0.5") for b in ("16", "32")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny steps: extra threads only contend


def _table(out):
    with open(out / "sweep.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _sigterm_in_step(monkeypatch, call: int):
    """Send this process SIGTERM during the ``call``-th training step from now (1-based)."""
    real = contrastive.training.loop.train_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(contrastive.training.loop, "train_step", step)


def test_sweep_stopped_by_sigterm_reruns_only_what_is_left(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    _sigterm_in_step(monkeypatch, call=5)  # cells 1-2 take steps 1-4: the third cell's first step
    assert main(["sweep", *GRID, "--out", str(out), *TINY]) == 128 + signal.SIGTERM
    captured = capsys.readouterr()
    assert "rerun the same contrastive sweep command" in captured.err
    rows = _table(out)
    assert [r["cell"] for r in rows] == CELLS
    assert [r["status"] for r in rows] == ["done", "done", "interrupted", "pending", "pending", "pending"]
    assert all(0.0 <= float(r["knn_top1"]) <= 1.0 and 0.0 <= float(r["linear_top1"]) <= 1.0 for r in rows[:2])
    assert rows[2]["knn_top1"] == "" and (out / "heatmap.png").is_file()  # a partial table, a partial map
    stopped = out / CELLS[2]
    assert (stopped / "checkpoints").is_dir() and not (stopped / "results.json").exists()
    finished = {name: (out / name / "results.json").stat().st_mtime_ns for name in CELLS[:2]}

    monkeypatch.undo()
    assert main(["sweep", *GRID, "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for name in CELLS[:2]:
        assert f"{name}: finished before, skipped" in printed
        assert (out / name / "results.json").stat().st_mtime_ns == finished[name]  # not retrained
    assert f"{CELLS[2]}: continuing" in printed and "resumed from" in printed
    assert json.loads((stopped / "results.json").read_text())["steps"] == 2  # 1 step before, 1 after the signal

    rows = _table(out)
    assert [r["status"] for r in rows] == ["done"] * 6
    assert [(r["loss.args.temperature"], r["trainer.batch_size"]) for r in rows] == [
        (t, b) for t in ("0.1", "0.2", "0.5") for b in ("16", "32")]
    for row in rows:  # the table holds each cell's own results.json
        results = json.loads((out / row["cell"] / "results.json").read_text())
        assert float(row["knn_top1"]) == results["eval"]["knn_top1"]
        assert float(row["linear_top1"]) == results["eval"]["linear_top1"]
        assert float(row["loss"]) == results["loss"]
        assert float(row["wall_time_s"]) == pytest.approx(results["wall_time_s"] + results["eval"]["wall_time_s"])
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["grid"] == [{"key": "loss.args.temperature", "values": ["0.1", "0.2", "0.5"]},
                             {"key": "trainer.batch_size", "values": ["16", "32"]}]
    assert saved["cells"][1]["values"] == {"loss.args.temperature": 0.1, "trainer.batch_size": 32}
    config = (out / CELLS[1] / "config.yaml").read_text()
    assert "temperature: 0.1" in config and "batch_size: 32" in config and "resume: auto" in config

    with Image.open(out / "heatmap.png") as image:  # decodes, and is not blank
        image.load()
        low, high = image.convert("L").getextrema()
        assert image.width > 300 and image.height > 150 and high - low > 100
    axes = [(a["key"], a["values"]) for a in saved["grid"]]
    cells = [({k: str(v) for k, v in c["values"].items()}, c, c["status"]) for c in saved["cells"]]
    drawn = panels(axes, cells)  # what heatmap.png shows: one 3 x 2 map per protocol
    assert [p.metric for p in drawn] == ["knn_top1", "linear_top1"]
    assert drawn[0].rows == ["0.1", "0.2", "0.5"] and drawn[0].columns == ["16", "32"]
    assert drawn[0].values == [[float(rows[2 * r + c]["knn_top1"]) for c in range(2)] for r in range(3)]
    assert "best kNN top-1" in printed and "tables:" in printed


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "sweep"
    # tau = 1e-45: the logits overflow, the loss is NaN at the first step (a TrainingError)
    assert main(["sweep", "--grid", "loss.args.temperature=1.0e-45,0.5", "--out", str(out), *SMALL]) == 0
    rows = _table(out)
    assert [r["status"] for r in rows] == ["failed", "done"]
    assert "nan" in rows[0]["error"] and rows[0]["knn_top1"] == "" and rows[1]["knn_top1"] != ""
    assert "1 cell(s) failed" in capsys.readouterr().out
    with Image.open(out / "heatmap.png") as image:  # one axis: a line chart
        image.load()


@pytest.mark.parametrize(("grid", "extra", "message"), [
    ("loss.args.temprature=0.1,0.2", [], "has no argument 'temprature' — did you mean 'temperature'?"),
    ("trainer.batch_size=16,abc", [], "sweep cell trainer.batch_size=abc: trainer.batch_size should be int, got 'abc'"),
    ("trainer.batch_sise=16", [], "unknown trainer key 'batch_sise'"),
    ("loss.args.temperature", [], "should be KEY=V1,V2"),
    ("loss.args.temperature=0.1,,0.2", [], "empty value"),
    ("loss.args.temperature=0.1,0.1", [], "lists the value 0.1 twice"),
    ("loss.args.temperature=0.1,0.2", ["--loss.args.temperature", "0.3"], "give it once"),
    ("loss.args.temperature=0.1,0.2", ["--trainer.output_dir", "x"], "the sweep sets trainer.output_dir itself"),
    ("trainer.resume=true,false", [], "the sweep sets trainer.resume itself"),
    ("loss.args.temperature=0.1,0.2", ["--trainer.max_epochs", "x"], "error: trainer.max_epochs should be int"),
])
def test_bad_grid_or_override_exits_2_before_training(tmp_path, monkeypatch, capsys, grid, extra, message):
    def no_training(*args, **kwargs):
        raise AssertionError("a cell trained")

    monkeypatch.setattr(contrastive.training, "fit", no_training)
    out = tmp_path / "sweep"
    assert main(["sweep", "--grid", grid, "--out", str(out), *TINY, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written


def test_out_holding_another_sweeps_cells_is_refused(tmp_path, registries):
    out = tmp_path / "sweep"
    first = sweep.plan(None, ["loss.args.temperature=0.5"], SMALL, out, registries)
    sweep.run(first, registries, log=lambda line: None)
    with pytest.raises(RecipeError, match=r"holds another sweep: .*trainer\.max_steps: 2 -> 3"):
        sweep.plan(None, ["loss.args.temperature=0.5"], [*SMALL, "--trainer.max_steps", "3"], out, registries)
    again = sweep.plan(None, ["loss.args.temperature=0.5"], SMALL, out, registries)  # the same one: finished
    assert [c.status for c in again.cells] == ["done"]
    busy = RunLock(out)  # another sweep writing DIR
    busy.acquire()
    try:
        with pytest.raises(RecipeError, match="being written by another sweep"):
            sweep.run(again, registries, log=lambda line: None)
    finally:
        busy.release()


def test_several_processes_are_refused(monkeypatch, registries, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match="one process"):
        sweep.plan(None, ["loss.args.temperature=0.5"], SMALL, tmp_path / "sweep", registries)


def test_grid_values_split_on_top_level_commas_and_parse_as_overrides():
    assert sweep.split_values("0.1, [0.2,1.0] ,{a: 1, b: 2},'x,y'") == ["0.1", "[0.2,1.0]", "{a: 1, b: 2}", "'x,y'"]
    (axis,) = sweep.parse_grid(["augmentation.0.args.scale=[0.2,1.0],[0.5,1.0]"])
    assert axis.values == ([0.2, 1.0], [0.5, 1.0]) and axis.texts == ("[0.2,1.0]", "[0.5,1.0]")
    (axis,) = sweep.parse_grid(["--trainer.batch_size=64,128"])
    assert axis.key == "trainer.batch_size" and axis.values == (64, 128)


def test_cell_names_are_readable_and_filesystem_safe():
    assert sweep.cell_name({"loss.args.temperature": "0.1", "trainer.batch_size": "64"}) == \
        "loss.args.temperature=0.1,trainer.batch_size=64"
    odd = [sweep.cell_name({"augmentation.0.args.scale": text}) for text in ("[0.2,1.0]", "[0.2, 1.0]", "'a/b'")]
    assert len(set(odd)) == 3  # changed names keep a hash of the original: no two share a folder
    for name in odd:
        assert "/" not in name and " " not in name and "[" not in name and name.startswith("augmentation.0.args.scale=")
    assert len(sweep.cell_name({"data.args.root": "x" * 500})) <= sweep.MAX_NAME


def test_three_axes_draw_one_row_of_maps_per_value_of_the_third(tmp_path):
    axes = [("a", ["1", "2"]), ("b", ["x", "y", "z"]), ("c", ["p", "q"])]
    cells = []
    for i, (a, b, c) in enumerate((a, b, c) for a in axes[0][1] for b in axes[1][1] for c in axes[2][1]):
        failed = i == 0
        cells.append(({"a": a, "b": b, "c": c}, {} if failed else {"knn_top1": i / 12, "linear_top1": 1 - i / 12},
                      "failed" if failed else "done"))
    drawn = draw(axes, cells, str(tmp_path / "map.png"), "three axes")
    assert [(p.metric, p.fixed) for p in drawn] == [("knn_top1", {"c": "p"}), ("linear_top1", {"c": "p"}),
                                                    ("knn_top1", {"c": "q"}), ("linear_top1", {"c": "q"})]
    assert math.isnan(drawn[0].values[0][0]) and drawn[0].labels[0][0] == "failed"
    assert drawn[2].values[1] == [7 / 12, 9 / 12, 11 / 12]  # a=2, b=x..z, c=q
    with Image.open(tmp_path / "map.png") as image:
        image.load()
