"""The recipe's ``callbacks:`` (the ``callbacks`` kind), in-process on the tiny recipe: they run
after the built-ins, log to metrics.jsonl, stop the run, carry their state through checkpoints
(resume bit-exact), and a failing one is named with its plugin."""

from __future__ import annotations

import json

import pytest
import torch

import contrastive
from contrastive import recipe as recipes
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.training import fit
from contrastive.training.callbacks import CallbackError
from tests.helpers import assert_resume_is_exact, tiny_recipe_dict


class Counting:
    """Counts steps, sums the loss, logs both every step; asks to stop at ``stop_at`` steps."""

    def __init__(self, stop_at: int = 0, fail_at: int = 0) -> None:
        self.stop_at, self.fail_at = stop_at, fail_at
        self.count, self.loss_sum = 0, 0.0
        self.calls: list[str] = []

    def on_fit_start(self, run):
        self.calls.append(f"start {run.step}/{run.total_steps}")

    def on_step_end(self, run, result):
        assert result is run.result and run.backbone is run.method.backbone
        self.count += 1
        self.loss_sum += result.loss
        if run.step == self.fail_at:
            raise ValueError("the counter broke")
        run.metrics.log({"counted": self.count, "loss_sum": self.loss_sum})
        if self.stop_at and self.count >= self.stop_at:
            run.request_stop(f"counted {self.count} steps")

    def on_fit_end(self, run):
        self.calls.append(f"end {run.step}")

    def state_dict(self):
        return {"count": self.count, "loss_sum": self.loss_sum}

    def load_state_dict(self, state):
        self.count, self.loss_sum = state["count"], state["loss_sum"]


built: list[Counting] = []


def counting(**args) -> Counting:
    built.append(Counting(**args))
    return built[-1]


@pytest.fixture
def plugin_registries():
    registries = contrastive.load_registries(autoload=False)
    with registries.registering_as("acme-callbacks"):
        registries.callbacks.register("counting", counting)
    built.clear()
    return registries


def _fit(raw, registries, *overrides):
    recipe = recipes.validate(recipes.apply_overrides(raw, recipes.parse_overrides(list(overrides))), registries)
    return fit(recipe, registries)


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_recipe_callback_logs_every_step_stops_the_run_and_resumes_exactly(tmp_path, plugin_registries):
    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=5, checkpoint_every_steps=1, log_every=2)
    raw["callbacks"] = [{"name": "counting", "args": {"stop_at": 4}}]
    results = _fit(raw, plugin_registries)
    assert results["steps"] == 4 and results["stopped_early"] is True
    assert built[-1].calls == ["start 0/5", "end 4"]
    counted = [r for r in _records(out) if "counted" in r]
    assert [(r["step"], r["counted"]) for r in counted] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    state = json.loads((out / "checkpoints" / "step_000000004" / "state.json").read_text())
    assert state["callbacks"]["counting"]["count"] == 4 and state["progress"]["stopped_early"] is True

    # resumed from step 3 (its checkpoint has the callback at 3 steps): the same weights, the same state
    assert_resume_is_exact(out, tmp_path / "copy", lambda copy: _fit(raw, plugin_registries, "--trainer.output_dir",
                                                                        str(copy), "--trainer.resume", "true"))
    again = json.loads((tmp_path / "copy" / "checkpoints" / "step_000000004" / "state.json").read_text())
    assert again["callbacks"] == state["callbacks"]
    assert [r["counted"] for r in _records(tmp_path / "copy") if "counted" in r] == [1, 2, 3, 4]

    # a stopped run is finished: resuming it trains no further
    assert _fit(raw, plugin_registries, "--trainer.resume", "true")["steps"] == 4


def test_a_failing_callback_is_named_with_its_plugin_and_leaves_the_checkpoints(tmp_path, plugin_registries):
    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=4, checkpoint_every_steps=1)
    raw["callbacks"] = [{"name": "counting", "args": {"fail_at": 3}}]
    with pytest.raises(CallbackError, match=r"callback 'counting' \(from acme-callbacks\) failed in on_step_end at "
                                            r"step 3: ValueError: the counter broke; the newest checkpoint in .* is intact"):
        _fit(raw, plugin_registries)
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "step_000000002"
    # fixed, the run continues from there (the lock was released)
    assert _fit(raw, plugin_registries, "--trainer.resume", "true", "--callbacks.0.args.fail_at", "0")["steps"] == 4


def test_callbacks_are_checked_with_the_recipe(tmp_path, plugin_registries):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["callbacks"] = [{"name": "countin"}]
    with pytest.raises(RecipeError, match=r"callbacks\.0: unknown callback 'countin' — did you mean 'counting'\?"):
        recipes.validate(raw, plugin_registries)
    raw["callbacks"] = [{"name": "early_stopping", "args": {"monitor": "loss", "patiense": 2}}]
    with pytest.raises(RecipeError, match=r"callbacks\.0: callback 'early_stopping' has no argument 'patiense' — did you mean 'patience'"):
        recipes.validate(raw, plugin_registries)
    raw["callbacks"] = {"name": "early_stopping"}
    with pytest.raises(RecipeError, match="'callbacks' must be a list"):
        recipes.validate(raw, plugin_registries)
    del raw["callbacks"]
    override = recipes.parse_overrides(["--callbacks", "[{name: early_stopping, args: {monitor: loss, mode: min}}]"])
    recipe = recipes.validate(recipes.apply_overrides(raw, override), plugin_registries)
    assert recipe.callbacks[0].args == {"monitor": "loss", "mode": "min"}
    assert recipe.to_dict()["callbacks"] == [{"name": "early_stopping", "args": {"monitor": "loss", "mode": "min"}}]
    assert "callbacks" not in recipes.validate(raw, plugin_registries).to_dict()  # none: config.yaml as before


class FakeView:
    """What early_stopping and backbone_snapshots read of a RunView."""

    def __init__(self, out=None):
        self.records: dict[str, tuple[int, float]] = {}
        self.stop_reason = None
        self.out, self.main, self.epoch = out, True, 0

        class metrics:  # noqa: N801
            latest = self.records.get

        self.metrics = metrics

    def request_stop(self, reason):
        self.stop_reason = reason


def test_early_stopping_counts_evaluations_without_improvement_and_resumes_its_count(registries):
    stopper = registries.callbacks.build("early_stopping", monitor="knn_top1", patience=2, mode="max")
    view = FakeView()
    for step, value in [(10, 0.5), (20, 0.6), (30, 0.6), (30, 0.6)]:  # a record seen twice counts once
        view.records["knn_top1"] = (step, value)
        stopper.on_epoch_end(view)
    assert view.stop_reason is None and stopper.state_dict() == {"best": 0.6, "bad": 1, "seen_step": 30}
    resumed = registries.callbacks.build("early_stopping", monitor="knn_top1", patience=2, mode="max")
    resumed.load_state_dict(json.loads(json.dumps(stopper.state_dict())))
    view.records["knn_top1"] = (40, float("nan"))  # never an improvement
    resumed.on_step_end(view, None)
    assert view.stop_reason == "early_stopping: knn_top1 has not improved on 0.6 for 2 evaluations"
    with pytest.raises(InvalidArgumentsError, match="patience counts evaluations without improvement, >= 1; got 0"):
        registries.callbacks.build("early_stopping", monitor="loss", patience=0)


def test_early_stopping_on_the_loss_stops_a_run(tmp_path, registries):
    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=6)
    # an improvement must be 100 better: the first record is the best, two more end the run
    raw["callbacks"] = [{"name": "early_stopping", "args": {"monitor": "loss", "mode": "min", "patience": 2,
                                                            "min_delta": 100.0}}]
    results = _fit(raw, registries)
    assert results["steps"] == 3 and results["stopped_early"]
    assert (out / "checkpoints" / "step_000000003").is_dir()


def test_backbone_snapshots_are_folders_that_eval_reads(tmp_path, registries):
    from contrastive.evaluation.runs import load_run

    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out))
    recipe = recipes.validate(raw, registries)
    out.mkdir()
    (out / "config.yaml").write_text(recipes.dump(recipe))
    view = FakeView(out)
    view.recipe = recipe
    view.backbone = registries.backbones.build("resnet18", cifar_stem=True)
    snapshots = registries.callbacks.build("backbone_snapshots", every=2)
    for view.epoch in (1, 2, 3, 4):
        snapshots.on_epoch_end(view)
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["epoch_0002", "epoch_0004"]
    _, loaded = load_run(out / "snapshots" / "epoch_0004", registries)
    mine = view.backbone.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in loaded.state_dict().items())


def _agree(rank, world, asks):
    from contrastive.training.preemption import Preemption

    class Accelerator:
        num_processes, device = world, torch.device("cpu")

    return Preemption([]).agreed_with_stop(Accelerator, asks[rank])


def test_a_stop_asked_on_one_process_is_agreed_by_every_process(tmp_path):
    from tests.helpers import run_gloo

    results = run_gloo(_agree, [True, False], worlds=(2,), tmp_path=tmp_path)
    assert results[2] == [(None, True), (None, True)]
