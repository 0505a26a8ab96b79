"""``hf_dataset`` offline, on tiny datasets written here with ``save_to_disk`` / ``to_parquet``."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.cli import main
from contrastive.components.datasets import HFImageDataset
from contrastive.errors import DataError, InvalidArgumentsError


def test_missing_package_is_one_line_naming_the_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DataError, match=r"pip install datasets \(or pip install 'contrastive-ssl\[hf\]'\)"):
        HFImageDataset(str(tmp_path))
    code = main(["check", "--data.name", "hf_dataset", "--data.args", f"{{path: {tmp_path}}}",
                 "--augmentation.0.args.size", "16", "--backbone.name", "test_resnet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install datasets" in err and "Traceback" not in err


def test_trust_remote_code_is_refused(tmp_path):
    with pytest.raises(InvalidArgumentsError, match="trust_remote_code is refused"):
        HFImageDataset(str(tmp_path), trust_remote_code=True)


datasets = pytest.importorskip("datasets", reason="the optional datasets package is not installed (pip install datasets)")


def pictures(n):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (12 + i % 3, 10, 3), dtype=np.uint8)) for i in range(n)]


def write(path, n=6, **columns):
    features = {"img": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]), "note": datasets.Value("string")}
    data = {"img": pictures(n), "label": [i % 2 for i in range(n)], "note": ["x"] * n}
    for name, (feature, values) in columns.items():
        features[name], data[name] = feature, values
    table = datasets.Dataset.from_dict(data, features=datasets.Features(features))
    table.save_to_disk(str(path))
    return table


def test_saved_dataset_with_class_labels(tmp_path):
    table = write(tmp_path / "ds")
    data = HFImageDataset(str(tmp_path / "ds"), image_size=8)
    assert len(data) == 6 and data.classes == ["cat", "dog"] and data.has_labels
    assert data.labels.tolist() == [0, 1, 0, 1, 0, 1] and data.image_column == "img" and data.label_column == "label"
    image, label = data[3]
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and label == 1
    expected = np.asarray(table[3]["img"].resize((8, 8), Image.Resampling.BILINEAR))
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - expected.astype(int)).max() <= 1
    assert data.paths[3] == f"{tmp_path / 'ds'}[train][3]"
    part = data.subset([5, 0])
    assert part.paths[:] == [f"{tmp_path / 'ds'}[train][5]", f"{tmp_path / 'ds'}[train][0]"]
    assert torch.equal(part[0][0], data[5][0]) and part.labels.tolist() == [1, 0]
    centre = HFImageDataset(str(tmp_path / "ds"), image_size=8, crop="center", channels=1)
    assert centre[0][0].shape == (1, 8, 8) and centre.load_item(0)[2] == 1.0


def test_columns_labels_and_splits(tmp_path):
    write(tmp_path / "two", extra=(datasets.Image(), pictures(6)), kind=(datasets.Value("string"), list("bababa")))
    with pytest.raises(DataError, match=r"has 2 Image columns \(its columns: img \(Image\), label \(ClassLabel\)"):
        HFImageDataset(str(tmp_path / "two"))
    by_name = HFImageDataset(str(tmp_path / "two"), image_column="extra", label_column="kind", image_size=8)
    assert by_name.classes == ["a", "b"] and by_name.labels.tolist() == [1, 0, 1, 0, 1, 0]
    unlabelled = HFImageDataset(str(tmp_path / "two"), image_column="img", label_column=False)
    assert not unlabelled.has_labels and unlabelled.labels_hint == "data.args.label_column is false"
    with pytest.raises(DataError, match="column 'note' .* holds Value, not Image"):
        HFImageDataset(str(tmp_path / "two"), image_column="note")
    with pytest.raises(DataError, match="has no column 'nope'"):
        HFImageDataset(str(tmp_path / "two"), image_column="img", label_column="nope")
    plain = datasets.Dataset.from_dict({"text": ["a", "b"]})
    plain.save_to_disk(str(tmp_path / "text"))
    with pytest.raises(DataError, match=r"has no Image column \(its columns: text \(Value\)\)"):
        HFImageDataset(str(tmp_path / "text"))
    table = datasets.Dataset.from_dict({"img": pictures(4)}, features=datasets.Features({"img": datasets.Image()}))
    datasets.DatasetDict({"train": table, "test": table.select([0])}).save_to_disk(str(tmp_path / "dict"))
    assert len(HFImageDataset(str(tmp_path / "dict"), split="test")) == 1
    assert HFImageDataset(str(tmp_path / "dict")).labels_hint.startswith(f"{tmp_path / 'dict'} has no ClassLabel column")
    with pytest.raises(DataError, match=r"has no split 'val' \(its splits: train, test\)"):
        HFImageDataset(str(tmp_path / "dict"), split="val")


def test_data_files_folder_goes_through_load_dataset(tmp_path):
    table = datasets.Dataset.from_dict(
        {"image": pictures(5), "y": [0, 1, 1, 0, 1]},
        features=datasets.Features({"image": datasets.Image(), "y": datasets.ClassLabel(names=["no", "yes"])}),
    )
    (tmp_path / "files").mkdir()
    table.to_parquet(str(tmp_path / "files" / "train.parquet"))
    data = HFImageDataset(str(tmp_path / "files"), image_size=8)  # not a save_to_disk folder: load_dataset
    assert len(data) == 5 and data.classes == ["no", "yes"] and data[0][0].shape == (3, 8, 8)
    with pytest.raises(DataError, match=r"cannot load the folder .*split 'test'") as info:
        HFImageDataset(str(tmp_path / "files"), split="test")
    assert "\n" not in str(info.value)


def test_check_and_fit_hold_out_part_of_a_saved_dataset(tmp_path, capsys):
    write(tmp_path / "ds", n=24)
    common = ["--data.name", "hf_dataset", "--data.args", f"{{path: {tmp_path / 'ds'}, image_size: 16}}",
              "--augmentation", "[{name: random_resized_crop, args: {size: 16}}]",
              "--backbone.name", "test_resnet", "--backbone.args.cifar_stem", "true",
              "--head.args.hidden_dim", "16", "--head.args.out_dim", "8"]
    assert main(["check", *common, "--eval.holdout", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "eval OK: knn, linear + online kNN on 6 held-out of the 24 images of hf_dataset" in out
    assert main(["fit", *common, "--eval.holdout", "0.25", "--eval.baselines", "[]", "--eval.protocols", "[knn]",
                 "--eval.monitor_every", "0", "--trainer.batch_size", "8", "--trainer.max_steps", "1",
                 "--trainer.progress", "false", "--trainer.output_dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"evaluation (hf_dataset {tmp_path / 'ds'}: 18 train / 6 held-out images" in out and "kNN top-1" in out
    assert main(["embed", str(tmp_path / "run"), "--split", "test", "--out", str(tmp_path / "held.npz")]) == 0
    held = np.load(tmp_path / "held.npz")
    assert held["embeddings"].shape[0] == 6 and all(p.startswith(f"{tmp_path / 'ds'}[train][") for p in held["paths"])
    assert list(held["classes"]) == ["cat", "dog"] and sorted(held["labels"].tolist()) == [0, 0, 0, 1, 1, 1]
