"""The fast paths of the view pipeline: colour twist, crop boxes (incl. whole-image geometry),
uint8 crops on the CPU, grouped-convolution blur and chunked CPU processing."""

from __future__ import annotations

import math

import kornia
import pytest
import torch

from contrastive.components import augmentations as A
from contrastive.components.augmentations import views
from contrastive.errors import InvalidArgumentsError


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def colours(n: int = 64, size: int = 8) -> torch.Tensor:
    """Smooth random colour images with values in [0.3, 0.7] (no clamping at mild jitter)."""
    base = torch.rand(n, 3, 1, 1) * 0.3 + 0.35
    ramp = torch.linspace(-0.05, 0.05, size)
    return (base + ramp[None, None, None, :] * torch.rand(n, 3, 1, 1)).expand(n, 3, size, size).contiguous()


# -- colour twist ---------------------------------------------------------------------------------
def test_twist_equals_sequential_without_clamping():
    x = colours()
    args = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.0, "p": 0.8}
    torch.manual_seed(1)
    twist = A.ColorJitter(**args, mode="twist")(x)
    torch.manual_seed(1)
    sequential = A.ColorJitter(**args, mode="sequential")(x)
    torch.testing.assert_close(twist, sequential, atol=2e-5, rtol=0)
    assert not torch.allclose(twist, x, atol=1e-3)


def test_twist_one_channel_equals_sequential():
    x = colours()[:, :1]
    torch.manual_seed(2)
    twist = A.ColorJitter(0.3, 0.3, p=1.0, mode="twist")(x)
    torch.manual_seed(2)
    sequential = A.ColorJitter(0.3, 0.3, p=1.0, mode="sequential")(x)
    torch.testing.assert_close(twist, sequential, atol=2e-5, rtol=0)


def test_twist_hue_turns_like_torchvision_and_keeps_luma():
    x = torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.2, 0.8], [0.7, 0.6, 0.2], [0.3, 0.5, 0.7]])
    x = x[:, :, None, None].expand(-1, -1, 4, 4).contiguous()
    turn = 2 * math.pi
    for shift in (0.1, -0.1):
        out = A.ColorJitter(0.0, 0.0, 0.0, hue=(shift, shift), p=1.0, mode="twist")(x)
        moved = kornia.color.rgb_to_hsv(out)[:, 0, 0, 0] - kornia.color.rgb_to_hsv(x)[:, 0, 0, 0]
        moved = torch.remainder(moved / turn + 0.5, 1.0) - 0.5
        assert ((moved - shift).abs() < 0.05).all(), moved  # YIQ rotation ~ HSV hue shift
        luma = torch.tensor(A._LUMA)
        inside = (out > 0) & (out < 1)
        if inside.all():
            torch.testing.assert_close(torch.einsum("bchw,c->bhw", out, luma), torch.einsum("bchw,c->bhw", x, luma))
    same = A.ColorJitter(0.0, 0.0, 0.0, hue=0.0, p=1.0, mode="twist")(x)
    torch.testing.assert_close(same, x)


def test_twist_left_out_samples_are_untouched_and_mode_is_checked():
    x = colours(32)
    out = A.ColorJitter(0.5, 0.5, 0.5, 0.1, p=0.5, mode="twist")(x)
    untouched = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert 4 < sum(untouched) < 28
    with pytest.raises(InvalidArgumentsError, match="mode must be one of sequential, twist"):
        A.ColorJitter(mode="fast")


def test_colour_twist_contrast_uses_the_current_mean():
    # brightness 2 then contrast 0: every pixel becomes the mean gray of the brightened image.
    order = torch.tensor([[0, 1, 2, 3]])
    factors = torch.tensor([[2.0], [0.0], [1.0], [0.0]])
    A_, t, K = A.colour_twist(order, factors, 3)
    mean = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    pixel = torch.tensor([0.4, 0.0, 0.9], dtype=torch.float64)
    y = A_[0] @ pixel + t[0] + K[0] @ mean
    gray = 2 * (mean @ torch.tensor(A._LUMA, dtype=torch.float64))
    torch.testing.assert_close(y, gray.expand(3))


# -- crop boxes -------------------------------------------------------------------------------------
def test_crop_boxes_follow_torchvision_distribution():
    x1, x2, y1, y2 = A.sample_crop_boxes(4000, 100, 100, (0.08, 1.0), (3 / 4, 4 / 3))
    w, h = (x2 - x1).double(), (y2 - y1).double()
    area = w * h / 100**2
    assert (x1 >= 0).all() and (x2 <= 100).all() and (y1 >= 0).all() and (y2 <= 100).all()
    # torchvision's get_params, sampled the same way, gives mean area 0.482 (sd 0.235): large
    # areas with an off-square ratio do not fit and are redrawn, so the mean is below U(0.08, 1)'s
    assert area.min() > 0.06 and area.max() <= 1.0 and 0.45 < area.mean() < 0.51
    assert 0.21 < area.std() < 0.26
    assert ((w / h) > 0.70).all() and ((w / h) < 1.43).all()


def test_crop_boxes_in_the_original_geometry_of_a_squashed_image():
    aspect = torch.full((4000,), 2.0)  # a 2:1 photo squashed to 64 x 64
    x1, x2, y1, y2 = A.sample_crop_boxes(4000, 64, 64, (0.2, 0.2), (1.0, 1.0), aspect)
    w_f, h_f = (x2 - x1).double() / 64, (y2 - y1).double() / 64
    torch.testing.assert_close(w_f * h_f, torch.full_like(w_f, 0.2), atol=0.03, rtol=0)
    ratio_in_original = w_f * 2.0 / h_f  # a square in the photo is half as wide as tall on the canvas
    assert ((ratio_in_original - 1.0).abs() < 0.12).all()
    assert x1.min() == 0 and x2.max() == 64  # the whole image is reachable
    # a photo too narrow for any box of the ratio range falls back to a centred, clamped box
    x1, x2, y1, y2 = A.sample_crop_boxes(8, 64, 64, (1.0, 1.0), (3 / 4, 4 / 3), torch.full((8,), 0.25))
    assert (x2 - x1 == 64).all() and (y2 - y1 == 21).all() and (y1 == (64 - 21) // 2).all()  # 64 * 0.25 / 0.75


def test_random_resized_crop_with_source_aspect_and_errors():
    crop = A.RandomResizedCrop(16)
    x = torch.rand(6, 3, 32, 32)
    assert crop(x, source_aspect=torch.full((6,), 1.5)).shape == (6, 3, 16, 16)
    with pytest.raises(ValueError, match="source_aspect has 2 values for 6 images"):
        crop(x, source_aspect=torch.ones(2))
    pipe = views.ViewPipeline([A.HorizontalFlip()])
    with pytest.raises(InvalidArgumentsError, match="no random_resized_crop"):
        pipe.two_views(x, source_aspect=torch.ones(6))
    drawn = views.ViewPipeline([A.RandomResizedCrop(16)]).two_views(x, source_aspect=torch.ones(6))
    assert drawn[0].shape == (6, 3, 16, 16)


# -- uint8 on the CPU -------------------------------------------------------------------------------
def test_uint8_crop_matches_float_crop():
    x = (torch.rand(16, 3, 40, 40) * 255).round().to(torch.uint8)
    for size in (24, 64):  # shrinking (antialias) and enlarging
        torch.manual_seed(3)
        u8 = A.RandomResizedCrop(size)(x)
        torch.manual_seed(3)
        f32 = A.RandomResizedCrop(size)(x.float() / 255)
        assert u8.dtype == torch.uint8 and u8.shape == (16, 3, size, size)
        assert (u8.float() / 255 - f32).abs().max() <= 1.5 / 255


def test_pipeline_keeps_uint8_through_crop_and_flip_then_floats():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.dtype)
            return x

    x = (torch.rand(4, 3, 16, 16) * 255).to(torch.uint8)
    out = views.ViewPipeline([A.RandomResizedCrop(8), A.HorizontalFlip(), Spy()])(x)
    assert seen == [torch.float32] and out.dtype == torch.float32 and out.max() <= 1.0
    flipped = A.HorizontalFlip(p=1.0)(x)
    assert flipped.dtype == torch.uint8 and torch.equal(flipped, x.flip(-1))


# -- blur -------------------------------------------------------------------------------------------
def test_blur_matches_kornia_gaussian_blur2d():
    x = torch.rand(5, 3, 20, 24)
    out = A.GaussianBlur(kernel_size=7, sigma=(1.3, 1.3), p=1.0)(x)
    ref = kornia.filters.gaussian_blur2d(x, (7, 7), (1.3, 1.3), border_type="reflect")
    torch.testing.assert_close(out, ref.clamp(0, 1), atol=1e-6, rtol=0)


# -- chunked CPU pipeline ---------------------------------------------------------------------------
def test_chunked_pipeline_equals_one_pass_for_deterministic_steps(monkeypatch):
    pipe = views.ViewPipeline([A.RandomResizedCrop(12, p=0.0), A.Normalize()])
    x = (torch.rand(10, 3, 16, 16) * 255).to(torch.uint8)
    whole = pipe(x)
    monkeypatch.setattr(views, "CPU_CHUNK_BYTES", 3 * 16 * 16 * 4 * 3)  # 3 images per chunk
    torch.testing.assert_close(pipe(x), whole)


def test_chunked_pipeline_draws_per_sample_and_is_seeded(monkeypatch):
    monkeypatch.setattr(views, "CPU_CHUNK_BYTES", 1)  # one image per chunk
    pipe = views.ViewPipeline([A.RandomResizedCrop(8), A.ColorJitter(p=1.0), A.GaussianBlur(kernel_size=3, p=0.5)])
    x = (torch.rand(1, 3, 16, 16) * 255).to(torch.uint8).expand(6, -1, -1, -1)
    torch.manual_seed(5)
    a, b = pipe.two_views(x)
    torch.manual_seed(5)
    a2, b2 = pipe.two_views(x)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert a.shape == (6, 3, 8, 8) and not torch.allclose(a[0], a[1]) and not torch.allclose(a, b)
