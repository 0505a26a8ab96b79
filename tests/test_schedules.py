"""Scalar schedules ``{schedule: KIND, ...}`` and learned values in recipes (contrastive.schedules,
contrastive.recipe.scheduled): each kind's value at every step against its formula written out
here, the recipe errors (one line naming the key), where schedules may stand, and what
``contrastive check``, ``list --describe`` and ``fit --help`` say about them."""

from __future__ import annotations

import math

import pytest

from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.errors import RecipeError
from contrastive.recipe.scheduled import initial_args, learned_args, optimizer_args, scheduled_args
from contrastive.schedules import Learned, parse_learned, parse_schedule
from tests.helpers import tiny_recipe_dict

E, T = 10, 50  # steps per epoch, steps in the run


def values(raw: dict, steps_per_epoch: int = E, total: int = T) -> list[float]:
    schedule = parse_schedule(raw, "x")
    return [schedule.at(s, steps_per_epoch, total) for s in range(total)]


def test_constant():
    assert values({"schedule": "constant", "value": 0.3}) == [0.3] * T


def test_linear_and_cosine_run_from_start_at_step_0_to_end_at_the_last_step():
    linear = values({"schedule": "linear", "start": 0.5, "end": 0.1})
    cosine = values({"schedule": "cosine", "start": 0.5, "end": 0.1})
    for s in range(T):
        p = s / (T - 1)
        assert linear[s] == pytest.approx(0.5 - 0.4 * p, abs=1e-12)
        assert cosine[s] == pytest.approx(0.1 + 0.4 * (1 + math.cos(math.pi * p)) / 2, abs=1e-12)
    assert (linear[0], linear[-1], cosine[0], cosine[-1]) == (0.5, 0.1, 0.5, 0.1)  # exactly the ends


def test_a_warm_up_in_epochs_counts_the_run_s_steps_per_epoch():
    # 2 epochs of 10 steps: 0 -> 0.5 over steps 0..20, then cosine 0.5 -> 0.1 over steps 20..49
    got = values({"schedule": "cosine", "start": 0.5, "end": 0.1, "warmup_epochs": 2})
    for s in range(20):
        assert got[s] == pytest.approx(0.5 * s / 20, abs=1e-12)
    for s in range(20, T):
        p = (s - 20) / (T - 1 - 20)
        assert got[s] == pytest.approx(0.1 + 0.4 * (1 + math.cos(math.pi * p)) / 2, abs=1e-12)
    steps = values({"schedule": "linear", "start": 0.5, "end": 0.1, "warmup_steps": 20, "warmup_start": 0.2})
    assert steps[0] == 0.2 and steps[10] == pytest.approx(0.35) and steps[20] == 0.5 and steps[-1] == pytest.approx(0.1)
    # with 5 steps an epoch the same recipe warms up for 10 steps
    assert values({"schedule": "cosine", "start": 0.5, "end": 0.1, "warmup_epochs": 2}, 5)[10] == 0.5


def test_warmup_is_dino_s_teacher_temperature():
    got = values({"schedule": "warmup", "start": 0.04, "end": 0.07, "warmup_epochs": 3})  # 30 steps
    for s in range(T):
        assert got[s] == pytest.approx(0.04 + 0.03 * s / 30 if s < 30 else 0.07, abs=1e-12)


def test_periodic_cosine_is_kukleva_et_al_s_schedule():
    # tau(t) = tau_min + (tau_max - tau_min)(1 + cos(2 pi t / T))/2, t in epochs (continuous here)
    got = values({"schedule": "periodic_cosine", "min": 0.1, "max": 1.0, "period_epochs": 2})
    for s in range(T):
        assert got[s] == pytest.approx(0.1 + 0.9 * (1 + math.cos(2 * math.pi * (s / E) / 2)) / 2, abs=1e-12)
    assert got[0] == 1.0 and got[10] == pytest.approx(0.1) and got[20] == pytest.approx(1.0)
    assert values({"schedule": "periodic_cosine", "min": 0.1, "max": 1.0, "period_steps": 20}) == got


@pytest.mark.parametrize("raw", [
    {"schedule": "constant", "value": 0.3},
    {"schedule": "linear", "start": 0.5, "end": 0.1, "warmup_epochs": 0.04, "warmup_start": 0.9},
    {"schedule": "cosine", "start": 0.1, "end": 0.5, "warmup_steps": 0},
    {"schedule": "warmup", "start": 0.04, "end": 0.07, "warmup_epochs": 0},
    {"schedule": "warmup", "start": 0.04, "end": 0.07, "warmup_steps": 3},
    {"schedule": "periodic_cosine", "min": 0.2, "max": 0.7, "period_steps": 8},
])
@pytest.mark.parametrize("steps_per_epoch", [1, 10])
def test_first_is_step_0_and_extremes_bound_every_step(raw, steps_per_epoch):
    schedule = parse_schedule(raw, "x")
    got = values(raw, steps_per_epoch)
    assert got[0] == schedule.first
    low, high = schedule.extremes
    assert all(low - 1e-12 <= v <= high + 1e-12 for v in got)
    assert min(got) == pytest.approx(low) and max(got) == pytest.approx(high)


@pytest.mark.parametrize(("raw", "message"), [
    ({"schedule": "cosin", "start": 0.5, "end": 0.1},
     r"^x: unknown schedule 'cosin' — did you mean 'cosine'\? \(schedules: constant, linear, cosine, warmup, periodic_cosine;"),
    ({"schedule": "cosine", "start": 0.5}, r"^x: a cosine schedule needs end, e.g. --x '\{schedule: cosine, start: 0.5, end: 0.1\}'$"),
    ({"schedule": "cosine", "start": 0.5, "end": 0.1, "stop": 1}, r"^x: a cosine schedule has no key 'stop' \(its keys: start"),
    ({"schedule": "linear", "start": "a", "end": 0.1}, r"^x.start should be a finite number, got 'a'"),
    ({"schedule": "linear", "start": 0.5, "end": 0.1, "warmup_epochs": 1, "warmup_steps": 3},
     r"^x: give warmup_epochs or warmup_steps, not both$"),
    ({"schedule": "linear", "start": 0.5, "end": 0.1, "warmup_steps": 1.5}, r"^x.warmup_steps should be an int >= 0"),
    ({"schedule": "linear", "start": 0.5, "end": 0.1, "warmup_start": 0.1}, r"^x: warmup_start needs warmup_epochs or"),
    ({"schedule": "warmup", "start": 0.04, "end": 0.07}, r"^x: a warmup schedule needs warmup_epochs or warmup_steps"),
    ({"schedule": "periodic_cosine", "min": 1.0, "max": 0.1, "period_epochs": 4}, r"^x: min \(1\) must not exceed max \(0.1\)"),
    ({"schedule": "periodic_cosine", "min": 0.1, "max": 1.0, "period_epochs": 0}, r"^x.period_epochs should be a number > 0"),
    ({"schedule": "periodic_cosine", "min": 0.1, "max": 1.0}, r"^x: a periodic_cosine schedule needs period_epochs or"),
])
def test_bad_schedules_are_one_line_errors(raw, message):
    with pytest.raises(RecipeError, match=message) as caught:
        parse_schedule(raw, "x")
    assert "\n" not in str(caught.value)


def test_learned_values():
    assert parse_learned("learned", "x") == Learned(0.1, 0.01, 1.0, 1.0)
    assert parse_learned({"learned": True, "init": 0.2, "min": 0.05, "lr_scale": 0.1}, "x") == Learned(0.2, 0.05, 1.0, 0.1)
    for raw, message in (({"learned": True, "init": 2.0}, "x: needs min <= init <= max, got min 0.01, init 2, max 1"),
                         ({"learned": True, "min": 0}, r"x.min should be a number > 0 \(the value is learned as its log\)"),
                         ({"learned": True, "start": 1}, "x: a learned value has no key 'start'"),
                         ({"learned": False}, "x should be a number, learned or")):
        with pytest.raises(RecipeError, match=message):
            parse_learned(raw, "x")


# -- in a recipe -----------------------------------------------------------------------------
COSINE = {"schedule": "cosine", "start": 0.5, "end": 0.1}


def load(*overrides: str, registries=None):
    raw = tiny_recipe_dict("unused")
    return recipes.validate(recipes.apply_overrides(raw, recipes.parse_overrides(list(overrides))), registries)


def test_recipe_schedules_are_found_and_parts_get_step_0_values(registries):
    recipe = load("--loss.args.temperature", "{schedule: cosine, start: 0.5, end: 0.1, warmup_steps: 2, warmup_start: 1.0}",
                  "--optimizer.args.weight_decay", "{schedule: linear, start: 0.0, end: 1.0e-4}", registries=registries)
    found = {item.where: item for item in scheduled_args(recipe)}
    assert sorted(found) == ["loss.args.temperature", "optimizer.args.weight_decay"]
    assert found["loss.args.temperature"].metric == "schedule/loss.temperature"
    assert initial_args(recipe.loss.args) == {"temperature": 1.0}
    assert optimizer_args(recipe.optimizer.args)["weight_decay"] == 1.0e-4  # built at its largest: found again
    assert recipe.to_dict()["loss"]["args"]["temperature"]["schedule"] == "cosine"  # config.yaml keeps it as written
    learned = learned_args(load("--loss.args.temperature", "learned"))
    assert [(i.where, i.metric, i.spec) for i in learned] == [("loss.args.temperature", "learned/loss.temperature", Learned())]


@pytest.mark.parametrize(("overrides", "message"), [
    (("--head.args.hidden_dim", str(COSINE)),
     r"^head.args.hidden_dim cannot follow a schedule: schedules are read in method.args, loss.args and "
     r"optimizer.args.weight_decay$"),
    (("--optimizer.args.lr", str(COSINE)), r"^optimizer.args.lr cannot follow a schedule \(the learning rate follows scheduler:\)"),
    (("--loss.args.tile_size", str(COSINE)),
     r"^loss.args.tile_size cannot follow a schedule: loss 'ntxent' takes int or null there"),
    (("--loss.args.temperature", "{schedule: cosine, start: 0.5, end: 0}"),
     r"^loss.args.temperature \(cosine 0.5 → 0\) reaches 0: ntxent: temperature must be > 0, got 0.0$"),
    (("--optimizer.args.weight_decay", "{schedule: linear, start: 0.1, end: -0.1}"),
     r"^optimizer.args.weight_decay \(linear 0.1 → -0.1\) must stay >= 0, reaches -0.1$"),
    (("--loss.name", "dcl", "--loss.args.temperature", "learned"), r"^loss.args.temperature: loss 'dcl' cannot learn temperature"),
    (("--optimizer.args.weight_decay", "learned"), r"^optimizer.args.weight_decay cannot be learned"),
    (("--loss.args.temperature", "{init: 0.1}"), r"^loss.args.temperature should be a number, a schedule"),
    (("--method.name", "moco", "--method.args.momentum", "{schedule: cosine, start: 0.99, end: 1.0}"),
     r"^method.args.momentum \(cosine 0.99 → 1\) reaches 1: moco: momentum must be in \[0, 1\), got 1.0$"),
])
def test_misplaced_or_out_of_range_schedules_are_recipe_errors(overrides, message, registries):
    with pytest.raises(RecipeError, match=message):
        load(*overrides, registries=registries)


def test_a_bad_schedule_fails_without_registries_too():
    with pytest.raises(RecipeError, match="loss.args.temperature: unknown schedule 'cos'"):
        load("--loss.args.temperature", "{schedule: cos, start: 0.5, end: 0.1}")


def test_check_describe_and_help_say_what_may_change(capsys):
    assert main(["check", "--loss.args.temperature", "{schedule: cosine, start: 0.5, end: 0.1}"]) == 0
    out = capsys.readouterr().out
    assert "schedule: loss.args.temperature: cosine 0.5 → 0.1 (logged as schedule/loss.temperature)" in out
    assert main(["check", "--loss.args.temperature", "learned"]) == 0
    assert "learned: loss.args.temperature: learned from 0.1 within [0.01, 1] (logged as learned/loss.temperature)" in \
        capsys.readouterr().out
    assert main(["list", "losses", "--describe", "ntxent"]) == 0
    out = capsys.readouterr().out
    assert "may follow a schedule: temperature (" in out and "may be learned: temperature (learned, or {learned: true" in out
    assert main(["list", "methods", "--describe", "moco"]) == 0
    assert "may follow a schedule: momentum, temperature (" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--loss.args.temperature '{schedule: cosine, start: 0.5, end: 0.1}'" in out and \
        "--loss.args.temperature learned" in out
