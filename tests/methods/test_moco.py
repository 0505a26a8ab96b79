"""MoCo v2: the loss against a naive InfoNCE with a queue, keys without gradient, one push per
key under GradCache, the checks before training, and a real fit that resumes bit for bit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import contrastive
from contrastive import recipe as recipes
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.methods.base import Batch
from contrastive.methods.moco import MoCo
from contrastive.training import fit
from tests.helpers import Head, Pool, assert_resume_is_exact, method_grad_cache_step, tiny_recipe_dict

TAU = 0.2




def moco(**args) -> MoCo:
    torch.manual_seed(0)
    return MoCo(Pool(), Head(6, 4), **{"queue_size": 20, "temperature": TAU, **args}).double()


def inputs(n: int = 6, seed: int = 0) -> tuple[list[torch.Tensor], Batch]:
    g = torch.Generator().manual_seed(seed)
    views = [torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return views, Batch(images=images, labels=torch.full((n,), -1), index=torch.arange(n))


def naive_info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """−log exp(q·k₊/τ) / (exp(q·k₊/τ) + Σ_n exp(q·n/τ)), averaged, one query at a time."""
    terms = []
    for i in range(q.shape[0]):
        positive = torch.exp(q[i] @ k[i] / TAU)
        negative = sum(torch.exp(q[i] @ n / TAU) for n in negatives)
        terms.append(-torch.log(positive / (positive + negative)))
    return torch.stack(terms).mean()


def normalized(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_is_info_nce_against_the_queue(symmetric):
    m = moco(symmetric=symmetric)
    views, batch = inputs()
    queued = normalized(torch.randn(12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    m.queue.push(queued)  # 12 of 20 rows filled: the 8 empty rows must not be negatives
    out = m(views, batch)
    loss, logs = m.loss(out, batch)
    q0 = normalized(m.head(m.backbone(views[0])))
    k1 = normalized(m.key_encoder.module(views[1]))
    want = naive_info_nce(q0, k1, queued)
    if symmetric:
        q1 = normalized(m.head(m.backbone(views[1])))
        k0 = normalized(m.key_encoder.module(views[0]))
        want = (want + naive_info_nce(q1, k0, queued)) / 2
    assert out["q"].shape == out["k"].shape == (6, 2 if symmetric else 1, 4)
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-6)
    assert logs == {"queue_fill": 12 / 20}


def test_an_empty_queue_uses_the_batch_s_other_keys():
    m = moco()
    views, batch = inputs()
    out = m(views, batch)
    loss, logs = m.loss(out, batch)
    q, k = out["q"][:, 0], out["k"][:, 0]
    want = torch.stack([naive_info_nce(q[i:i + 1], k[i:i + 1], torch.cat([k[:i], k[i + 1:]])) for i in range(6)]).mean()
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-6)
    assert logs == {"queue_fill": 0.0}


def test_keys_get_no_gradient_and_the_key_encoder_is_not_trained():
    m = moco()
    m.queue.push(normalized(torch.randn(5, 4, dtype=torch.float64)))
    views, batch = inputs()
    out = m(views, batch)
    assert out["q"].requires_grad and not out["k"].requires_grad
    m.loss(out, batch)[0].backward()
    assert all(p.grad is None and not p.requires_grad for p in m.key_encoder.parameters())
    names = [name for name, _ in m.trainable_parameters()]
    assert names and not any(name.startswith("key_encoder.") for name in names)
    assert set(names) == {f"backbone.{n}" for n, _ in m.backbone.named_parameters()} | {
        f"head.{n}" for n, _ in m.head.named_parameters()}
    assert all(p.grad is not None for _, p in m.trainable_parameters())


def test_stats_buffers_are_the_batchnorm_statistics_of_both_encoders_not_the_queue():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone.num_features = 6
    m = MoCo(backbone, Head(6, 4), queue_size=8)
    stats = {id(b) for b in m.stats_buffers()}
    assert {id(b) for b in m.backbone[1].buffers()} <= stats
    assert {id(b) for b in m.key_encoder.module[0][1].buffers()} <= stats
    assert not stats & {id(b) for b in m.queue.buffers()}


def test_after_step_moves_the_key_encoder_and_pushes_each_key_once_under_grad_cache():
    m = moco(queue_size=20, momentum=0.9)
    views, batch = inputs(8)
    before = {n: p.clone() for n, p in m.key_encoder.module.named_parameters()}
    with torch.no_grad():  # a query encoder that has moved away from the key encoder
        for p in m.head.parameters():
            p.add_(0.5)

    loss_1, outputs_1, _ = method_grad_cache_step(m, views, batch, 1)
    loss_2, outputs_2, _ = method_grad_cache_step(m, views, batch, 2)
    torch.testing.assert_close(loss_2, loss_1, rtol=0, atol=1e-10)
    torch.testing.assert_close(outputs_2["k"], outputs_1["k"], rtol=0, atol=1e-12)
    assert int(m.queue.filled) == 0  # forward, loss and GradCache's replays never push
    m.after_step(outputs_2, batch, 1, 10)
    assert int(m.queue.filled) == 8 and int(m.queue.pointer) == 8
    assert torch.equal(m.queue.read(), outputs_2["k"][:, 0])  # the whole step's 8 keys, each once, in order
    query = dict(m.query_encoder().named_parameters())
    for name, p in m.key_encoder.module.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * query[name], rtol=0, atol=1e-15)


def test_symmetric_pushes_both_keys_of_each_image():
    m = moco(symmetric=True)
    views, batch = inputs(4)
    out = {name: t.detach() for name, t in m(views, batch).items()}
    m.after_step(out, batch, 1, 10)
    assert torch.equal(m.queue.read(), torch.cat([out["k"][:, 0], out["k"][:, 1]]))


def test_bad_arguments_are_refused():
    for args, match in [({"queue_size": 0}, "queue_size"), ({"queue_size": 2.5}, "queue_size"),
                        ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"),
                        ({"temperature": 0.0}, "temperature")]:
        with pytest.raises(InvalidArgumentsError, match=match):
            MoCo(Pool(), Head(6, 4), **args)
    with pytest.raises(RecipeError, match="out_dim"):
        MoCo(Pool(), nn.Linear(6, 4))


def test_check_data_refuses_a_queue_larger_than_an_epoch_of_keys():
    m = moco(queue_size=96)
    m.check_data(100, 16)  # 6 steps × 16 = 96 keys an epoch: fits exactly
    with pytest.raises(RecipeError, match=r"queue_size 96 is larger than the 80 keys one epoch pushes.*queue_size 80"):
        m.check_data(95, 16)
    moco(queue_size=160, symmetric=True).check_data(80, 16)  # two keys per image


def test_a_queue_larger_than_the_data_stops_before_training(tmp_path):
    raw = tiny_recipe_dict(str(tmp_path))
    raw["method"] = {"name": "moco", "args": {"queue_size": 4096}}
    registries = contrastive.load_registries(autoload=False)
    with pytest.raises(RecipeError, match=r"^method 'moco': queue_size 4096 is larger than the 1344 keys"):
        fit(recipes.validate(raw, registries), registries)
    assert not (tmp_path / "checkpoints").exists()


def moco_recipe(out, **trainer) -> dict:
    raw = tiny_recipe_dict(str(out), max_steps=4, checkpoint_every_steps=2, keep_last=5, num_workers=0, **trainer)
    raw["method"] = {"name": "moco", "args": {"queue_size": 64}}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    return raw


def test_fit_resumes_bit_for_bit_with_a_half_full_queue(tmp_path, registries):
    out = tmp_path / "run"
    results = fit(recipes.validate(moco_recipe(out), registries), registries)
    assert results["steps"] == 4 and torch.isfinite(torch.tensor(results["loss"]))
    at_2 = load_file(str(out / "checkpoints/step_000000002/model.safetensors"))
    at_4 = load_file(str(out / "checkpoints/step_000000004/model.safetensors"))
    assert int(at_2["queue.filled"]) == 32 and int(at_2["queue.pointer"]) == 32  # half full at the resume point
    assert int(at_4["queue.filled"]) == 64 and int(at_4["queue.pointer"]) == 0
    assert any(key.startswith("key_encoder.") for key in at_4)
    assert not torch.equal(at_2["queue.keys"][32:], at_4["queue.keys"][32:])
    assert_resume_is_exact(out, tmp_path / "copy",
                           lambda copy_dir: fit(recipes.validate(moco_recipe(copy_dir, resume=True), registries), registries))


def test_fit_with_accumulation_pushes_the_whole_step(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path), max_steps=2, batch_size=8, accumulate=2, num_workers=0)
    raw["method"] = {"name": "moco", "args": {"queue_size": 48}}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    results = fit(recipes.validate(raw, registries), registries)
    assert results["global_batch_size"] == 16 and torch.isfinite(torch.tensor(results["loss"]))
