"""The export's model card and ``contrastive export --push``, against a local fake of the Hub's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.training import fit
from tests.fake_hub import FakeHub
from tests.helpers import tiny_recipe_dict

EXPORTED = {"model.safetensors", "config.json", "contrastive.json", "README.md"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory, registries):
    """A one-step run with the kNN protocol and both baselines in its results.json."""
    out = tmp_path_factory.mktemp("hub") / "run"
    raw = tiny_recipe_dict(str(out), max_steps=1)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": False}}
    raw["eval"] = {"protocols": ["knn"], "knn_k": 20}
    fit(recipes.validate(raw, registries), registries)
    return out


@pytest.fixture
def token(monkeypatch, tmp_path):
    """A fake token in HF_TOKEN, and no token file of this machine's in the way."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    return "hf_fake_token"


def test_the_model_card_states_the_recipe_the_evaluation_and_how_to_load(run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    assert "README.md (model card)" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == EXPORTED
    text = (out / "README.md").read_text()
    from huggingface_hub import ModelCard

    card = ModelCard(text)  # the Hub's own parser reads the metadata
    assert card.data.library_name == "timm" and card.data.pipeline_tag == "image-feature-extraction"
    assert {"simclr", "self-supervised-learning", "contrastive-learning"} <= set(card.data.tags)
    assert card.data.license is None  # not stated unless --license
    results = json.loads((run / "results.json").read_text())["eval"]
    assert f"| this backbone | {results['knn_top1']:.4f} | {results['knn_top5']:.4f} |" in text
    assert f"| raw pixels | {results['baselines']['raw_pixels']['knn_top1']:.4f} |" in text
    assert "| method | `simclr` ([Chen et al., 2020](https://arxiv.org/abs/2002.05709)) |" in text
    assert "| epochs | 0 of 1 (trainer.max_steps 1), 1 step |" in text and "| batch | 16 images per step (16 per process" in text
    assert "| loss | `ntxent` (temperature: 0.5) |" in text
    assert f'timm.create_model("local-dir:{out}", pretrained=True)' in text


def test_export_replaces_an_earlier_export_of_the_same_run_only(run, tmp_path, registries):
    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    assert main(["export", str(run), str(out), "--license", "mit"]) == 0  # the same run: replaced
    assert "license: mit" in (out / "README.md").read_text()
    other = tmp_path / "other"
    raw = tiny_recipe_dict(str(other), max_steps=1)
    raw["backbone"] = {"name": "test_resnet", "args": {}}
    fit(recipes.validate(raw, registries), registries)
    assert main(["export", str(other), str(out)]) == 2  # another run's export is not overwritten


def test_push_uploads_the_export_through_hf_endpoint(run, tmp_path, token):
    out = tmp_path / "export"
    with FakeHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": token, "HF_HOME": str(tmp_path / "hf"),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(
            [sys.executable, "-m", "contrastive", "export", str(run), str(out), "--push", "me/tiny-simclr",
             "--private", "--license", "apache-2.0"],
            capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert hub.unexpected == []
    (metadata,) = hub.validated  # the card's metadata went through the Hub's YAML check
    assert metadata["library_name"] == "timm" and metadata["license"] == "apache-2.0"
    assert hub.repos == [{"name": "tiny-simclr", "organization": "me", "visibility": "private", "type": "model"}]
    (commit,) = hub.commits
    assert commit["repo_id"] == "me/tiny-simclr" and commit["revision"] == "main" and commit["other"] == []
    assert commit["files"] == {name: (out / name).read_bytes() for name in EXPORTED}  # every file, byte for byte
    assert set(hub.tokens) == {f"Bearer {token}"}
    card = commit["files"]["README.md"].decode()
    assert 'timm.create_model("hf-hub:me/tiny-simclr", pretrained=True)' in card and "license: apache-2.0" in card
    assert str(tmp_path) not in card  # no local path is published
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("pushed README.md, config.json, contrastive.json, model.safetensors to me/tiny-simclr: "
                                f"{hub.endpoint}/me/tiny-simclr/commit/")
    assert lines[-1] == "load it with timm.create_model('hf-hub:me/tiny-simclr', pretrained=True)"


def test_push_without_a_token_says_how_to_log_in_and_writes_nothing(run, token, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert main(["export", str(run), str(run / "pushed"), "--push", "me/tiny"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --push me/tiny: no Hugging Face token found; log in with `hf auth login` "
        "(`huggingface-cli login` before huggingface_hub 1.0) or set HF_TOKEN")
    assert not (run / "pushed").exists()


def test_push_without_huggingface_hub_says_what_to_install(run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert main(["export", str(run), str(run / "pushed"), "--push", "me/tiny"]) == 2
    assert "--push needs huggingface_hub, which is not installed: pip install 'contrastive-ssl[hub]'" in capsys.readouterr().err


def test_a_refused_push_is_one_line_and_keeps_the_export(run, tmp_path, token, monkeypatch, capsys):
    import huggingface_hub.constants

    out = tmp_path / "export"
    with FakeHub(refuse=401) as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        assert main(["export", str(run), str(out), "--push", "me/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --push me/tiny: could not create the repo (") and "\n" not in err
    assert err.endswith(f"the export is in {out}: retry with hf upload me/tiny {out}")
    assert {p.name for p in out.iterdir()} == EXPORTED
    assert main(["export", str(run), "--private"]) == 2 and "--private goes with --push" in capsys.readouterr().err
