"""Schedules and learned values during fit (contrastive.training.scheduled), in-process on the tiny recipe.

* A scheduled temperature is on the loss at every step and in metrics.jsonl with the value each
  step used; a scheduled weight decay moves every group that decays and leaves the others at 0.
* A component that does not keep a scheduled argument as a float attribute of its name is refused
  when the run is built.
* A learned temperature trains (its lr_scale applied; under trainer.accumulate too), is logged
  with the value each step used, stays within its bounds, and lives in the checkpoints.
* Resumed from a checkpoint, both give the uninterrupted run's weights bit for bit and its logged values.
* The report draws each scheduled or learned value in a panel of its own after the learning rate.
"""

from __future__ import annotations

import json
import math

import pytest
from safetensors.torch import load_file

import contrastive
from contrastive import recipe as recipes
from contrastive.components.losses import NTXentLoss
from contrastive.errors import RecipeError
from contrastive.evaluation.report import page, plots
from contrastive.evaluation.report.collect import ReportData
from contrastive.methods.simclr import SimCLR
from contrastive.recipe.scheduled import optimizer_args, scheduled_args
from contrastive.training import fit
from contrastive.training.lr_groups import split_param_groups
from contrastive.training.scheduled import ScheduledValues
from tests.helpers import Head, Pool, assert_resume_is_exact, tiny_recipe_dict

TEMPERATURE = {"schedule": "periodic_cosine", "min": 0.2, "max": 0.6, "period_steps": 3}
WEIGHT_DECAY = {"schedule": "linear", "start": 0.0, "end": 1.0e-3}


def tiny(out, **trainer) -> dict:
    raw = tiny_recipe_dict(str(out), **{"max_steps": 4, "checkpoint_every_steps": 1, "keep_last": 10, **trainer})
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["scheduler"] = {"name": "constant"}  # the last step still changes the weights (cosine ends at lr 0)
    raw["eval"] = {"protocols": [], "online_linear": False}
    return raw


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


class TemperatureSeen:
    """A recipe callback: the loss's temperature attribute at the end of every step."""

    seen: list[float] = []

    def on_step_end(self, run, result):
        TemperatureSeen.seen.append(run.method.criterion.temperature)


@pytest.fixture
def plugin_registries():
    registries = contrastive.load_registries(autoload=False)
    with registries.registering_as("acme-tests"):
        registries.callbacks.register("temperature_seen", TemperatureSeen)
        registries.losses.register("inverse_ntxent", InverseTemperature)
    TemperatureSeen.seen = []
    return registries


class InverseTemperature(NTXentLoss):
    """Keeps 1/τ, not τ: a schedule set on ``temperature`` would do nothing, so it is refused."""

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__(temperature)
        del self._temperature
        self.inverse = 1.0 / temperature

    @property
    def temperature(self):
        return None


def test_scheduled_temperature_and_weight_decay_are_set_logged_and_resume_exactly(tmp_path, plugin_registries):
    out = tmp_path / "run"

    def raw(directory, **trainer):
        recipe = tiny(directory, **trainer)
        recipe["loss"]["args"]["temperature"] = TEMPERATURE
        recipe["optimizer"]["args"]["weight_decay"] = WEIGHT_DECAY
        recipe["callbacks"] = [{"name": "temperature_seen"}]
        return recipes.validate(recipe, plugin_registries)

    results = fit(raw(out), plugin_registries)
    assert results["steps"] == 4
    temperature, weight_decay = (item.schedule for item in scheduled_args(raw(out)))
    logged = records(out)
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    expected = [temperature.at(s, 1, 4) for s in range(4)]  # period and ends in steps: the epoch length does not count
    assert [r["schedule/loss.temperature"] for r in logged] == expected
    assert expected == [0.6, pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.6)]
    assert TemperatureSeen.seen == expected  # what the loss held during each step
    assert [r["schedule/optimizer.weight_decay"] for r in logged] == [weight_decay.at(s, 1, 4) for s in range(4)]

    assert_resume_is_exact(out, tmp_path / "copy", lambda copy: fit(raw(copy, resume=True), plugin_registries))
    again = records(tmp_path / "copy")
    for key in ("schedule/loss.temperature", "schedule/optimizer.weight_decay"):
        assert [r[key] for r in again] == [r[key] for r in logged]


def test_weight_decay_follows_its_schedule_only_where_the_optimizer_decays(registries):
    recipe = recipes.validate(tiny("unused", max_steps=10) | {"optimizer": {"name": "sgd", "args": {
        "lr": 0.1, "weight_decay": {"schedule": "cosine", "start": 0.0, "end": 0.01, "warmup_steps": 2,
                                    "warmup_start": 0.005}}}}, registries)
    method = SimCLR(Pool(), Head(6, 4), NTXentLoss(0.5))
    named = list(method.trainable_parameters())
    optimizer = registries.optimizers.build("sgd", named_parameters=named, batch_size=16,
                                            **optimizer_args(recipe.optimizer.args))
    split_param_groups(optimizer, named, method.param_group_options)
    values = ScheduledValues.for_run(recipe, method, method.criterion, optimizer, steps_per_epoch=5, total_steps=10)
    (schedule,) = (item.schedule for item in scheduled_args(recipe))
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert sorted(groups) == ["decay", "no_decay"]
    for step in range(10):
        values.set_for_step(step)
        assert groups["decay"]["weight_decay"] == schedule.at(step, 5, 10)
        assert groups["no_decay"]["weight_decay"] == 0
    assert [schedule.at(s, 5, 10) for s in (0, 1, 2, 9)] == [0.005, 0.0025, 0.0, pytest.approx(0.01)]
    assert values.record() == {"schedule/optimizer.weight_decay": schedule.at(9, 5, 10)}
    optimizer.load_state_dict(optimizer.state_dict())  # as a resume does: new group mappings
    values.set_for_step(1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0025, 0]


def test_a_component_that_does_not_keep_the_argument_is_refused(tmp_path, plugin_registries):
    raw = tiny(tmp_path)
    raw["loss"] = {"name": "inverse_ntxent", "args": {"temperature": TEMPERATURE}}
    with pytest.raises(RecipeError, match=r"^loss.args.temperature cannot follow a schedule: loss 'inverse_ntxent' does "
                                          r"not keep it as the float attribute 'temperature' \(it holds None, built with "
                                          r"0.6\), which the loop sets every step; give a number$"):
        fit(recipes.validate(raw, plugin_registries), plugin_registries)


LEARNED = {"learned": True, "init": 0.2, "min": 0.05, "max": 0.5, "lr_scale": 20.0}


def test_learned_temperature_trains_is_logged_and_resumes_exactly(tmp_path, registries):
    out = tmp_path / "run"

    def raw(directory, **trainer):
        recipe = tiny(directory, **trainer)
        recipe["loss"]["args"]["temperature"] = LEARNED
        return recipes.validate(recipe, registries)

    fit(raw(out), registries)
    used = [r["learned/loss.temperature"] for r in records(out)]
    assert used[0] == pytest.approx(0.2, abs=1e-6)  # the first step uses init
    assert all(0.05 <= t <= 0.5 for t in used) and len(set(used)) == 4  # it moves, within its bounds
    for step in (1, 2, 3):  # the value logged at step k + 1 is the parameter step k left in its checkpoint
        state = load_file(str(out / "checkpoints" / f"step_{step:09d}" / "model.safetensors"))
        assert used[step] == pytest.approx(math.exp(float(state["criterion.learned_temperature.log_value"])), abs=1e-6)

    assert_resume_is_exact(out, tmp_path / "copy", lambda copy: fit(raw(copy, resume=True), registries))
    assert [r["learned/loss.temperature"] for r in records(tmp_path / "copy")] == used


def test_a_learned_temperature_trains_under_accumulation(tmp_path, registries):
    recipe = tiny(tmp_path, max_steps=3, batch_size=8, accumulate=2)  # GradCache: τ is used by the loss alone
    recipe["loss"]["args"]["temperature"] = LEARNED
    fit(recipes.validate(recipe, registries), registries)
    used = [r["learned/loss.temperature"] for r in records(tmp_path)]
    assert used[0] == pytest.approx(0.2, abs=1e-6) and len(set(used)) == 3


def test_the_loop_keeps_a_learned_value_within_its_bounds(tmp_path, registries):
    recipe = tiny(tmp_path, max_steps=2)
    recipe["loss"]["args"]["temperature"] = LEARNED | {"lr_scale": 1.0e5}  # steps far past either bound
    fit(recipes.validate(recipe, registries), registries)
    for step in (1, 2):
        state = load_file(str(tmp_path / "checkpoints" / f"step_{step:09d}" / "model.safetensors"))
        value = math.exp(float(state["criterion.learned_temperature.log_value"]))
        assert value == pytest.approx(0.05, rel=1e-6) or value == pytest.approx(0.5, rel=1e-6)
    assert records(tmp_path)[1]["learned/loss.temperature"] in (pytest.approx(0.05, rel=1e-6), pytest.approx(0.5, rel=1e-6))


def test_the_report_draws_scheduled_and_learned_values_after_the_learning_rate(tmp_path):
    training = [{"step": s, "epoch": 0, "loss": 4.0 - s / 10, "lr": 0.1, "schedule/loss.temperature": 0.5 - s / 100,
                 "learned/method.temperature": 0.1 + s / 100, "views_per_second": 100.0} for s in range(1, 6)]
    titles = [title for title, _ in plots.training_panels(training)]
    assert titles == ["loss", "learning rate", "loss.temperature (scheduled)", "method.temperature (learned)",
                      "views per second"]
    html = page.curves(ReportData(run=tmp_path, training=training))
    assert "schedule/loss.temperature" in html and "learned/method.temperature" in html and "data:image/png;base64," in html
