"""The batched crop-and-resize used for random_resized_crop on accelerators equals Kornia's
per-sample ``crop_by_indices`` (slice + bilinear interpolate, align_corners=False) for every
crop that is not larger than the output."""

import pytest
import torch
from kornia.geometry.transform import crop_by_indices

from contrastive.components.augmentations import _batched_crop_resize


@pytest.mark.parametrize("height,width,out_h,out_w", [(32, 32, 32, 32), (64, 48, 64, 64), (50, 70, 24, 16), (9, 9, 9, 9)])
def test_batched_crop_matches_per_sample_crop(height, width, out_h, out_w):
    gen = torch.Generator().manual_seed(0)
    batch = 64
    x = torch.rand(batch, 3, height, width, generator=gen)
    crop_h = torch.randint(1, min(height, out_h) + 1, (batch,), generator=gen)
    crop_w = torch.randint(1, min(width, out_w) + 1, (batch,), generator=gen)
    y1 = (torch.rand(batch, generator=gen) * (height - crop_h + 1)).long()
    x1 = (torch.rand(batch, generator=gen) * (width - crop_w + 1)).long()
    y2, x2 = y1 + crop_h, x1 + crop_w
    corners = [torch.stack(c, 1) for c in ((x1, y1), (x2 - 1, y1), (x2 - 1, y2 - 1), (x1, y2 - 1))]
    boxes = torch.stack(corners, 1).float()
    expected = crop_by_indices(x, boxes, (out_h, out_w), interpolation="bilinear", align_corners=False, antialias=True)
    got = _batched_crop_resize(x, x1, x2, y1, y2, (out_h, out_w))
    assert got.shape == (batch, 3, out_h, out_w)
    torch.testing.assert_close(got, expected.clamp(0, 1), atol=2e-6, rtol=0)
