"""Every Kornia augmentation by name (:mod:`contrastive.components.augmentations.kornia`): each
resolved class builds (with its defaults, or the arguments listed in NEEDS_ARGS with the reason)
and keeps the augmentation contract on a (4, C, 16, 16) batch on the CPU; the rest is excluded
with a reason; arguments are checked against Kornia's own signature."""

from __future__ import annotations

import pytest
import torch
import yaml

import contrastive.components.augmentations.kornia as KA
from contrastive.cli import main
from contrastive.components.augmentations.views import ViewPipeline, Views
from contrastive.errors import EXIT_USER_ERROR, InvalidArgumentsError, UnknownNameError
from tests.helpers import tiny_recipe_dict

#: Resolved names that do not build with their defaults, or whose defaults do not fit 16 px
#: images: the reason, and the arguments the contract test builds them with.
NEEDS_ARGS: dict[str, tuple[str, dict]] = {
    "kornia_center_crop": ("needs its output size", {"size": [8, 8]}),
    "kornia_random_crop": ("needs its output size", {"size": [8, 8]}),
    "kornia_random_resized_crop": ("needs its output size", {"size": [8, 8]}),
    "kornia_resize": ("needs its output size", {"size": [8, 8]}),
    "kornia_pad_to": ("needs its output size", {"size": [20, 20]}),
    "kornia_longest_max_size": ("needs its output size", {"max_size": 8}),
    "kornia_smallest_max_size": ("needs its output size", {"max_size": 8}),
    "kornia_random_rotation": ("needs its angle range", {"degrees": 15}),
    "kornia_random_rotation90": ("needs its range of quarter turns", {"times": [-1, 2]}),
    "kornia_random_affine": ("needs its angle range", {"degrees": 15, "translate": [0.1, 0.1]}),
    "kornia_random_shear": ("needs its shear range", {"shear": 10}),
    "kornia_random_fisheye": (
        "needs its distortion ranges (tensors in Kornia; lists in a recipe)",
        {"center_x": [-0.3, 0.3], "center_y": [-0.3, 0.3], "gamma": [0.9, 1.1]},
    ),
    "kornia_random_gaussian_blur": ("needs its kernel size and sigma range", {"kernel_size": 3, "sigma": [0.1, 2.0]}),
    "kornia_random_motion_blur": (
        "needs its kernel size, angle and direction ranges",
        {"kernel_size": 3, "angle": 35.0, "direction": 0.5},
    ),
    "kornia_random_rain": (
        "its default drops (5-20 px high) do not fit 16 px images",
        {"number_of_drops": [5, 10], "drop_height": [2, 4], "drop_width": [-2, 2]},
    ),
    "kornia_rand_augment": ("needs the number of operations and their magnitude", {"n": 2, "m": 10}),
}

#: Kornia classes that must never get a name (a sample of the exclusions, one per rule).
MUST_BE_EXCLUDED = {
    "AugmentationSequential": "container",
    "RandomMixUpV2": "labels",
    "RandomCutMixV2": "labels",
    "RandomMosaic": "several samples",
    "RandomTransplantation": "masks",
    "RandomRotation3D": "3-D",
    "RandomAffine3D": "3-D",
    "AugmentationBase2D": "base class",
}

NAMES = sorted(KA.kornia_classes())


def build(registries, name: str, **extra):
    args = {**NEEDS_ARGS.get(name, ("", {}))[1], **extra}
    return registries.augmentations.build(name, **args)


def class_name(name: str) -> str:
    return KA.kornia_classes()[name].__name__


def test_names_are_read_from_kornia_with_the_documented_examples():
    assert len(NAMES) >= 50
    assert {"kornia_random_rotation", "kornia_random_affine", "kornia_random_perspective", "kornia_random_erasing",
            "kornia_random_equalize", "kornia_random_posterize", "kornia_random_sharpness",
            "kornia_random_channel_shuffle", "kornia_random_motion_blur", "kornia_random_elastic_transform",
            "kornia_random_plasma_brightness", "kornia_rand_augment", "kornia_trivial_augment",
            "kornia_auto_augment", "kornia_random_rgb_shift", "kornia_random_rotation90"} <= set(NAMES)  # fmt: skip
    assert all(n.startswith("kornia_") for n in NAMES)
    assert KA.snake_case("RandomRGBShift") == "random_rgb_shift" and KA.snake_case("RandAugment") == "rand_augment"
    assert set(NEEDS_ARGS) <= set(NAMES)  # the table names no class Kornia has dropped


def test_exclusions_carry_reasons_and_nothing_excluded_resolves():
    exclusions = KA.kornia_exclusions()
    for cls, why in MUST_BE_EXCLUDED.items():
        assert cls in exclusions and exclusions[cls], (cls, why)
    assert not any(n.endswith("3d") for n in NAMES)
    resolver = KA.KorniaAugmentations()
    for cls in exclusions:
        assert resolver.resolve("kornia_" + KA.snake_case(cls)) is None, cls


def test_built_in_names_keep_priority(registries):
    augmentations = registries.augmentations
    assert augmentations.source("color_jitter") == "contrastive (contrastive.components.augmentations)"
    assert type(augmentations.build("color_jitter")).__module__ == "contrastive.components.augmentations"
    assert type(augmentations.build("kornia_color_jitter")).__name__ == "KorniaAugmentation"


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", NAMES)
def test_every_resolved_class_keeps_the_contract(registries, name, channels):
    module = build(registries, name)
    op = module.op
    assert getattr(op, "same_on_batch", False) is False and getattr(op, "p_batch", 1.0) == 1.0
    torch.manual_seed(0)
    x = torch.rand(4, channels, 16, 16)
    before = x.clone()
    torch.manual_seed(1)
    y = module(x)
    torch.manual_seed(1)
    again = module(x)
    assert isinstance(y, torch.Tensor) and y.dtype == x.dtype and y.device == x.device
    assert torch.equal(x, before), "the input was written to"
    assert torch.equal(y, again), "not reproducible from the global seed"
    assert torch.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 1.0
    assert y.shape[:2] == (4, channels)
    if class_name(name) in KA.RESIZING:  # the table is exact: these, and only these, set the size
        assert y.shape[-2:] != (16, 16)
    else:
        assert y.shape[-2:] == (16, 16)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NEEDS_ARGS])
def test_defaults_build_without_arguments(registries, name):
    registries.augmentations.check_args(name, {})


@pytest.mark.parametrize("name", [n for n in NAMES if class_name(n) in KA.RGB_ONLY])
def test_rgb_only_table_is_needed_and_grayscale_goes_through_rgb(registries, name):
    module = build(registries, name, p=1.0)
    with pytest.raises(Exception):  # noqa: B017 - Kornia's own error types vary
        module.op(torch.rand(2, 1, 16, 16))
    gray = torch.rand(2, 1, 16, 16)
    assert module(gray).shape == (2, 1, 16, 16)


def test_parameters_and_p_are_per_sample(registries):
    x = torch.rand(1, 3, 16, 16).expand(64, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    rotated = build(registries, "kornia_random_rotation", p=1.0)(x)
    assert len({tuple(r.flatten()[:40].tolist()) for r in rotated}) == 64  # 64 different angles
    torch.manual_seed(0)
    half = build(registries, "kornia_random_erasing", p=0.5)(x)
    changed = (half != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54  # per sample, not all or nothing
    torch.manual_seed(0)
    policy = build(registries, "kornia_trivial_augment")(x)
    assert len({tuple(r.flatten().tolist()) for r in policy}) > 8  # each sample draws its own operation
    torch.manual_seed(0)
    none = build(registries, "kornia_rand_augment", p=0.0)(x)
    assert torch.equal(none, x)


def test_out_of_range_results_are_clamped(registries):
    noise = build(registries, "kornia_random_gaussian_noise", std=1.0, p=1.0)
    raw = noise.op(torch.full((4, 3, 16, 16), 0.5))
    assert raw.min() < 0 or raw.max() > 1
    out = noise(torch.full((4, 3, 16, 16), 0.5))
    assert out.min() >= 0 and out.max() <= 1


def test_sampling_stays_on_the_cpu_when_the_pipeline_moves(registries):
    module = build(registries, "kornia_random_rotation").to(torch.float64)
    assert module.op.device.type == "cpu" and module.op.dtype == torch.get_default_dtype()
    policy = build(registries, "kornia_trivial_augment").to("cpu")
    inner = [m for m in policy.modules() if hasattr(m, "set_rng_device_and_dtype")]
    assert inner and all(m.device.type == "cpu" for m in inner)


def test_a_kornia_crop_makes_a_view_group_of_its_size(registries):
    global_views = ViewPipeline([registries.augmentations.build("random_resized_crop", size=16)])
    local_views = ViewPipeline([build(registries, "kornia_random_resized_crop"),  # size [8, 8]
                                build(registries, "kornia_random_rotation", p=1.0)])  # fmt: skip
    views = Views([(2, global_views), (3, local_views)])
    out = views(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8))
    assert [tuple(v.shape) for v in out] == [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 3
    assert not torch.equal(out[2], out[3])  # independent views


def test_resizing_ops_take_p_1_only(registries):
    with pytest.raises(InvalidArgumentsError, match=r"kornia_random_crop': p must be 1 .* random_resized_crop"):
        build(registries, "kornia_random_crop", p=0.5)


def test_arguments_are_checked_against_kornias_signature(registries):
    augmentations = registries.augmentations
    with pytest.raises(InvalidArgumentsError) as excinfo:
        augmentations.build("kornia_random_rotation", degres=15)
    message = str(excinfo.value)
    assert "has no argument 'degres' — did you mean 'degrees'?" in message and "\n" not in message
    with pytest.raises(InvalidArgumentsError, match="needs argument.*'degrees'"):
        augmentations.build("kornia_random_rotation")
    with pytest.raises(InvalidArgumentsError, match="has no argument 'same_on_batch'"):
        augmentations.build("kornia_random_rotation", degrees=15, same_on_batch=True)
    with pytest.raises(InvalidArgumentsError, match="argument 'p' should be float"):
        augmentations.build("kornia_random_rotation", degrees=15, p="half")
    for p in (1.5, -0.1):
        with pytest.raises(InvalidArgumentsError, match=r"kornia_random_rotation': p must be in \[0, 1\]"):
            augmentations.build("kornia_random_rotation", degrees=15, p=p)
    with pytest.raises(InvalidArgumentsError, match=r"kornia_trivial_augment': p must be in \[0, 1\]"):
        augmentations.build("kornia_trivial_augment", p=2)
    with pytest.raises(InvalidArgumentsError, match="Kornia's RandomRotation refused the arguments.*non negative"):
        augmentations.build("kornia_random_rotation", degrees=-5)
    with pytest.raises(UnknownNameError, match="did you mean 'kornia_random_rotation'"):
        augmentations.get("kornia_random_rotaton")


def test_an_op_that_cannot_take_the_images_fails_in_one_line(registries):
    rain = registries.augmentations.build("kornia_random_rain", p=1.0)  # drops up to 20 px high
    with pytest.raises(InvalidArgumentsError) as excinfo:
        rain(torch.rand(2, 3, 16, 16))
    assert "kornia_random_rain' on (2, 3, 16, 16) images: Kornia's RandomRain failed" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_list_and_describe(capsys):
    assert main(["list", "augmentations", "kornia*"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("kornia_")}
    assert set(lines) == set(NAMES)
    assert "RandomRotation: Rotate images by a random angle" in lines["kornia_random_rotation"]
    assert not any(line.startswith("color_jitter") for line in out.splitlines())  # only the pattern's names
    assert main(["list", "augmentations", "--describe", "kornia_random_rotation"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kornia_random_rotation(*, degrees:") and "p: float = 0.5" in out
    assert main(["list"]) == 0
    assert "every 2-D Kornia augmentation: kornia_*" in capsys.readouterr().out


def test_misspelt_argument_in_a_recipe_exits_2_with_a_suggestion(tmp_path, capsys):
    raw = tiny_recipe_dict(str(tmp_path / "run"))
    raw["augmentation"].append({"name": "kornia_random_rotation", "args": {"degres": 15, "p": 0.5}})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["check", "--recipe", str(recipe)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert "has no argument 'degres' — did you mean 'degrees'?" in err and len(err.splitlines()) == 1
