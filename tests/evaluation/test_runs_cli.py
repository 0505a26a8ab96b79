"""`fit` with evaluation, `contrastive eval` and `contrastive embed` on a finished tiny run."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.training import fit
from tests.helpers import photo_folder, tiny_recipe_dict


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, registries):
    """Two epochs of 6 steps on 179 digits (test split: 1618), online kNN after each epoch."""
    out = tmp_path_factory.mktemp("evalrun")
    raw = tiny_recipe_dict(str(out), max_steps=None, max_epochs=2, batch_size=32)
    raw["data"]["args"]["test_fraction"] = 0.9
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"monitor_every": 1, "monitor_max_samples": 500, "linear_max_iter": 100}
    results = fit(recipes.validate(raw, registries), registries)
    return out, results


def test_fit_writes_eval_and_monitor(finished_run):
    out, results = finished_run
    saved = json.loads((out / "results.json").read_text())
    ev = saved["eval"]
    assert ev == json.loads(json.dumps(results["eval"]))
    assert ev["num_train"] == 179 and ev["num_test"] == 1618 and ev["num_classes"] == 10
    for row in (ev, ev["baselines"]["random_init"], ev["baselines"]["raw_pixels"]):
        for key in ("knn_top1", "knn_top5", "linear_top1", "linear_top5"):
            assert 0.0 <= row[key] <= 1.0, key
    assert ev["baselines"]["raw_pixels"]["knn_top1"] > 0.5  # digits are easy in pixel space
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    monitor = [r for r in records if "knn_top1" in r]
    assert [(r["epoch"], r["step"]) for r in monitor] == [(0, 5), (1, 10)]


def test_eval_command_reproduces_results(finished_run, capsys):
    out, results = finished_run
    assert main(["eval", str(out), "--protocol", "knn", "--json", "--eval.linear_max_iter", "100"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["knn_top1"] == results["eval"]["knn_top1"]
    assert again["baselines"]["random_init"]["knn_top1"] == results["eval"]["baselines"]["random_init"]["knn_top1"]
    assert "linear_top1" not in again


def test_eval_linear_prints_table(finished_run, capsys):
    out, _ = finished_run
    assert main(["eval", str(out), "--protocol", "linear", "--eval.baselines", "[raw_pixels]",
                 "--eval.linear_max_iter", "100"]) == 0
    text = capsys.readouterr().out
    assert "linear top-1" in text and "kNN" not in text
    assert "learned" in text and "raw pixels" in text and "random init" not in text


def test_embed_agrees_with_independent_knn(finished_run, tmp_path, capsys):
    from sklearn.neighbors import KNeighborsClassifier

    out, results = finished_run
    files = {}
    for split in ("train", "test"):
        files[split] = tmp_path / f"{split}.npz"
        assert main(["embed", str(out), "--split", split, "--out", str(files[split])]) == 0
    train, test = np.load(files["train"]), np.load(files["test"])
    assert train["embeddings"].dtype == np.float32 and train["embeddings"].shape == (179, 96)
    assert test["embeddings"].shape == (1618, 96) and test["labels"].dtype == np.int64
    assert "paths" not in test.files and list(test["classes"]) == [str(d) for d in range(10)]
    # scikit-learn's kNN, cosine distance d = 1 - sim, weights exp(sim / 0.1); k = 179 (200 clamped)
    knn = KNeighborsClassifier(n_neighbors=179, metric="cosine", weights=lambda d: np.exp((1 - d) / 0.1))
    knn.fit(train["embeddings"], train["labels"])
    accuracy = (knn.predict(test["embeddings"]) == test["labels"]).mean()
    assert abs(accuracy - results["eval"]["knn_top1"]) <= 2 / 1618  # ties may break differently


def test_embed_unlabeled_image_folder(finished_run, tmp_path):
    out, _ = finished_run
    folder = photo_folder(tmp_path / "photos", 3, height=40, width=30)
    target = tmp_path / "photos_embeddings"
    assert main(["embed", str(out), "--out", str(target), "--data.name", "image_folder",
                 "--data.args.root", str(folder), "--data.args.image_size", "24"]) == 0
    saved = np.load(tmp_path / "photos_embeddings.npz")
    assert saved["embeddings"].shape == (3, 96) and list(saved["labels"]) == [-1, -1, -1]
    assert [p.rsplit("/", 1)[-1] for p in saved["paths"]] == ["img000.png", "img001.png", "img002.png"]


def test_backbone_safetensors_loads_with_plain_load_state_dict(finished_run, registries):
    out, _ = finished_run
    backbone = registries.backbones.build("test_resnet", cifar_stem=True)
    missing, unexpected = backbone.load_state_dict(load_file(str(out / "backbone.safetensors")))
    assert not missing and not unexpected
    assert backbone.eval()(torch.zeros(2, 3, 16, 16)).shape == (2, 96)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "{tmp}/nowhere"], "does not exist"),
        (["eval", "{tmp}"], "has no config.yaml"),
        (["embed", "{tmp}/nowhere", "--out", "{tmp}/x.npz"], "does not exist"),
        (["eval", "{run}", "--eval.knn_k", "0"], "knn_k must be at least 1"),
        (["embed", "{run}", "--out", "{tmp}/x.npz", "--data.name", "image_folder", "--data.args.root", "{tmp}/no"],
         "does not exist"),
    ],
)
def test_user_errors_exit_2(finished_run, tmp_path, capsys, argv, message):
    out, _ = finished_run
    argv = [a.format(tmp=tmp_path, run=out) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_linear_augmented_prints_its_scores_beside_the_baselines(finished_run, capsys):
    """An image protocol scores the learned backbone and random init; raw pixels (no backbone) shows nan."""
    out, _ = finished_run
    assert main(["eval", str(out), "--protocol", "linear_augmented", "--eval.linear_augmented_epochs", "1",
                 "--eval.linear_augmented_batch_size", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "lin. aug. top-1" in lines[1] and "kNN" not in lines[1]
    rows = {line[:14].strip(): line[14:].split() for line in lines[2:5]}
    assert 0.0 <= float(rows["learned"][0]) <= 1.0 and 0.0 <= float(rows["random init"][0]) <= 1.0
    assert rows["raw pixels"][0] == "nan"
