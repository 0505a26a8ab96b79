"""``Method.set_training_length``: the loop tells the method its steps per epoch and in all."""

from __future__ import annotations

import contrastive
from contrastive import recipe as recipes
from contrastive.methods.simclr import SimCLR
from contrastive.training.loop import fit
from tests.helpers import tiny_recipe_dict

told: list[tuple[int, int]] = []


class Told(SimCLR):
    def set_training_length(self, steps_per_epoch: int, total_steps: int) -> None:
        super().set_training_length(steps_per_epoch, total_steps)
        told.append((self.steps_per_epoch, self.total_steps))


def test_the_loop_tells_the_method_its_steps_per_epoch_and_in_all(tmp_path):
    registries = contrastive.load_registries(autoload=False)
    with registries.registering_as("acme-methods"):
        registries.methods.register("told", Told)
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_epochs=2, max_steps=3, batch_size=64)
    raw["method"] = {"name": "told", "args": {}}
    recipe = recipes.validate(raw, registries)
    told.clear()
    results = fit(recipe, registries)
    per_epoch = len(registries.datasets.build("digits", image_size=16)) // 64  # the loader drops the last batch
    assert told == [(per_epoch, 3)]  # trainer.max_steps cuts the run short of its 2 epochs
    assert results["steps"] == 3
    assert SimCLR.steps_per_epoch is None  # outside a run: unset
