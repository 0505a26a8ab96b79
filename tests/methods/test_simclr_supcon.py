"""SimCLR and SupCon as methods: the pair contract for two views, the multi-view form for more,
class positives for SupCon, and the errors a user meets before training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import contrastive
from contrastive import recipe as recipes
from contrastive.components.losses import NTXentLoss
from contrastive.errors import DataError, RecipeError
from contrastive.methods.base import Batch, embed_views, group_by_shape
from contrastive.methods.simclr import SimCLR
from contrastive.methods.supcon import SupCon
from contrastive.training import fit
from tests.helpers import Pool, tiny_recipe_dict


def batch_of(n: int, labels=None) -> Batch:
    g = torch.Generator().manual_seed(n)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.as_tensor(labels) if labels is not None else torch.full((n,), -1)
    return Batch(images=images, labels=labels.long(), index=torch.arange(100, 100 + n))


def views_of(n: int, v: int, sizes=(8,)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(v)
    return [torch.rand(n, 3, sizes[min(i, len(sizes) - 1)], sizes[min(i, len(sizes) - 1)], generator=g, dtype=torch.float64)
            for i in range(v)]


def method(cls=SimCLR, loss=None):
    torch.manual_seed(0)
    return cls(Pool(), nn.Linear(6, 4).double(), loss or NTXentLoss(0.5))


def test_two_views_use_the_pair_contract_of_any_loss():
    calls = []

    class PairOnly(nn.Module):
        def forward(self, z_a, z_b):
            calls.append((z_a, z_b))
            return (z_a - z_b).pow(2).mean()

    m = method(loss=PairOnly())
    views = views_of(5, 2)
    out = m(views, batch_of(5))
    assert out["z"].shape == (5, 2, 4)
    m.loss(out, batch_of(5))
    z_a, z_b = calls[0]
    assert torch.equal(z_a, m.encode(views[0])) and torch.equal(z_b, m.encode(views[1]))
    with pytest.raises(RecipeError, match="multi-view form"):
        m.check_views([2, 2])  # 4 views need multiview(z, ids), which PairOnly lacks
    with pytest.raises(RecipeError, match="at least 2 views"):
        m.check_views([1])
    m.check_views([2])


def test_more_views_make_every_pair_of_an_image_positive():
    m = method()
    views = views_of(4, 3)
    out = m(views, batch_of(4))
    z = out["z"]
    assert z.shape == (4, 3, 4)
    expected = NTXentLoss(0.5).multiview(z.reshape(12, 4), torch.arange(100, 104).repeat_interleave(3))
    torch.testing.assert_close(m.loss(out, batch_of(4)), expected, rtol=0, atol=0)
    m.check_views([2, 1])


def test_multi_crop_groups_are_embedded_one_resolution_at_a_time():
    views = views_of(3, 5, sizes=(8, 8, 4))  # 2 views at 8 px, then 3 at 4 px
    assert group_by_shape(views) == [(0, 2), (2, 5)]
    seen = []

    def encoder(x):
        seen.append(tuple(x.shape))
        return x.flatten(1)[:, :2]

    z = embed_views(encoder, views)
    assert seen == [(6, 3, 8, 8), (9, 3, 4, 4)] and z.shape == (3, 5, 2)
    for v in range(5):
        torch.testing.assert_close(z[:, v], views[v].flatten(1)[:, :2])


def test_supcon_with_one_class_per_image_is_simclr():
    views = views_of(6, 2)
    simclr, supcon = method(SimCLR), method(SupCon)
    unique = batch_of(6, labels=list(range(6)))
    torch.testing.assert_close(supcon.loss(supcon(views, unique), unique), simclr.loss(simclr(views, unique), unique),
                               rtol=0, atol=1e-6)
    shared = batch_of(6, labels=[0, 0, 1, 1, 2, 2])
    assert not torch.allclose(supcon.loss(supcon(views, shared), shared), simclr.loss(simclr(views, shared), shared))


def test_supcon_refuses_unlabelled_batches():
    m = method(SupCon)
    batch = batch_of(4, labels=[0, 1, -1, 1])
    with pytest.raises(DataError, match="supcon.*1 unlabelled"):
        m.loss(m(views_of(4, 2), batch), batch)


def test_supcon_without_labels_stops_before_training(tmp_path, registries):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(20):
        Image.new("RGB", (12, 12), (i * 10, 0, 0)).save(folder / f"{i}.png")
    raw = tiny_recipe_dict(str(tmp_path / "run"))
    raw["data"] = {"name": "image_folder", "args": {"root": str(folder), "image_size": 16}}
    raw["method"] = {"name": "supcon"}
    with pytest.raises(DataError, match="method 'supcon' needs labelled images.*--method.name simclr"):
        fit(recipes.validate(raw, registries), registries)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoints_keep_the_keys_of_backbone_and_head(tmp_path, registries):
    """SimCLR's state is backbone.* and head.*, as before methods existed: old checkpoints resume."""
    from safetensors.torch import load_file

    raw = tiny_recipe_dict(str(tmp_path), max_steps=1)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    fit(recipes.validate(raw, registries), registries)
    saved = set(load_file(str(tmp_path / "checkpoints" / "step_000000001" / "model.safetensors")))
    backbone = registries.backbones.build("test_resnet", cifar_stem=True)
    head = registries.heads.build("mlp", in_dim=backbone.num_features, hidden_dim=32, out_dim=16, num_layers=2)
    expected = {f"backbone.{k}" for k in backbone.state_dict()} | {f"head.{k}" for k in head.state_dict()}
    assert saved == expected


def test_list_and_check_show_methods(capsys):
    from contrastive.cli import main

    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# methods: contrastive.Method")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert {"simclr", "supcon"} <= set(names)
    assert "SupCon" in next(line for line in out.splitlines() if line.startswith("supcon"))
    assert main(["check", "--method.name", "supcon"]) == 0
    assert "method=supcon" in capsys.readouterr().out
    assert main(["check", "--method.name", "supcn"]) == 2
    assert "unknown method 'supcn' — did you mean 'supcon'? (contrastive list methods)" in capsys.readouterr().err
    assert main(["check", "--method.args.temperatur", "0.1"]) == 2
    assert "method 'simclr' has no argument 'temperatur'" in capsys.readouterr().err


def test_public_api_resolves_method_and_batch_lazily():
    assert contrastive.Method is SimCLR.__mro__[1] and contrastive.Batch is Batch
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        contrastive.Nope  # noqa: B018
