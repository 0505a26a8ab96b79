"""SIGKILL a real multi-crop SwAV run mid-training and resume: the same final weights, prototypes,
queues and step counter as an uninterrupted run, bit for bit.

90 digits in steps of 16: 5 steps an epoch, 10 in all; checkpoints every 3 steps and every epoch;
the kill comes once step 4 is logged, so the run resumes from the step-3 checkpoint.  The state that
crosses the kill: the prototypes are frozen for steps 1-2 (0.4 epochs) and learn from step 3; the
queues (16 rows each) are pushed from step 2 (0.2 epochs) and used from step 3 on — so the resumed
steps read the queues and the freeze counter from the checkpoint.
"""

from __future__ import annotations

from safetensors.torch import load_file

from .conftest import assert_same_tensors, kill_after_step_4_then_resume, kill_recipe

METHOD = {"name": "swav", "args": {"prototypes": 8, "freeze_prototypes_epochs": 0.4, "queue_size": 16,
                                   "queue_start_epochs": 0.2}}


def recipe_of(out):
    recipe = kill_recipe(out)
    recipe["method"] = METHOD
    single = recipe.pop("augmentation")
    local = [{"name": "random_resized_crop", "args": {"size": 8, "scale": [0.1, 0.4]}}, *single[1:]]
    recipe["views"] = [{"count": 2, "augmentation": single}, {"count": 2, "augmentation": local}]
    del recipe["loss"]
    return recipe


def test_sigkill_then_resume_is_exact(tmp_path):
    reference, out = kill_after_step_4_then_resume(tmp_path, recipe_of)
    final = "checkpoints/step_000000010"
    state = load_file(str(out / final / "model.safetensors"))
    assert int(state["last_step"]) == 10 and int(state["queues.0.filled"]) == 16 and "prototypes.weight" in state
    assert_same_tensors(reference / final / "model.safetensors", out / final / "model.safetensors")
    assert_same_tensors(reference / "backbone.safetensors", out / "backbone.safetensors")
