"""Atomic, verified, pickle-free checkpoints."""

import json
import random

import numpy as np
import pytest
import torch

from contrastive.errors import TrainingError
from contrastive.storage import checkpoint


def make_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_round_trip_restores_everything(tmp_path):
    model, optimizer, scheduler = make_state(0)
    path = checkpoint.save(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler,
                           progress={"global_step": 7, "epoch": 1, "batches_done_in_epoch": 2})
    assert path.name == "step_000000007"
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.safetensors", "optimizer.json",
                                                    "optimizer.safetensors", "state.json"]
    expected = (torch.rand(3), random.random(), np.random.rand())

    fresh_model, fresh_optimizer, fresh_scheduler = make_state(1)
    progress = checkpoint.load(path, model=fresh_model, optimizer=fresh_optimizer, scheduler=fresh_scheduler)
    assert progress["global_step"] == 7
    for a, b in zip(model.state_dict().values(), fresh_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    state, fresh_state = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    for key in state:
        for name in state[key]:
            assert torch.equal(torch.as_tensor(state[key][name]), torch.as_tensor(fresh_state[key][name]))
    assert fresh_scheduler.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    # RNG restored to the moment of saving: the same draws come out again
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_corrupt_newest_falls_back_to_previous(tmp_path):
    model, optimizer, _ = make_state(0)
    first = checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 1})
    second = checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 2})
    data = (second / "model.safetensors").read_bytes()
    (second / "model.safetensors").write_bytes(data[: len(data) // 2])
    path, problems = checkpoint.newest_valid(tmp_path)
    assert path == first
    assert "step_000000002" in problems[0] and "bytes" in problems[0]


def test_temporary_directory_is_never_taken_for_a_checkpoint(tmp_path):
    (tmp_path / ".tmp-step_000000009-123").mkdir()
    (tmp_path / "step_000000010").mkdir()  # no manifest: a half-written rename target
    assert checkpoint.complete(tmp_path) == []


def test_keep_last_prunes_oldest(tmp_path):
    model, optimizer, _ = make_state(0)
    for step in range(1, 5):
        checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": step}, keep_last=2)
    assert [p.name for p in checkpoint.complete(tmp_path)] == ["step_000000003", "step_000000004"]


def test_nothing_is_pickled(tmp_path):
    model, optimizer, scheduler = make_state(0)
    path = checkpoint.save(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, progress={"global_step": 1})
    for file in path.iterdir():
        head = file.read_bytes()[:2]
        assert head != b"\x80\x02" and not head.startswith(b"PK"), f"{file.name} looks like a pickle/zip"
    json.loads((path / "state.json").read_text())


def test_wrong_model_is_a_clear_error(tmp_path):
    model, optimizer, _ = make_state(0)
    path = checkpoint.save(tmp_path, model=model, optimizer=optimizer, progress={"global_step": 1})
    other = torch.nn.Linear(2, 2)
    with pytest.raises(TrainingError, match="does not fit this model"):
        checkpoint.load(path, model=other, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
