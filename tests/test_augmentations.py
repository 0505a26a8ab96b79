"""Tests of the built-in augmentations (contrastive.components.augmentations) and ViewPipeline."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from contrastive.components import augmentations as A
from contrastive.components.augmentations import views
from contrastive.errors import InvalidArgumentsError

# name -> (class, arguments that always apply, arguments that never apply)
AUGS = {
    "random_resized_crop": (A.RandomResizedCrop, {"size": 32, "scale": [0.3, 0.6], "p": 1.0}, {"size": 32, "p": 0.0}),
    "horizontal_flip": (A.HorizontalFlip, {"p": 1.0}, {"p": 0.0}),
    "color_jitter": (A.ColorJitter, {"p": 1.0}, {"p": 0.0}),
    "grayscale": (A.Grayscale, {"p": 1.0}, {"p": 0.0}),
    "gaussian_blur": (A.GaussianBlur, {"kernel_size": 5, "sigma": [0.5, 2.0], "p": 1.0}, {"p": 0.0}),
    "solarize": (A.Solarize, {"threshold": 0.5, "p": 1.0}, {"p": 0.0}),
    "normalize": (A.Normalize, {}, None),
}
RANDOM = [n for n in AUGS if n != "normalize"]


def image(channels: int = 3, size: int = 32) -> torch.Tensor:
    """A deterministic, asymmetric, colourful (C, H, W) image in [0, 1]."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    checker = ((torch.arange(size)[:, None] // 2 + torch.arange(size)[None] // 2) % 2).float()
    planes = [0.1 + 0.7 * xs + 0.1 * checker, 0.2 + 0.7 * ys * xs, 0.9 - 0.8 * ys]
    return torch.stack(planes[:channels]) if channels == 3 else planes[0][None].clone()


def batch(b: int = 8, channels: int = 3, size: int = 32) -> torch.Tensor:
    return image(channels, size).expand(b, -1, -1, -1).clone()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def differs_per_sample(out: torch.Tensor) -> bool:
    flat = out.flatten(1)
    return any(not torch.allclose(flat[0], flat[i], atol=1e-6) for i in range(1, len(flat)))


# -- the contract, for every name ----------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(AUGS))
def test_shape_dtype_range_and_input_untouched(name, channels):
    cls, always, _ = AUGS[name]
    x = torch.rand(8, channels, 32, 32)
    before = x.clone()
    for kwargs in (always, {"size": 32} if name == "random_resized_crop" else {}):
        out = cls(**kwargs)(x)
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert torch.equal(x, before), "an augmentation wrote into its input"
        if name != "normalize":
            assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", RANDOM)
def test_p0_is_identity(name):
    cls, _, never = AUGS[name]
    x = torch.rand(8, 3, 32, 32)
    assert torch.allclose(cls(**never)(x), x, atol=1e-6)


@pytest.mark.parametrize("name", RANDOM)
def test_p1_always_applies(name):
    cls, always, _ = AUGS[name]
    x = batch(16)
    out = cls(**always)(x)
    changed = (out - x).flatten(1).abs().amax(1) > 1e-3
    assert changed.all(), f"{name} with p=1 left {int((~changed).sum())} of 16 samples unchanged"


@pytest.mark.parametrize("name", RANDOM)
def test_fresh_parameters_per_sample(name):
    cls, always, _ = AUGS[name]
    kwargs = dict(always)
    if name in ("horizontal_flip", "grayscale", "solarize"):  # no continuous parameter: the gate varies
        kwargs["p"] = 0.5
    out = cls(**kwargs)(batch(16))
    assert differs_per_sample(out), f"{name} gave every identical sample the same output"


@pytest.mark.parametrize("name", RANDOM)
def test_per_sample_probability(name):
    cls, always, _ = AUGS[name]
    x = batch(64)
    out = cls(**{**always, "p": 0.5})(x)
    changed = int(((out - x).flatten(1).abs().amax(1) > 1e-3).sum())
    assert 12 <= changed <= 52  # Binomial(64, 0.5): mean 32, sd 4


BAD_ARGS = [
    ("random_resized_crop", {"size": 0}),
    ("random_resized_crop", {"size": [32, 32, 3]}),
    ("random_resized_crop", {"size": 32, "scale": (0.9, 0.1)}),
    ("random_resized_crop", {"size": 32, "scale": (0.0, 1.0)}),
    ("random_resized_crop", {"size": 32, "ratio": (0.0, 1.0)}),
    ("random_resized_crop", {"size": 32, "p": 1.5}),
    ("horizontal_flip", {"p": -0.1}),
    ("color_jitter", {"p": 1.5}),
    ("color_jitter", {"brightness": -0.1}),
    ("color_jitter", {"saturation": [1.2, 0.8]}),
    ("color_jitter", {"hue": 0.6}),
    ("color_jitter", {"hue": [-0.6, 0.1]}),
    ("grayscale", {"p": 2}),
    ("gaussian_blur", {"kernel_fraction": 0.0}),
    ("gaussian_blur", {"kernel_size": 4}),
    ("gaussian_blur", {"kernel_size": 1}),
    ("gaussian_blur", {"sigma": (0.0, 1.0)}),
    ("gaussian_blur", {"sigma": (2.0, 1.0)}),
    ("gaussian_blur", {"p": True}),
    ("solarize", {"threshold": 1.5}),
    ("solarize", {"p": -1}),
    ("normalize", {"mean": (0.5, 0.5), "std": (0.5, 0.5, 0.5)}),
    ("normalize", {"std": (0.2, 0.0, 0.2)}),
]


@pytest.mark.parametrize(("name", "kwargs"), BAD_ARGS)
def test_bad_arguments_raise(name, kwargs):
    with pytest.raises(InvalidArgumentsError, match=name):
        AUGS[name][0](**kwargs)


def test_error_message_style():
    with pytest.raises(InvalidArgumentsError, match=r"^color_jitter: p must be in \[0, 1\], got 1.5$"):
        A.ColorJitter(p=1.5)


# -- random_resized_crop ---------------------------------------------------------------------
def coordinate_image(size: int) -> torch.Tensor:
    """Channel 0 = column / (W - 1), channel 1 = row / (H - 1), channel 2 = 0."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([xs, ys, torch.zeros_like(xs)])[None]


def crop_boxes(out: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop width and height in pixels, read back from a cropped coordinate image."""
    width = (out[:, 0].amax((1, 2)) - out[:, 0].amin((1, 2))) * (side - 1) + 1
    height = (out[:, 1].amax((1, 2)) - out[:, 1].amin((1, 2))) * (side - 1) + 1
    return width, height


def test_crop_area_and_ratio():
    side = 64
    x = coordinate_image(side).expand(32, -1, -1, -1)
    out = A.RandomResizedCrop(size=side, scale=(0.5, 0.5))(x)
    w, h = crop_boxes(out, side)
    area = w * h / side**2
    assert ((area - 0.5).abs() < 0.05).all(), area
    assert ((w / h) > 3 / 4 - 0.05).all() and ((w / h) < 4 / 3 + 0.05).all()
    assert differs_per_sample(out)  # position and aspect ratio differ per sample


def test_crop_default_scale_statistics_and_rectangular_size():
    side = 64
    x = coordinate_image(side).expand(200, -1, -1, -1)
    assert A.RandomResizedCrop(size=[24, 16])(x[:2]).shape == (2, 3, 24, 16)
    out = A.RandomResizedCrop(size=side)(x)  # upsampling: the output's edge pixels are the crop's
    w, h = crop_boxes(out, side)
    area = w * h / side**2
    assert area.min() >= 0.07 and area.max() <= 1.0
    assert 0.45 < area.mean() < 0.62  # U(0.08, 1) has mean 0.54


def test_crop_left_out_by_p_is_the_whole_image_resized():
    x = coordinate_image(64).expand(4, -1, -1, -1)
    assert A.RandomResizedCrop(size=16, p=0.0)(x).shape == (4, 3, 16, 16)
    out = A.RandomResizedCrop(size=80, p=0.0)(x)
    w, h = crop_boxes(out, 64)
    assert torch.allclose(w, torch.full_like(w, 64)) and torch.allclose(h, torch.full_like(h, 64))


# -- color_jitter ----------------------------------------------------------------------------
def test_color_jitter_order_is_random_per_sample():
    jitter = A.ColorJitter(p=1.0)
    jitter(batch(64))
    orders = {tuple(o) for o in jitter.last_order.tolist()}
    assert len(orders) >= 10  # 24 permutations, drawn independently per sample
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)


def test_color_jitter_two_orders_give_two_results():
    # Fixed factors, brightness 1.8 then clipping: brightness-first and contrast-first differ.
    jitter = A.ColorJitter(
        brightness=(1.8, 1.8), contrast=(0.2, 0.2), saturation=0.0, hue=0.0, p=1.0, mode="sequential"
    )
    x = batch(32)
    out = jitter(x)
    b = torch.tensor([1.8])
    c = torch.tensor([0.2])
    brightness_first = A._contrast(A._brightness(x[:1], b), c)
    contrast_first = A._brightness(A._contrast(x[:1], c), b)
    assert not torch.allclose(brightness_first, contrast_first, atol=1e-3)
    is_bc = [torch.allclose(o, brightness_first[0], atol=1e-5) for o in out]
    is_cb = [torch.allclose(o, contrast_first[0], atol=1e-5) for o in out]
    assert all(p or q for p, q in zip(is_bc, is_cb, strict=True))
    assert any(is_bc) and any(is_cb)


def test_color_jitter_factor_ranges_follow_torchvision():
    x = torch.full((400, 3, 4, 4), 0.5)
    out = A.ColorJitter(brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0, p=1.0)(x)
    factor = out[:, 0, 0, 0] / 0.5
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5
    assert factor.min() < 0.65 and factor.max() > 1.35


def test_color_jitter_matches_torchvision_single_ops():
    tf = pytest.importorskip("torchvision.transforms.v2.functional")
    x = torch.rand(1, 3, 16, 16)
    for op, tv in (
        (A._brightness, tf.adjust_brightness),
        (A._contrast, tf.adjust_contrast),
        (A._saturation, tf.adjust_saturation),
    ):
        assert torch.allclose(op(x, torch.tensor([1.3])), tv(x, 1.3), atol=1e-4)
    assert torch.allclose(A._hue(x, torch.tensor([0.1])), tf.adjust_hue(x, 0.1), atol=1e-4)


def test_hue_equals_torchvision_on_ties_gray_and_extremes():
    tf = pytest.importorskip("torchvision.transforms.v2.functional")
    x = torch.rand(48, 3, 6, 6)
    x[:8] = x[:8, :1]  # gray: hue undefined, unchanged
    x[8:24] = (x[8:24] * 4).round() / 4  # ties between the max channels, exact 0 and 1
    shifts = torch.linspace(-0.5, 0.5, 48)
    expected = torch.stack([tf.adjust_hue(image, float(shift)) for image, shift in zip(x, shifts, strict=True)])
    torch.testing.assert_close(A._hue(x, shifts), expected, atol=5e-6, rtol=0)


def test_color_jitter_grayscale_data():
    x = batch(16, channels=1)
    out = A.ColorJitter(p=1.0)(x)  # saturation and hue do not apply to one channel
    assert out.shape == x.shape and differs_per_sample(out)


# -- grayscale, blur, solarize, normalize ----------------------------------------------------
def test_grayscale_keeps_channels_and_is_identity_for_one_channel():
    out = A.Grayscale(p=1.0)(batch(4))
    assert out.shape == (4, 3, 32, 32)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    gray = batch(4, channels=1)
    assert torch.equal(A.Grayscale(p=1.0)(gray), gray)


@pytest.mark.parametrize(
    ("fraction", "side", "kernel"),
    [(0.1, 32, 3), (0.1, 224, 23), (0.1, 96, 9), (0.1, 100, 11), (0.2, 64, 13), (0.01, 32, 3)],
)
def test_blur_kernel_size_from_fraction(fraction, side, kernel):
    blur = A.GaussianBlur(kernel_fraction=fraction)
    assert blur.kernel_size_for(side) == kernel
    assert kernel % 2 == 1
    assert A.GaussianBlur(kernel_size=7).kernel_size_for(side) == 7


def test_blur_uses_kernel_for_image_side():
    blur = A.GaussianBlur(kernel_fraction=0.2, sigma=(5.0, 5.0), p=1.0)
    impulse = torch.zeros(1, 1, 40, 48)
    impulse[0, 0, 20, 24] = 1.0
    support = (blur(impulse)[0, 0] > 0).nonzero()
    # 0.2 * min(40, 48) = 8 -> a 9-tap kernel (ties round up): the impulse spreads 4 pixels each way
    assert (support[:, 0].min(), support[:, 0].max()) == (16, 24)
    assert (support[:, 1].min(), support[:, 1].max()) == (20, 28)


def test_solarize_semantics():
    x = torch.rand(4, 3, 8, 8)
    out = A.Solarize(threshold=0.3, p=1.0)(x)
    assert torch.allclose(out, torch.where(x >= 0.3, 1 - x, x))


def test_normalize_values_and_grayscale_fallback():
    x = torch.rand(2, 3, 4, 4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.allclose(A.Normalize()(x), expected, atol=1e-6)
    g = torch.rand(2, 1, 4, 4)
    assert torch.allclose(A.Normalize()(g), (g - sum(mean) / 3) / (sum(std) / 3), atol=1e-6)
    with pytest.raises(InvalidArgumentsError, match="4 channels"):
        A.Normalize()(torch.rand(1, 4, 4, 4))


# -- ViewPipeline ----------------------------------------------------------------------------
def simclr_pipeline(size: int = 32) -> views.ViewPipeline:
    return views.ViewPipeline(
        [
            A.RandomResizedCrop(size),
            A.HorizontalFlip(),
            A.ColorJitter(),
            A.Grayscale(),
            A.GaussianBlur(),
            A.Solarize(),
            A.Normalize(),
        ]
    )


def test_view_pipeline_accepts_uint8_and_float():
    raw = (batch(4) * 255).round().to(torch.uint8)
    pipe = views.ViewPipeline([A.HorizontalFlip(p=0.0)])
    out = pipe(raw)
    assert out.dtype == torch.float32 and torch.allclose(out, raw.float() / 255)
    assert torch.equal(pipe(raw.float() / 255), raw.float() / 255)
    with pytest.raises(ValueError):
        pipe(raw[0])


def test_two_views_differ_and_track_no_gradient():
    pipe = simclr_pipeline()
    raw = (batch(8) * 255).to(torch.uint8)
    a, b = pipe.two_views(raw)
    assert a.shape == b.shape == (8, 3, 32, 32) and a.dtype == torch.float32
    assert not a.requires_grad
    assert ((a - b).flatten(1).abs().amax(1) > 1e-3).all()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert not pipe(x).requires_grad


def test_two_views_with_crop_to_a_new_size():
    pipe = views.ViewPipeline([A.RandomResizedCrop((16, 24)), A.ColorJitter(p=1.0)])
    a, b = pipe.two_views(torch.rand(3, 3, 32, 32))
    assert a.shape == b.shape == (3, 3, 16, 24)


# -- through the registry --------------------------------------------------------------------
@pytest.fixture(scope="module")
def registries():
    from contrastive.plugins import BUILTIN_MODULES

    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            pytest.skip(f"built-in module {module} not importable yet: {exc}")
    import contrastive

    return contrastive.load_registries(autoload=False)


def test_registry_names(registries):
    assert set(AUGS) <= set(registries.augmentations.names())
    for name, (cls, _, _) in AUGS.items():
        assert registries.augmentations.get(name) is cls


@pytest.mark.parametrize("name", list(AUGS))
def test_registry_builds_from_yaml_values(registries, name):
    _, always, _ = AUGS[name]
    yaml_like = {k: list(v) if isinstance(v, tuple) else v for k, v in always.items()}
    aug = registries.augmentations.build(name, **yaml_like)
    out = aug(torch.rand(2, 3, 32, 32))
    assert out.shape[:2] == (2, 3)


def test_registry_checks_types(registries):
    regs = registries.augmentations
    regs.check_args("random_resized_crop", {"size": [32, 32], "scale": [0.08, 1.0], "ratio": [0.75, 1.3333]})
    regs.check_args("color_jitter", {"brightness": 0.8, "hue": [-0.1, 0.1]})
    regs.check_args("gaussian_blur", {"kernel_size": None})
    with pytest.raises(InvalidArgumentsError):
        regs.check_args("random_resized_crop", {"size": "32"})
    with pytest.raises(InvalidArgumentsError):
        regs.check_args("horizontal_flip", {"probability": 0.5})
    assert math.isclose(regs.build("color_jitter", brightness=0.8).ranges[0][1], 1.8)
