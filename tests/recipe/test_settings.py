"""The settings of the ``trainer:`` and ``eval:`` sections document and bound themselves: every
field carries a help line (shown by ``contrastive fit --help``) and its range, checked by one
loop; a run's ``plan:`` in a recipe file is skipped, never read as settings."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from contrastive import recipe as recipes
from contrastive.errors import RecipeError
from tests.helpers import tiny_recipe_dict

SECTIONS = {"trainer": recipes.TrainerConfig, "eval": recipes.EvalConfig}


def test_every_setting_has_help_and_fit_help_shows_it(capsys):
    from contrastive.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["fit", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for section, field in [(section, f) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]:
        text = field.metadata.get("help", "")
        assert text.strip(), f"{section}.{field.name} has no help"
        line = next((line for line in out.splitlines() if line.strip().startswith(f"--{section}.{field.name} ")), None)
        assert line is not None and line.rstrip().endswith(text), f"fit --help lacks --{section}.{field.name}: {line}"


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("trainer", "max_epochs", 0, "trainer.max_epochs must be at least 1, got 0"),
    ("trainer", "max_steps", 0, "trainer.max_steps must be at least 1 or null, got 0"),
    ("trainer", "num_workers", -1, "trainer.num_workers must be >= 0 or null, got -1"),
    ("trainer", "collective_timeout", 0.5, "trainer.collective_timeout must be between 1 and 604800, got 0.5"),
    ("eval", "holdout", 1, "eval.holdout is the share of images held out for evaluation and must be strictly between 0 and 1, got 1.0"),
    ("eval", "knn_temperature", float("nan"), "eval.knn_temperature must be > 0, got nan"),
    ("eval", "linear_weight_decay", -0.1, "eval.linear_weight_decay must be >= 0 or auto, got -0.1"),
])
def test_a_setting_out_of_its_bounds_is_one_line_naming_the_range(section, key, value, message):
    raw = tiny_recipe_dict("runs/x")
    raw[section] = {**raw.get(section, {}), key: value}
    with pytest.raises(RecipeError) as caught:
        recipes.validate(raw)
    assert str(caught.value) == message


def test_every_bound_is_shown_in_the_help():
    out = recipes.settings_help()
    assert "--trainer.accumulate               int (default: 1) [at least 1]: forward passes per step" in out
    assert "--eval.holdout                  float (default: 0.1) [strictly between 0 and 1]: data without" in out
    assert "--trainer.cpu                      bool (default: false): force the CPU" in out


def test_a_plan_section_is_skipped_and_never_dumped(tmp_path):
    raw = tiny_recipe_dict(str(tmp_path / "run"))
    plain = recipes.validate(raw)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**raw, "plan": {"batch": {"global": 8}, "views": [[2, 32]]}}))
    read = recipes.read_recipe(str(path))
    assert "plan" in read  # read as written; validation skips it
    assert recipes.validate(read) == plain
    assert recipes.load(str(path), ["--trainer.max_steps", "1"]).trainer.max_steps == 1
    assert "plan" not in yaml.safe_load(recipes.dump(recipes.validate(read)))
    with pytest.raises(RecipeError, match="unknown recipe key 'plan'"):
        recipes.apply_overrides(raw, [("plan.batch", 1)])  # a plan is computed, not set
