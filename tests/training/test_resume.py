"""``trainer.resume`` true / auto (:mod:`contrastive.training.resume`), in-process on the tiny recipe."""

from __future__ import annotations

import json

import pytest

from contrastive import recipe as recipes
from contrastive.errors import RecipeError
from contrastive.training import fit
from contrastive.training.resume import recipe_differences
from tests.helpers import tiny_recipe_dict


def test_recipe_differences_name_the_keys_and_skip_what_does_not_change_training():
    a = {"loss": {"args": {"temperature": 0.5}}, "trainer": {"max_steps": 2, "log_every": 1, "output_dir": "x"},
         "augmentation": [{"name": "crop"}], "eval": {"protocols": ["knn"]}}
    b = {"loss": {"args": {"temperature": 0.2}}, "trainer": {"max_steps": 2, "log_every": 5, "output_dir": "y"},
         "augmentation": [{"name": "crop"}, {"name": "flip"}], "eval": {"protocols": []}}
    assert recipe_differences(a, b) == ["augmentation.1.name: (absent) -> 'flip'", "loss.args.temperature: 0.5 -> 0.2"]
    assert recipe_differences(a, a) == []


def _fit(raw, registries, *overrides):
    return fit(recipes.validate(recipes.apply_overrides(raw, recipes.parse_overrides(list(overrides))), registries), registries)


def test_resume_auto_starts_fresh_continues_the_same_recipe_and_refuses_another(tmp_path, registries, capsys):
    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=2, resume="auto", checkpoint_every_steps=1)
    raw["eval"] = {"protocols": []}
    assert _fit(raw, registries)["steps"] == 2  # nothing there: a fresh start, said only when asked to resume
    assert "starting from scratch" not in capsys.readouterr().out
    asked = tiny_recipe_dict(str(tmp_path / "asked"), max_steps=1, resume=True)
    asked["eval"] = {"protocols": []}
    assert _fit(asked, registries)["steps"] == 1
    assert f"no complete checkpoint in {tmp_path / 'asked' / 'checkpoints'}: starting from scratch" in capsys.readouterr().out

    with pytest.raises(RecipeError, match=r"holds a run of a different recipe \(loss\.args\.temperature: 0\.5 -> 0\.2\)"):
        _fit(raw, registries, "--loss.args.temperature", "0.2")
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    # the same recipe, with more steps allowed through resume true (what auto refuses: max_steps differs)
    with pytest.raises(RecipeError, match=r"trainer\.max_steps: 2 -> 3"):
        _fit(raw, registries, "--trainer.max_steps", "3")
    assert _fit(raw, registries, "--trainer.max_steps", "3", "--trainer.resume", "true")["steps"] == 3
    assert "resumed from" in capsys.readouterr().out


def test_resume_takes_true_false_or_auto(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path), resume="sometimes")
    with pytest.raises(RecipeError, match="trainer.resume should be bool or 'auto'"):
        recipes.validate(raw, registries)
