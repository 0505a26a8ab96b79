"""``contrastive.recipe.yaml_values``: ``1e-3`` is a float wherever a recipe value is read (recipe files,
overrides, sweep grids, a run's config.yaml), and PyYAML's own SafeLoader is left as it was."""

import pytest
import yaml

from contrastive import recipe as recipes
from contrastive.recipe import yaml_values
from contrastive.tools import sweep
from tests.helpers import tiny_recipe_dict


@pytest.mark.parametrize(("text", "value"), [
    ("1e-3", 0.001), ("5E4", 50000.0), ("-2e-6", -2e-6), ("+1e5", 1e5), ("1_0e2", 1000.0),
    ("1.0e-3", 0.001), ("0.2", 0.2), ("12", 12), ("0x1f", 31), (".inf", float("inf")),
    ("1e", "1e"), ("e5", "e5"), ("1e-3x", "1e-3x"), ('"1e-3"', "1e-3"), ("[1e-3, 2]", [0.001, 2]),
])  # fmt: skip
def test_exponent_without_a_dot_is_a_float_and_nothing_else_changes(text, value):
    assert yaml_values.load(text) == value
    assert type(yaml_values.load(text)) is type(value)


def test_pyyaml_safe_loader_is_unchanged():
    yaml_values.load("1e-3")
    assert yaml.safe_load("1e-3") == "1e-3"


def test_learning_rate_1e_3_in_a_recipe_file_an_override_and_a_sweep_grid(tmp_path, registries):
    path = tmp_path / "recipe.yaml"
    raw = tiny_recipe_dict(str(tmp_path / "run"))
    path.write_text(yaml.safe_dump(raw).replace("lr: 0.05", "lr: 1e-3"))
    assert "lr: 1e-3" in path.read_text()
    assert recipes.load(str(path), [], registries).optimizer.args["lr"] == 0.001
    assert recipes.load(str(path), ["--optimizer.args.lr", "2e-4"], registries).optimizer.args["lr"] == 2e-4
    planned = sweep.plan(str(path), ["optimizer.args.lr=1e-3,1e-2"], [], tmp_path / "sweep", registries)
    assert [cell.recipe.optimizer.args["lr"] for cell in planned.cells] == [0.001, 0.01]
    assert planned.axes[0].texts == ("1e-3", "1e-2")  # cells keep the values as written
