"""MoCo v3: the symmetric loss against a naive float64 implementation, keys without gradient,
the cosine momentum schedule applied in after_step, GradCache, the recipe checks, and real fits
(resume bit for bit; a ViT by name)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import contrastive
from contrastive import diagnostics
from contrastive import recipe as recipes
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.methods.base import Batch
from contrastive.methods.moco_v3 import MoCoV3
from contrastive.training import fit
from tests.helpers import Pool, assert_resume_is_exact, method_grad_cache_step, tiny_recipe_dict

TAU = 0.2



def mlp(in_dim: int, out_dim: int) -> nn.Module:
    registries = contrastive.load_registries(autoload=False)
    return registries.heads.build("mlp", in_dim=in_dim, hidden_dim=8, out_dim=out_dim, batch_norm=False)


def moco_v3(**args) -> MoCoV3:
    torch.manual_seed(0)
    return MoCoV3(Pool(), mlp(6, 4), mlp(4, 4), **{"temperature": TAU, **args}).double()


def inputs(n: int = 6, seed: int = 0) -> tuple[list[torch.Tensor], Batch]:
    g = torch.Generator().manual_seed(seed)
    views = [torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return views, Batch(images=images, labels=torch.full((n,), -1), index=torch.arange(n))


def naive_ctr(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """2τ · mean_i −log exp(q̂_i·k̂_i/τ) / Σ_j exp(q̂_i·k̂_j/τ), one query at a time in float64."""
    q, k = q.detach().double(), k.detach().double()
    q = q / q.norm(dim=1, keepdim=True)
    k = k / k.norm(dim=1, keepdim=True)
    terms = []
    for i in range(q.shape[0]):
        positive = math.exp(float(q[i] @ k[i]) / tau)
        total = sum(math.exp(float(q[i] @ k[j]) / tau) for j in range(k.shape[0]))
        terms.append(-math.log(positive / total))
    return torch.tensor(2 * tau * sum(terms) / len(terms), dtype=torch.float64)


@pytest.mark.parametrize("tau", [TAU, 0.5])
def test_loss_is_the_symmetric_contrastive_loss_times_two_tau(tau):
    m = moco_v3(temperature=tau)
    views, batch = inputs()
    out = m(views, batch)
    loss = m.loss(out, batch)  # a plain loss on the steps the loop does not record
    with diagnostics.collecting():
        same, logs = m.loss(out, batch)
    q = [m.predictor(m.head(m.backbone(v))) for v in views]
    k = [m.momentum_encoder.module(v) for v in views]
    want = naive_ctr(q[0], k[1], tau) + naive_ctr(q[1], k[0], tau)
    assert out["q"].shape == out["k"].shape == (6, 2, 4)
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-6)
    assert torch.equal(same, loss)
    assert set(logs) == set(diagnostics.NAMES) and 0.0 <= logs["contrastive_accuracy"] <= 1.0


def test_loss_in_float32_under_half_inputs():
    m = moco_v3()
    views, batch = inputs()
    out = {name: t.detach().to(torch.bfloat16).requires_grad_(name == "q") for name, t in m(views, batch).items()}
    loss = m.loss(out, batch)
    assert loss.dtype == torch.float32
    want = naive_ctr(out["q"][:, 0], out["k"][:, 1], TAU) + naive_ctr(out["q"][:, 1], out["k"][:, 0], TAU)
    torch.testing.assert_close(loss.double(), want, rtol=0, atol=1e-5)


def test_keys_get_no_gradient_and_the_momentum_encoder_is_not_trained():
    m = moco_v3()
    views, batch = inputs()
    out = m(views, batch)
    assert out["q"].requires_grad and not out["k"].requires_grad
    m.loss(out, batch).backward()
    assert all(p.grad is None and not p.requires_grad for p in m.momentum_encoder.parameters())
    names = [name for name, _ in m.trainable_parameters()]
    assert not any(name.startswith("momentum_encoder.") for name in names)
    assert set(names) == {f"{part}.{n}" for part in ("backbone", "head", "predictor")
                          for n, _ in getattr(m, part).named_parameters()}
    assert all(p.grad is not None for _, p in m.trainable_parameters())
    # the momentum encoder copies backbone + head, not the predictor
    assert {n for n, _ in m.momentum_encoder.module.named_parameters()} == {
        n for n, _ in nn.Sequential(m.backbone, m.head).named_parameters()}


def test_stats_buffers_are_the_batchnorm_statistics_of_both_encoders():
    torch.manual_seed(0)
    registries = contrastive.load_registries(autoload=False)
    head = registries.heads.build("mlp", in_dim=6, hidden_dim=8, out_dim=4)
    predictor = registries.heads.build("mlp", in_dim=4, hidden_dim=8, out_dim=4)
    m = MoCoV3(Pool(), head, predictor)
    stats = {id(b) for b in m.stats_buffers()}
    assert {id(b) for b in m.head.buffers()} <= stats
    assert {id(b) for b in m.predictor.buffers()} <= stats
    assert {id(b) for b in m.momentum_encoder.module[1].buffers()} <= stats


def test_after_step_applies_the_cosine_scheduled_momentum():
    total = 10
    m = moco_v3(momentum=0.99, final_momentum=1.0)
    views, batch = inputs()
    schedule = [m.momentum_at(step, total) for step in range(1, total + 1)]
    assert 0.99 < schedule[0] < schedule[4] < schedule[-2] < schedule[-1] == 1.0
    for step in (1, 5):
        assert schedule[step - 1] == pytest.approx(1 - 0.01 * (math.cos(math.pi * step / total) + 1) / 2, abs=1e-15)
    for step in (1, 5):
        with torch.no_grad():  # a query encoder that has moved away from the momentum encoder
            for p in m.head.parameters():
                p.add_(0.5)
        before = {n: p.clone() for n, p in m.momentum_encoder.module.named_parameters()}
        out = {name: t.detach() for name, t in m(views, batch).items()}
        m.after_step(out, batch, step, total)
        mom = schedule[step - 1]
        query = dict(m.base_encoder().named_parameters())
        for name, p in m.momentum_encoder.module.named_parameters():
            torch.testing.assert_close(p, mom * before[name] + (1 - mom) * query[name], rtol=0, atol=1e-15)
    before = {n: p.clone() for n, p in m.momentum_encoder.module.named_parameters()}
    m.after_step(out, batch, total, total)  # m = 1 at the last step: the momentum encoder stays
    assert all(torch.equal(p, before[n]) for n, p in m.momentum_encoder.module.named_parameters())


def test_grad_cache_equals_one_chunk_and_nothing_moves_before_after_step():
    m = moco_v3()
    views, batch = inputs(8)
    with torch.no_grad():
        for p in m.head.parameters():
            p.add_(0.3)
    before = {n: p.clone() for n, p in m.momentum_encoder.state_dict().items()}

    loss_1, outputs_1, grads_1 = method_grad_cache_step(m, views, batch, 1)
    loss_2, outputs_2, grads_2 = method_grad_cache_step(m, views, batch, 2)
    torch.testing.assert_close(loss_2, loss_1, rtol=0, atol=1e-10)
    assert grads_1.keys() == grads_2.keys()
    for name in grads_1:
        torch.testing.assert_close(grads_2[name], grads_1[name], rtol=0, atol=1e-10)
    torch.testing.assert_close(outputs_2["k"], outputs_1["k"], rtol=0, atol=1e-12)
    assert all(torch.equal(p, before[n]) for n, p in m.momentum_encoder.state_dict().items())  # replays write nothing
    m.after_step(outputs_2, batch, 1, 10)
    assert not all(torch.equal(p, before[n]) for n, p in m.momentum_encoder.state_dict().items())


def test_bad_arguments_are_refused():
    for args, match in [({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"),
                        ({"momentum": -0.1}, "momentum"), ({"momentum": 0.995, "final_momentum": 0.99}, "momentum"),
                        ({"final_momentum": 1.5}, "final_momentum"), ({"momentum": "0.9"}, "momentum")]:
        with pytest.raises(InvalidArgumentsError, match=match):
            MoCoV3(Pool(), mlp(6, 4), mlp(4, 4), **args)
    MoCoV3(Pool(), mlp(6, 4), mlp(4, 4), momentum=0.99, final_momentum=0.99)  # constant m


def v3_recipe(out, **trainer) -> dict:
    raw = tiny_recipe_dict(str(out), max_steps=4, checkpoint_every_steps=2, keep_last=5, num_workers=0, **trainer)
    raw["method"] = {"name": "moco_v3"}
    raw["predictor"] = {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16}}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    del raw["loss"]
    return raw


def test_a_recipe_without_a_predictor_is_refused(tmp_path, registries):
    raw = v3_recipe(tmp_path)
    del raw["predictor"]
    with pytest.raises(RecipeError, match=r"method 'moco_v3' needs a predictor; add predictor: \{name: mlp"):
        fit(recipes.validate(raw, registries), registries)
    assert not (tmp_path / "checkpoints").exists()


def test_registered_and_a_recipe_for_simclr_with_a_predictor_is_refused(registries):
    assert "moco_v3" in registries.methods.names()
    raw = tiny_recipe_dict("/tmp/unused")
    raw["predictor"] = {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16}}
    with pytest.raises(RecipeError, match="takes no predictor"):
        recipes.validate(raw, registries)


def test_fit_resumes_bit_for_bit(tmp_path, registries):
    out = tmp_path / "run"
    results = fit(recipes.validate(v3_recipe(out), registries), registries)
    assert results["steps"] == 4 and torch.isfinite(torch.tensor(results["loss"]))
    at_2 = load_file(str(out / "checkpoints/step_000000002/model.safetensors"))
    at_4 = load_file(str(out / "checkpoints/step_000000004/model.safetensors"))
    assert any(key.startswith("momentum_encoder.") for key in at_4)
    assert any(key.startswith("predictor.") for key in at_4)
    assert not any(key.startswith("momentum_encoder.") and "predictor" in key for key in at_4)
    moved = [k for k in at_4 if k.startswith("momentum_encoder.") and k.endswith("weight") and not torch.equal(at_2[k], at_4[k])]
    assert moved  # after_step ran the EMA
    assert_resume_is_exact(out, tmp_path / "copy",
                           lambda copy_dir: fit(recipes.validate(v3_recipe(copy_dir, resume=True), registries), registries))


def test_fit_with_a_vit_by_name(tmp_path, registries):
    raw = tiny_recipe_dict(str(tmp_path), max_steps=1, batch_size=8, num_workers=0)
    raw["method"] = {"name": "moco_v3"}
    raw["predictor"] = {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16}}
    raw["backbone"] = {"name": "vit_tiny_patch16_224", "args": {"patch_size": 8}}
    del raw["loss"]
    results = fit(recipes.validate(raw, registries), registries)
    assert results["steps"] == 1 and torch.isfinite(torch.tensor(results["loss"]))


def test_the_vit_small_recipe_has_the_paper_s_settings(registries):
    recipe = recipes.load("moco_v3_vit_small", registries=registries)
    assert recipe.method.name == "moco_v3" and recipe.backbone.name == "vit_small_patch16_224"
    assert recipe.method.args == {"temperature": 0.2, "momentum": 0.99, "final_momentum": 1.0}
    assert recipe.head.args["num_layers"] == 3 and recipe.head.args["hidden_dim"] == 4096
    assert recipe.head.args["out_dim"] == recipe.predictor.args["out_dim"] == 256
    assert recipe.predictor.args["num_layers"] == 2 and recipe.predictor.args["hidden_dim"] == 4096
    assert recipe.optimizer.name == "adamw" and recipe.optimizer.args["lr"] == 1.5e-4
    assert recipe.optimizer.args["lr_scaling"] == "linear" and recipe.optimizer.args["weight_decay"] == 0.1
    assert recipe.scheduler.args["warmup_epochs"] == 40 and recipe.trainer.max_epochs == 300
    assert recipe.trainer.mixed_precision == "bf16"
