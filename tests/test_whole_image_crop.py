"""Whole-image crops for variable-size images (``image_folder`` / ``imagenet`` ``crop: whole``).

The dataset squashes the whole image to the square and hands its original aspect ratio to the
training loop, which passes it to the view pipeline; evaluation and ``embed`` use centre crops.
Images here: 60x20 "wide" (left border red, right border blue, green between) and 20x60 "tall"
(top yellow, bottom magenta): a centre square shows green only, the whole image its borders.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive import recipe as recipes
from contrastive.cli import main
from contrastive.components import datasets as ds
from contrastive.components.augmentations.views import ViewPipeline
from contrastive.errors import DataError, InvalidArgumentsError
from contrastive.evaluation import EvalData, EvalTransform, embed_component, extract_features, load_run
from contrastive.training import fit
from contrastive.training.data import TrainingItems, guard_loader
from tests.helpers import load_benchmark, tiny_recipe_dict

RED, BLUE, GREEN, YELLOW, MAGENTA = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0), (255, 0, 255)


def wide() -> np.ndarray:
    a = np.zeros((20, 60, 3), np.uint8)
    a[:, :10], a[:, 10:50], a[:, 50:] = RED, GREEN, BLUE
    return a


def tall() -> np.ndarray:
    a = np.zeros((60, 20, 3), np.uint8)
    a[:10], a[10:50], a[50:] = YELLOW, GREEN, MAGENTA
    return a


def make_folder(root, per_class: int = 2, fmt: str = "png"):
    """``root/wide/*`` and ``root/tall/*`` (labels 1 and 0: classes sort as tall, wide)."""
    for name, array in (("wide", wide()), ("tall", tall())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(array).save(root / name / f"{i}.{fmt}")
    return root


def near(pixel: torch.Tensor, color, tol: int = 40) -> bool:
    return bool((pixel.int() - torch.tensor(color)).abs().max() <= tol)


def shows(images: torch.Tensor, color, tol: float = 0.16) -> torch.Tensor:
    """Per image of a float (B, 3, H, W) batch in [0, 1]: whether any pixel has ``color``."""
    target = torch.tensor(color, dtype=images.dtype).view(1, 3, 1, 1) / 255
    return ((images - target).abs().amax(1) <= tol).flatten(1).any(1)


# -- the dataset --------------------------------------------------------------------------------
def test_whole_squashes_the_whole_image_and_returns_its_aspect(tmp_path):
    data = ds.ImageFolderDataset(str(make_folder(tmp_path / "d", per_class=1)), image_size=12)
    assert data.whole_image and data.crop == "whole" and data.classes == ["tall", "wide"]
    (tall_img, tall_label, tall_aspect), (wide_img, wide_label, wide_aspect) = data.load_item(0), data.load_item(1)
    assert tall_img.shape == wide_img.shape == (3, 12, 12) and tall_img.dtype == torch.uint8
    assert (tall_label, wide_label) == (0, 1)
    assert wide_aspect == pytest.approx(3.0) and tall_aspect == pytest.approx(1 / 3)
    assert near(wide_img[:, 6, 0], RED) and near(wide_img[:, 6, 11], BLUE) and near(wide_img[:, 6, 6], GREEN)
    assert near(tall_img[:, 0, 6], YELLOW) and near(tall_img[:, 11, 6], MAGENTA) and near(tall_img[:, 6, 6], GREEN)
    image, label = data[1]  # __getitem__ keeps the (image, label) contract
    assert torch.equal(image, wide_img) and label == 1


def test_center_is_the_undistorted_centre_square(tmp_path):
    data = ds.ImageFolderDataset(str(make_folder(tmp_path / "d", per_class=1)), image_size=12, crop="center")
    assert not data.whole_image
    for index in range(2):
        image, _, aspect = data.load_item(index)
        assert aspect == 1.0 and image.shape == (3, 12, 12)
        assert all(near(image[:, y, x], GREEN) for y in range(12) for x in range(12))  # never a border colour


def test_exif_rotated_jpeg_aspect_is_as_displayed(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: 60x20 stored, 20x60 shown, left border on top
    Image.fromarray(wide()).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image, _, aspect = ds.ImageFolderDataset(str(tmp_path), image_size=12).load_item(0)
    assert aspect == pytest.approx(1 / 3)
    assert near(image[:, 0, 6], RED, 60) and near(image[:, 11, 6], BLUE, 60) and near(image[:, 6, 6], GREEN, 60)


def test_large_jpeg_uses_the_draft_and_matches_a_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (5, 20, 3)), np.ones((20, 20, 1))).astype(np.uint8)  # 100x400
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    with Image.open(tmp_path / "big.jpg") as img:
        img.draft(None, (32, 32))
        assert img.size == (200, 50)  # the largest 1/2^k scale that keeps both sides >= 32
    with Image.open(tmp_path / "big.jpg") as img:
        full = torch.from_numpy(np.array(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)))
    image, _, aspect = ds.ImageFolderDataset(str(tmp_path), image_size=32).load_item(0)
    assert aspect == 4.0 and image.shape == (3, 32, 32)
    assert (image.permute(1, 2, 0).float() - full.float()).abs().mean() < 4


def test_imagenet_takes_crop_too(tmp_path):
    for split in ("train", "val"):
        make_folder(tmp_path / split, per_class=1, fmt="JPEG")
    train = ds.ImageNetDataset(str(tmp_path), image_size=12)
    val = ds.ImageNetDataset(str(tmp_path), split="val", image_size=12, crop="center")
    assert train.whole_image and not val.whole_image
    assert train.load_item(1)[2] == pytest.approx(3.0) and val.load_item(1)[2] == 1.0


def test_bad_crop_is_a_clear_error(tmp_path, registries, capsys):
    make_folder(tmp_path / "d", per_class=1)
    with pytest.raises(InvalidArgumentsError, match="crop must be 'whole'.*or 'center'.*got 'x'"):
        ds.ImageFolderDataset(str(tmp_path / "d"), crop="x")
    with pytest.raises(InvalidArgumentsError, match="crop must be"):
        ds.ImageNetDataset(str(tmp_path), crop="middle")
    with pytest.raises(InvalidArgumentsError, match="argument 'crop' should be"):
        registries.datasets.build("image_folder", root=str(tmp_path / "d"), crop="x")
    assert main(["check", "--data.name", "image_folder", "--data.args", f"{{root: {tmp_path / 'd'}, crop: x}}"]) == 2
    assert "crop" in capsys.readouterr().err


def test_whole_items_skip_bad_files_and_batch_aspects(tmp_path):
    root = make_folder(tmp_path / "d", per_class=2)
    (root / "wide" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # wide/0 -> skipped: wide/1 instead
    data = ds.ImageFolderDataset(str(root), image_size=8)
    items = TrainingItems(data)
    loader = torch.utils.data.DataLoader(items, batch_size=4, num_workers=1)
    batches = list(guard_loader(loader, data))
    assert len(batches) == 1
    images, labels, index, aspects = batches[0]
    assert images.shape == (4, 3, 8, 8) and labels.tolist() == [0, 0, 1, 1] and index.tolist() == [0, 1, 2, 3]
    assert aspects.dtype == torch.float32 and aspects.shape == (4,)
    assert torch.allclose(aspects, torch.tensor([1 / 3, 1 / 3, 3.0, 3.0]))
    assert data.skipped_files["count"] == 1 and items.skipped_files["count"] == 1  # counted across processes
    strict = ds.ImageFolderDataset(str(root), image_size=8, strict=True)
    with pytest.raises(DataError, match="0.png.*strict is true"):
        strict.load_item(2)


def test_views_from_whole_images_reach_the_borders(tmp_path):
    """The crop draws over the whole image: border colours appear in the views (never in centre crops)."""
    root = make_folder(tmp_path / "d", per_class=1)
    whole = ds.ImageFolderDataset(str(root), image_size=16)
    images, _, _, aspects = next(iter(torch.utils.data.DataLoader(TrainingItems(whole), batch_size=2)))
    images, aspects = images.repeat(32, 1, 1, 1), aspects.repeat(32)  # 64 wide / tall samples
    from contrastive.components.augmentations import RandomResizedCrop

    torch.manual_seed(0)
    view_a, view_b = ViewPipeline([RandomResizedCrop(16, scale=(0.08, 1.0))]).two_views(images, source_aspect=aspects)
    views = torch.cat([view_a, view_b])
    for color in (RED, BLUE, YELLOW, MAGENTA):
        assert shows(views, color).any(), color
    centre = ds.ImageFolderDataset(str(root), image_size=16, crop="center")
    centre_images = torch.stack([centre[i][0] for i in range(2)]).float() / 255
    for color in (RED, BLUE, YELLOW, MAGENTA):
        assert not shows(centre_images, color).any(), color


def test_whole_images_without_a_crop_step_stop_before_training(tmp_path, registries):
    from contrastive.training.parts import build_parts

    raw = tiny_recipe_dict(str(tmp_path / "run"))
    raw["data"] = {"name": "image_folder", "args": {"root": str(make_folder(tmp_path / "d", 1)), "image_size": 16}}
    raw["augmentation"] = [{"name": "horizontal_flip", "args": {"p": 0.5}}]
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    with pytest.raises(InvalidArgumentsError, match="random_resized_crop.*crop center"):
        build_parts(recipes.validate(raw, registries), registries)
    raw["data"]["args"]["crop"] = "center"  # centre squares need no un-squashing
    assert build_parts(recipes.validate(raw, registries), registries).dataset.whole_image is False


# -- training, evaluation and embed on a whole-image run ------------------------------------------
@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, registries):
    """One epoch (2 steps) of fit on 16 images (batch 8 = 2 x 4 with trainer.accumulate 2), views recorded."""
    tmp = tmp_path_factory.mktemp("whole")
    root = make_folder(tmp / "data", per_class=8)
    out = tmp / "run"
    raw = tiny_recipe_dict(str(out), batch_size=4, accumulate=2, num_workers=0)
    raw["data"] = {"name": "image_folder", "args": {"root": str(root), "image_size": 16}}
    raw["augmentation"] = [
        {"name": "random_resized_crop", "args": {"size": 16, "scale": [0.08, 1.0]}},
        {"name": "horizontal_flip", "args": {"p": 0.5}},
    ]
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    image_folder = {"name": "image_folder", "args": {"root": str(root), "image_size": 16}}
    raw["eval"] = {"protocols": ["knn"], "baselines": [], "monitor_every": 1,
                   "train_data": image_folder, "test_data": image_folder}
    calls = []
    original = ViewPipeline.draw

    def spy(self, x, count, source_aspect=None):
        views = original(self, x, count, source_aspect=source_aspect)
        calls.append((x.clone(), None if source_aspect is None else source_aspect.clone(), torch.cat(views)))
        return views

    patch = pytest.MonkeyPatch()
    patch.setattr(ViewPipeline, "draw", spy)
    try:
        recipe = recipes.validate(raw, registries)
        results = fit(recipe, registries)
    finally:
        patch.undo()
    return out, root, recipe, results, calls


def test_fit_passes_each_chunk_its_aspects(whole_run):
    _, _, _, results, calls = whole_run
    # one epoch of 2 steps; accumulate 2: per step two chunks of 4, each embedded twice (GradCache)
    assert results["steps"] == 2 and len(calls) == 8
    for first, rerun in ((0, 2), (1, 3), (4, 6), (5, 7)):  # the re-run replays the same crops
        assert torch.equal(calls[first][1], calls[rerun][1]) and torch.equal(calls[first][2], calls[rerun][2])
    for images, aspects, _ in calls:
        assert aspects is not None and aspects.shape == (4,) and aspects.dtype == torch.float32
        for image, aspect in zip(images, aspects, strict=True):  # each aspect belongs to its own image
            if aspect > 1:
                assert aspect == pytest.approx(3.0) and near(image[:, 8, 0], RED)
            else:
                assert aspect == pytest.approx(1 / 3) and near(image[:, 0, 8], YELLOW)
    views = torch.cat([v for _, _, v in calls])
    assert shows(views, RED).any() and shows(views, YELLOW).any()


def test_eval_and_monitor_use_centre_crops(whole_run, registries):
    out, _, recipe, results, _ = whole_run
    assert results["eval"]["train_data"]["args"]["crop"] == "center"
    assert results["eval"]["test_data"]["args"]["crop"] == "center"
    assert 0.0 <= results["eval"]["knn_top1"] <= 1.0
    data = EvalData.from_recipe(recipe, registries)
    assert not data.train.whole_image and not data.test.whole_image
    metrics = (out / "metrics.jsonl").read_text()
    assert "knn_top1" in metrics  # the online monitor ran


def test_embed_uses_centre_crops(whole_run, registries, tmp_path):
    out, root, recipe, _, _ = whole_run
    target = tmp_path / "train.npz"
    assert main(["embed", str(out), "--split", "train", "--out", str(target)]) == 0
    saved = np.load(target)
    _, backbone = load_run(out, registries)
    centre = ds.ImageFolderDataset(str(root), image_size=16, crop="center")
    transform = EvalTransform.from_recipe(recipe, registries, centre[0][0])
    expected, labels = extract_features(backbone, centre, transform)
    assert torch.allclose(torch.from_numpy(saved["embeddings"]), expected, atol=1e-5)
    assert saved["labels"].tolist() == labels.tolist() and len(saved["paths"]) == 16
    squashed, _ = extract_features(backbone, ds.ImageFolderDataset(str(root), image_size=16), transform)
    assert not torch.allclose(squashed, expected, atol=1e-3)
    # an explicit other folder (unlabeled, with file paths) and the training data itself: centre crops too
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(wide()).save(photos / "a.png")
    assert main(["embed", str(out), "--out", str(tmp_path / "p.npz"), "--data.name", "image_folder",
                 "--data.args.root", str(photos), "--data.args.image_size", "16"]) == 0
    assert [p.rsplit("/", 1)[-1] for p in np.load(tmp_path / "p.npz")["paths"]] == ["a.png"]
    other = embed_component(recipe, registries, "test", {"name": "image_folder", "args": {"root": str(photos)}})
    assert other.args["crop"] == "center"
    no_eval_data = recipes.validate({**recipe.to_dict(), "eval": {"protocols": []}}, registries)
    assert embed_component(no_eval_data, registries, "train").args["crop"] == "center"
    chosen = embed_component(no_eval_data, registries, "train", {"args": {"crop": "whole"}})
    assert chosen.args["crop"] == "whole"  # an explicit --data.args.crop wins


def test_decode_benchmark_prints_json(capsys):
    """benchmarks/decode.py on a handful of tiny inputs (no timed assertions)."""
    import json

    module = load_benchmark("decode")
    threads = torch.get_num_threads()
    try:
        assert module.main(["--images", "2", "--large", "1", "--sizes", "224", "--rounds", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(capsys.readouterr().out)
    for group in ("jpeg_500x375", "jpeg_2000x1500"):
        for name in ("center_224", "whole_draft_224", "whole_no_draft_224"):
            assert report[group][name]["images_per_s"] > 0
