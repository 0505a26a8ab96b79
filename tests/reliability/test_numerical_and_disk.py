"""Numerical faults (non-finite loss: stop or skip) and a full disk while checkpointing."""

from __future__ import annotations

import json
import resource
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file

import contrastive
from contrastive import recipe as recipes
from contrastive.errors import TrainingError
from contrastive.storage import checkpoint
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict


class NaNOnCalls(torch.nn.Module):
    """NT-Xent-like loss that returns NaN on the listed (1-based) calls."""

    def __init__(self, calls=(2, 3)):
        super().__init__()
        self.calls, self.count = set(calls), 0

    def forward(self, z_a, z_b):
        self.count += 1
        loss = (z_a - z_b).pow(2).mean()
        return loss * float("nan") if self.count in self.calls else loss


def nan_fit(tmp_path, **trainer):
    registries = contrastive.load_registries(autoload=False)
    registries.losses.register("nan_on_calls", NaNOnCalls)
    raw = tiny_recipe_dict(str(tmp_path), max_steps=4, checkpoint_every_steps=1, keep_last=5, **trainer)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["loss"] = {"name": "nan_on_calls"}
    raw["eval"] = {"protocols": []}  # no evaluation after fit: these tests are about training
    return fit(recipes.validate(raw, registries), registries)


def test_skip_nonfinite_skips_and_counts(tmp_path):
    results = nan_fit(tmp_path / "skip", skip_nonfinite=2)
    assert results["steps"] == 4 and results["nonfinite_steps_skipped"] == 2
    weights = load_file(str(tmp_path / "skip" / "backbone.safetensors"))
    assert all(torch.isfinite(v.float()).all() for v in weights.values())
    # the skipped steps changed nothing: step 3's weights (and BatchNorm statistics) equal step 1's
    ckpts = tmp_path / "skip" / "checkpoints"
    one, three = (load_file(str(ckpts / f"step_00000000{i}" / "model.safetensors")) for i in (1, 3))
    assert all(torch.equal(one[k], three[k]) for k in one if not k.endswith("num_batches_tracked"))
    assert json.loads((ckpts / "step_000000004" / "state.json").read_text())["progress"]["nonfinite_skipped"] == 2


def test_nonfinite_beyond_the_budget_stops_naming_the_step(tmp_path):
    with pytest.raises(TrainingError, match=r"at step 3 .*after skipping 1.*last good checkpoint: .*step_000000002"):
        nan_fit(tmp_path, skip_nonfinite=1)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path):
    """A real write failure (the file-size limit: EFBIG, as a full disk gives ENOSPC)."""
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    first = checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 1})
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        with pytest.raises(TrainingError, match=r"could not write checkpoint .*step_000000002.*step_000000001 is intact"):
            checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 2})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert checkpoint.complete(tmp_path) == [first] and checkpoint.verify(first) is None
    assert not list(tmp_path.glob(".tmp-*"))


def test_resaving_the_same_step_never_deletes_first(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 5}, keep_last=1)
    calls = []
    real_replace = checkpoint.os.replace

    def failing_second_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new copy into place fails
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", failing_second_replace)
    with pytest.raises(TrainingError, match="No space left"):
        checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 5}, keep_last=1)
    monkeypatch.undo()
    assert checkpoint.complete(tmp_path) == [path] and checkpoint.verify(path) is None
    shutil.rmtree(tmp_path)


def test_restore_failures_are_errors_not_log_lines(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 1})
    with pytest.raises(TrainingError, match="scheduler"):
        checkpoint.load(path, model=model, optimizer=optimizer, scheduler=scheduler)
    with pytest.raises(TrainingError, match="resume with 1 process"):
        checkpoint.load(path, model=model, optimizer=optimizer, world_size=2)
    state = json.loads((path / "state.json").read_text())
    state["rng"][0]["numpy"] = "garbage"
    (path / "state.json").write_text(json.dumps(state))
    with pytest.raises(TrainingError, match="could not restore"):
        checkpoint.load(path, model=model, optimizer=optimizer)
