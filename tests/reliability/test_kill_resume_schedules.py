"""SIGKILL runs whose values change over training mid-way and resume: the same final weights and
the same logged values at every step as an uninterrupted run, bit for bit.

* SimCLR with a learned temperature (a parameter of the loss, with its optimiser state) and a
  scheduled weight decay (set on the decaying param group before every step);
* MoCo with its momentum and temperature (method arguments) on schedules.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from .conftest import assert_same_tensors, kill_after_step_4_then_resume, kill_recipe

# 90 digits in steps of 16: 5 steps an epoch, 10 in all; checkpoints every 3 steps and every epoch
WEIGHT_DECAY = {"schedule": "cosine", "start": 1.0e-3, "end": 1.0e-4, "warmup_epochs": 1, "warmup_start": 0.0}
CASES = {
    "learned": ({"loss": {"name": "ntxent", "args": {"temperature": {"learned": True, "init": 0.3, "lr_scale": 10.0}}}},
                ("learned/loss.temperature", "schedule/optimizer.weight_decay"), "criterion.learned_temperature.log_value"),
    "moco": ({"method": {"name": "moco", "args": {
        "queue_size": 64, "momentum": {"schedule": "linear", "start": 0.9, "end": 0.99},
        "temperature": {"schedule": "periodic_cosine", "min": 0.1, "max": 0.5, "period_epochs": 1}}}},
             ("schedule/method.momentum", "schedule/method.temperature", "schedule/optimizer.weight_decay"), "key_encoder."),
}


def recipe_of(case: str, out) -> dict:
    recipe = kill_recipe(out)
    recipe["optimizer"]["args"]["weight_decay"] = WEIGHT_DECAY
    recipe.update(CASES[case][0])
    if case == "moco":
        del recipe["loss"]
    return recipe


def logged(out, keys) -> dict[int, tuple]:
    found = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            found[record["step"]] = tuple(record[k] for k in keys)
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_sigkill_then_resume_gives_the_same_weights_and_logged_values(case, tmp_path):
    reference, out = kill_after_step_4_then_resume(tmp_path, lambda directory: recipe_of(case, directory))
    final = "checkpoints/step_000000010"
    state = load_file(str(out / final / "model.safetensors"))
    assert any(k.startswith(CASES[case][2]) for k in state)
    assert_same_tensors(reference / final / "model.safetensors", out / final / "model.safetensors")
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
    keys = CASES[case][1]
    values = logged(reference, keys)
    assert sorted(values) == list(range(1, 11))
    assert logged(out, keys) == values
    assert len({v[0] for v in values.values()}) > 5  # the first value really changes from step to step
