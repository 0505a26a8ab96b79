"""The documented command on folders, as a new user runs it: ``contrastive fit --recipe
simclr_folder --data.args.root PATH`` on a flat unlabelled folder and on class sub-folders, then
``eval`` and ``embed`` on the runs; ``--eval.test_data`` naming another folder."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.evaluation import EvalData, training_dataset

SAVERS = [("png", "RGB"), ("jpg", "RGB"), ("webp", "RGBA"), ("bmp", "L"), ("tif", "CMYK")]


def picture(i, kind):
    rng = np.random.default_rng(i)
    array = rng.integers(0, 60, (20, 28, 3), dtype=np.uint8)
    if kind == 0:
        array[::4] = (230, 40, 40)  # red stripes
    else:
        array[:, ::4] = (40, 40, 230)  # blue stripes
    return Image.fromarray(array)


def save(image, path_stem, i):
    fmt, mode = SAVERS[i % len(SAVERS)]
    image.convert(mode).save(f"{path_stem}.{fmt}")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("folders")
    flat, linked, classes = base / "flat", base / "linked", base / "classes"
    for folder in (flat, linked):
        folder.mkdir()
    for i in range(30):
        save(picture(i, i % 2), str((linked if i >= 24 else flat) / f"img{i:02d}"), i)
    os.symlink(linked, flat / "more")  # a linked sub-folder: read once
    os.symlink(flat, linked / "up")  # a loop: not followed again
    (flat / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    for c, name in enumerate(("blue", "red")):
        (classes / name).mkdir(parents=True)
        for i in range(12):
            save(picture(100 + 12 * c + i, 1 - c), str(classes / name / f"{i:02d}"), i)
    return flat, classes


def command(root, out, *extra):
    return ["fit", "--recipe", "simclr_folder", "--data.args.root", str(root), "--data.args.image_size", "16",
            "--augmentation.0.args.size", "16", "--backbone.name", "test_resnet", "--backbone.args.cifar_stem", "true",
            "--head.args.hidden_dim", "32", "--head.args.out_dim", "16", "--trainer.batch_size", "8",
            "--trainer.max_steps", "2", "--trainer.progress", "false", "--trainer.output_dir", str(out),
            "--eval.linear_max_iter", "20", *extra]


def test_flat_folder_trains_and_reports_label_free_metrics(folders, tmp_path, capsys):
    flat, _ = folders
    assert main(command(flat, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert out.count("note: supervised evaluation (kNN, linear probe) skipped") == 1
    assert "has no labels (its images are not in class sub-folders)" in out
    assert out.count("note: online kNN monitor (eval.monitor_every 10) skipped") == 1
    assert "evaluation (image_folder" in out and "4 held-out images" in out  # ceil(0.1 x 31 files)
    header = next(line for line in out.splitlines() if "eff. rank" in line)
    assert "alignment" in header and "uniformity" in header and "kNN" not in header
    ev = json.loads((tmp_path / "run" / "results.json").read_text())["eval"]
    assert ev["protocols"] == ["label_free"] and ev["skipped"]["protocols"] == ["knn", "linear"]
    assert ev["holdout"] == {"fraction": 0.1, "in_training": False, "num_held_out": 4, "num_kept": 27}
    for row in (ev, ev["baselines"]["random_init"], ev["baselines"]["raw_pixels"]):
        assert 0.0 <= row["alignment"] <= 4.0 and -8.0 <= row["uniformity"] <= 0.0
        assert 1.0 <= row["effective_rank"] <= 4.0 + 1e-6  # at most the 4 held-out images
    # contrastive eval on the finished run: the same label-free table
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert "eff. rank" in capsys.readouterr().out
    # embed every image with its path; the undecodable file is left out, not given its neighbour's row
    assert main(["embed", str(tmp_path / "run"), "--split", "all", "--out", str(tmp_path / "all.npz")]) == 0
    assert "; 1 undecodable file(s) left out" in capsys.readouterr().out
    saved = np.load(tmp_path / "all.npz")
    assert saved["embeddings"].shape[0] == len(saved["paths"]) == 30
    assert not any(p.endswith("broken.jpg") for p in saved["paths"]) and (saved["labels"] == -1).all()


def test_held_out_images_are_left_out_of_pre_training(folders, registries, tmp_path):
    flat, _ = folders
    raw = recipes.read_recipe("simclr_folder")
    raw["data"]["args"]["root"] = str(flat)
    recipe = recipes.validate(raw, registries)
    trained = training_dataset(recipe, registries)
    held = EvalData.from_recipe(recipe, registries).test
    assert len(trained) == 27 and len(held) == 4 and not set(trained.paths) & set(held.paths)
    assert len(set(trained.paths) | set(held.paths)) == 31  # 30 images + broken.jpg; the link loop read once
    raw["eval"]["holdout_in_training"] = True
    assert len(training_dataset(recipes.validate(raw, registries), registries)) == 31


def test_class_folders_get_knn_and_linear_vs_baselines_on_the_held_out_split(folders, tmp_path, capsys):
    _, classes = folders
    assert main(command(classes, tmp_path / "run", "--eval.monitor_every", "1", "--eval.holdout", "0.25")) == 0
    out = capsys.readouterr().out
    assert "note: evaluation holds out 6 of the 24 images (eval.holdout 0.25, stratified over 2 classes" in out
    assert "online kNN top-1" in out and "skipped" not in out
    assert "evaluation (image_folder" in out and "18 train / 6 held-out images" in out
    for row in ("learned", "random init", "raw pixels"):
        assert row in out
    ev = json.loads((tmp_path / "run" / "results.json").read_text())["eval"]
    assert ev["protocols"] == ["knn", "linear"] and ev["num_classes"] == 2 and ev["num_test"] == 6
    for row in (ev, ev["baselines"]["random_init"], ev["baselines"]["raw_pixels"]):
        assert 0.0 <= row["knn_top1"] <= 1.0 and 0.0 <= row["linear_top1"] <= 1.0
    # embed: the paths with the embeddings; test = the held-out images, all = every image
    assert main(["embed", str(tmp_path / "run"), "--split", "test", "--out", str(tmp_path / "test.npz")]) == 0
    assert "with their image paths" in capsys.readouterr().out
    test = np.load(tmp_path / "test.npz")
    assert test["embeddings"].shape[0] == len(test["paths"]) == 6 and sorted(test["labels"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert main(["embed", str(tmp_path / "run"), "--split", "all", "--out", str(tmp_path / "all.npz")]) == 0
    every = np.load(tmp_path / "all.npz")
    assert len(every["paths"]) == 24 and set(test["paths"].tolist()) < set(every["paths"].tolist())
    row = every["paths"].tolist().index(test["paths"][0])
    assert np.allclose(every["embeddings"][row], test["embeddings"][0], atol=1e-5)
    assert list(every["classes"]) == ["blue", "red"]


def test_eval_test_data_names_another_folder(folders, tmp_path, capsys):
    _, classes = folders
    other = tmp_path / "other"
    for c, name in enumerate(("blue", "red")):
        (other / name).mkdir(parents=True)
        for i in range(3):
            save(picture(500 + i + 3 * c, 1 - c), str(other / name / f"{i}"), i)
    extra = ["--eval.test_data.name", "image_folder", "--eval.test_data.args.root", str(other),
             "--eval.protocols", "[knn]", "--eval.baselines", "[]", "--eval.monitor_every", "0"]
    assert main(command(classes, tmp_path / "run", *extra)) == 0
    out = capsys.readouterr().out
    assert "holds out" not in out and "24 train / 6 test images" in out
    ev = json.loads((tmp_path / "run" / "results.json").read_text())["eval"]
    assert ev["test_data"]["args"] == {"root": str(other), "crop": "center"} and "holdout" not in ev
