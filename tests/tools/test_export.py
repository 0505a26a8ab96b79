"""``contrastive export``: a run's backbone as a folder timm (or :func:`contrastive.load_backbone`) loads."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import contrastive
from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.evaluation.runs import load_run
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict


def _run(tmp_path, registries, cifar_stem: bool):
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=1)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": cifar_stem}}
    raw["eval"] = {"protocols": []}
    fit(recipes.validate(raw, registries), registries)
    return tmp_path / "run"


def test_a_plain_stem_export_loads_in_timm_with_the_same_features(tmp_path, registries, capsys):
    run = _run(tmp_path, registries, cifar_stem=False)
    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    assert f"timm.create_model('local-dir:{out}', pretrained=True)" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 0
    assert config["pretrained_cfg"]["input_size"] == [3, 16, 16] and config["pretrained_cfg"]["tag"] == "simclr_digits"
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    _, ours = load_run(run, registries)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), ours(images))
    assert timm.data.resolve_data_config({}, model=loaded)["input_size"] == (3, 16, 16)


def test_a_cifar_stem_export_says_so_and_loads_with_load_backbone(tmp_path, registries, capsys):
    run = _run(tmp_path, registries, cifar_stem=True)
    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"note: timm's config cannot express the CIFAR stem (cifar_stem: true): load it with contrastive.load_backbone('{out}')"
    loaded = contrastive.load_backbone(out)
    _, ours = load_run(run, registries)
    assert main(["export", str(run)]) == 0 and (run / "export" / "model.safetensors").is_file()  # OUT: RUN_DIR/export
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), ours(images))


def test_export_refuses_a_non_empty_folder(tmp_path, registries, capsys):
    run = _run(tmp_path, registries, cifar_stem=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    assert main(["export", str(run), str(tmp_path / "busy")]) == 2
    assert "is not empty" in capsys.readouterr().err
    with pytest.raises(contrastive.errors.EvaluationError, match="not a contrastive export"):
        contrastive.load_backbone(tmp_path / "busy")
