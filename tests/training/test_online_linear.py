"""``eval.online_linear``: the probe changes nothing of training, resumes exactly, averages its
gradient over processes, and is off (with a note) on unlabelled data."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from contrastive import recipe as recipes
from contrastive.training import fit
from contrastive.training.callbacks.online_linear import STATE_KEY, LinearProbe, probe_classes
from tests.helpers import run_gloo, tiny_recipe_dict


def _raw(out, max_steps, **eval_):
    raw = tiny_recipe_dict(str(out), max_steps=max_steps, batch_size=8, checkpoint_every_steps=1, keep_last=10)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": [], **eval_}
    return raw


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _state(out, step):
    return json.loads((out / "checkpoints" / f"step_{step:09d}" / "state.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, registries):
    """4 steps with the probe, 4 without, and the first run's step-2 checkpoint resumed to step 4."""
    root = tmp_path_factory.mktemp("online_linear")
    fit(recipes.validate(_raw(root / "on", 4), registries), registries)
    fit(recipes.validate(_raw(root / "off", 4, online_linear=False), registries), registries)
    shutil.copytree(root / "on", root / "resumed")
    for step in (3, 4):
        shutil.rmtree(root / "resumed" / "checkpoints" / f"step_{step:09d}")
    (root / "resumed" / "backbone.safetensors").unlink()
    resumed = _raw(root / "resumed", 4)
    resumed["trainer"]["resume"] = True
    fit(recipes.validate(resumed, registries), registries)
    return root


def test_training_is_bit_identical_with_and_without_the_probe(runs):
    on, off = runs / "on", runs / "off"
    for step in (1, 4):
        model_on = load_file(on / "checkpoints" / f"step_{step:09d}" / "model.safetensors")
        model_off = load_file(off / "checkpoints" / f"step_{step:09d}" / "model.safetensors")
        assert model_on.keys() == model_off.keys()
        assert all(torch.equal(model_on[k], model_off[k]) for k in model_on), step  # every method parameter and buffer
        assert _state(on, step)["rng"] == _state(off, step)["rng"]  # no global RNG drawn: the same data and views next
    assert [r["loss"] for r in _records(on)] == [r["loss"] for r in _records(off)]
    assert STATE_KEY not in _state(off, 4)["callbacks"]
    assert all("online_linear_train_top1" not in r for r in _records(off))


def test_the_probe_logs_its_train_accuracy_in_each_step_record(runs):
    records = _records(runs / "on")
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # one record per step, as without the probe
    assert all(0.0 <= r["online_linear_train_top1"] <= 1.0 for r in records)
    head = _state(runs / "on", 4)["callbacks"][STATE_KEY]["head"]
    assert head["values"][0]["shape"][0] == 10  # digits: 10 classes


def test_resume_continues_the_probe_exactly(runs):
    straight, resumed = runs / "on", runs / "resumed"
    assert _state(straight, 4)["callbacks"][STATE_KEY] == _state(resumed, 4)["callbacks"][STATE_KEY]
    assert _state(straight, 3)["callbacks"][STATE_KEY] == _state(resumed, 3)["callbacks"][STATE_KEY]
    for step in (3, 4):  # and the backbone, as without the probe
        left = load_file(straight / "checkpoints" / f"step_{step:09d}" / "model.safetensors")
        right = load_file(resumed / "checkpoints" / f"step_{step:09d}" / "model.safetensors")
        assert all(torch.equal(left[k], right[k]) for k in left)
    assert [r["online_linear_train_top1"] for r in _records(straight)] == [r["online_linear_train_top1"] for r in _records(resumed)]


def test_state_round_trips_exactly():
    probe = LinearProbe(6, 3, 1e-2)
    generator = torch.Generator().manual_seed(0)
    features, labels = torch.randn(12, 6, generator=generator), torch.randint(0, 3, (12,), generator=generator)
    probe.step(features, labels)
    copy = LinearProbe(6, 3, 1e-2)
    copy.load_state_dict(json.loads(json.dumps(probe.state_dict())))
    probe.step(features, labels), copy.step(features, labels)
    assert torch.equal(probe.head.weight, copy.head.weight) and torch.equal(probe.head.bias, copy.head.bias)


def test_unlabelled_rows_are_left_out():
    probe = LinearProbe(4, 2, 1e-2)
    features, labels = torch.randn(6, 4), torch.tensor([0, 1, -1, -1, 0, 1])
    assert 0.0 <= probe.step(features, labels) <= 1.0
    assert math.isnan(LinearProbe(4, 2, 1e-2).step(features, torch.full((6,), -1)))


def test_unlabelled_data_turns_it_off():
    unlabelled = SimpleNamespace(has_labels=False, classes=None, __len__=lambda: 4)
    assert probe_classes(unlabelled) is None
    assert probe_classes(SimpleNamespace(has_labels=True, classes=["a", "b", "c"])) == 3


def _probe_in_group(rank, world):
    generator = torch.Generator().manual_seed(0)
    features, labels = torch.randn(3, 16, 8, generator=generator), torch.randint(0, 4, (3, 16), generator=generator)
    probe = LinearProbe(8, 4, 0.05)
    share = 16 // world
    accuracies = [probe.step(f[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share])
                  for f, y in zip(features, labels, strict=True)]
    return probe.head.weight.detach().clone(), probe.head.bias.detach().clone(), accuracies


def test_two_processes_equal_one_on_the_global_batch(tmp_path):
    results = run_gloo(_probe_in_group, worlds=(1, 2), tmp_path=tmp_path)
    (single,), (rank0, rank1) = results[1], results[2]
    assert torch.equal(rank0[0], rank1[0]) and torch.equal(rank0[1], rank1[1])  # every process holds the same head
    torch.testing.assert_close(rank0[0], single[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(rank0[1], single[1], rtol=0, atol=1e-6)
    assert rank0[2] == pytest.approx(single[2], abs=1e-12)
