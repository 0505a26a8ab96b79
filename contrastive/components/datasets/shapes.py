"""``shapes``: a procedurally generated labelled image set, drawn from a seed in about a second.

Ten filled shapes (`SHAPES_CLASSES`) under nuisance variation that dominates pixel distance:
a random position, size and rotation, a dark foreground of any hue on a lighter background of any
hue that ramps in a random direction, a few small distractor dots and pixel noise.  Two images of
one class rarely share a colour or a pixel position, so raw pixels classify them poorly, while the
invariances SimCLR's augmentations teach (crops: position and scale; colour jitter and grayscale:
colour; flips: mirror images) are what recognising the shape needs.  It is the embedded
quickstart's data (``recipes/quickstart.yaml``) because there, unlike on digits, the learned
backbone visibly beats both raw pixels and a random-init backbone.

Each shape is a signed distance function in its own unit frame (polygons through
`polygon_distance`), rendered with analytic antialiasing: a pixel's coverage is its signed
distance in pixels, shifted by half a pixel and clamped to [0, 1].  Rendering is vectorised over
the images of a class, in float32 with elementwise operations only (nothing whose result depends
on the thread count), from per-image parameters drawn with NumPy's PCG64 generator seeded by
``(seed, split)``: the same arguments give the same uint8 images in every run.  Nothing is cached
on disk.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from contrastive.components.datasets.arrays import TensorImageDataset
from contrastive.errors import InvalidArgumentsError

SHAPES_CLASSES = [
    "disc", "ring", "square", "triangle", "plus", "star", "crescent", "half_disc", "heart", "arrow",
]  # fmt: skip

#: Every shape lies within this radius of its frame's origin (tests/components/test_shapes.py checks
#: it), so a shape whose centre keeps this margin times its scale from the border stays in the frame.
SHAPE_EXTENT = 1.15

#: Distinct streams of the generator for the two splits (so train and test never share an image).
_SPLIT_STREAM = {True: 0, False: 1}


def _regular_polygon(n: int, radius: float, phase: float = math.pi / 2) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int, outer: float, inner: float) -> np.ndarray:
    angles = math.pi / 2 + math.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


#: Polygon vertices in the shape's unit frame (y up); every shape is about as large as the unit disc.
_POLYGONS = {
    "triangle": _regular_polygon(3, 1.15),
    "star": _star(5, 1.15, 0.48),
    "arrow": np.array([[1.0, 0.0], [0.15, 0.8], [0.15, 0.32], [-0.95, 0.32],
                       [-0.95, -0.32], [0.15, -0.32], [0.15, -0.8]]),
}  # fmt: skip


def polygon_distance(px: torch.Tensor, py: torch.Tensor, vertices: np.ndarray) -> torch.Tensor:
    """Signed distance (negative inside) from the points ``(px, py)`` (any equal shapes) to the
    closed polygon ``vertices`` ``(V, 2)``: distance to the nearest edge, sign by the even-odd
    rule (Inigo Quilez's ``sdPolygon``, vectorised over the points).  Hand-written: no library
    the project uses evaluates a polygon's distance field on a tensor grid."""
    vx, vy = vertices[0]
    dist2 = (px - vx) ** 2 + (py - vy) ** 2
    inside = torch.zeros_like(px, dtype=torch.bool)
    count = len(vertices)
    for i in range(count):
        (ax, ay), (bx, by) = vertices[i], vertices[i - 1]
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0)
        dist2 = torch.minimum(dist2, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        crosses = (py >= ay) != (py >= by)
        left = ex * wy > ey * wx
        inside ^= crosses & (left == (by > ay))
    dist = dist2.sqrt()
    return torch.where(inside, -dist, dist)


def _box(px: torch.Tensor, py: torch.Tensor, half_w: float, half_h: float) -> torch.Tensor:
    qx, qy = px.abs() - half_w, py.abs() - half_h
    outside = (qx.clamp(min=0.0) ** 2 + qy.clamp(min=0.0) ** 2).sqrt()
    return outside + torch.maximum(qx, qy).clamp(max=0.0)


def _circle(px: torch.Tensor, py: torch.Tensor, radius: float, cx: float = 0.0, cy: float = 0.0) -> torch.Tensor:
    return ((px - cx) ** 2 + (py - cy) ** 2).sqrt() - radius


def _heart(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    # Inigo Quilez's sdHeart (tip at (0, 0), top at y = 1), scaled and moved to the unit frame
    x, y = px.abs() / 1.7, (py + 1.1) / 1.7
    upper = ((x - 0.25) ** 2 + (y - 0.75) ** 2).sqrt() - math.sqrt(2.0) / 4.0
    s = (x + y).clamp(min=0.0) * 0.5
    lower = torch.minimum(x**2 + (y - 1.0) ** 2, (x - s) ** 2 + (y - s) ** 2).sqrt() * torch.sign(x - y)
    return torch.where(x + y > 1.0, upper, lower) * 1.7


def shape_distance(name: str, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Signed distance (unit frame, negative inside) of the shape ``name`` at the points ``(px, py)``."""
    if name in _POLYGONS:
        return polygon_distance(px, py, _POLYGONS[name])
    if name == "disc":
        return _circle(px, py, 1.0)
    if name == "ring":
        return (_circle(px, py, 0.72)).abs() - 0.3
    if name == "square":
        return _box(px, py, 0.8, 0.8)
    if name == "plus":
        return torch.minimum(_box(px, py, 1.05, 0.34), _box(px, py, 0.34, 1.05))
    if name == "crescent":
        return torch.maximum(_circle(px, py, 1.0), -_circle(px, py, 0.8, 0.5, 0.0))
    if name == "half_disc":
        return torch.maximum(_circle(px, py, 1.05, 0.0, -0.4), -(py + 0.4))
    if name == "heart":
        return _heart(px, py)
    raise KeyError(name)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(N,)`` hue in [0, 1), saturation, value -> ``(N, 3)`` RGB in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0])[None, :] + 6.0 * h[:, None]) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _column(a: np.ndarray) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1, 1)`` float32, to broadcast against an ``(S, S)`` grid."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None, None]


def _colour(a: np.ndarray) -> torch.Tensor:
    """``(N, 3)`` -> ``(N, 3, 1, 1)`` float32."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, :, None, None]


def _disc_coverage(gx: torch.Tensor, gy: torch.Tensor, centre: np.ndarray, radius_px: np.ndarray,
                   px_per_unit: float) -> torch.Tensor:
    """``(N, 1, S, S)`` antialiased coverage of one disc per image (``centre`` ``(N, 2)`` in frame
    units, ``radius_px`` ``(N,)`` in pixels; radius 0: no disc)."""
    dist_px = ((gx[None] - _column(centre[:, 0])) ** 2 + (gy[None] - _column(centre[:, 1])) ** 2).sqrt() * px_per_unit
    radius = _column(radius_px)
    return ((radius - dist_px + 0.5).clamp(0.0, 1.0) * (radius > 0))[:, None]


#: Images rendered at once: bounds the float32 intermediates (about 50 MB each at 32 px) whatever
#: the dataset size, without changing any image (the noise is drawn chunk after chunk, in order).
RENDER_CHUNK = 4096


def render_shapes(labels: np.ndarray, image_size: int, rng: np.random.Generator, distractors: int = 3) -> torch.Tensor:
    """``(N, 3, S, S)`` uint8 images of the shapes ``labels`` (indices into `SHAPES_CLASSES`).

    Every nuisance is drawn from ``rng``, in a fixed order (changing it changes every image): the
    shape's radius (0.45-0.8 of half the side), rotation and position (it stays inside the frame);
    a dark foreground colour (any hue, value 0.1-0.45) on a lighter background (any hue, value
    0.65-1) that ramps in a random direction to a slightly different colour; ``distractors``
    candidate dots (each present with probability 0.7, any colour, anywhere, under the shape);
    Gaussian pixel noise (σ 0.03).
    """
    n = len(labels)
    scale = rng.uniform(0.45, 0.8, n)
    nuisances = {
        "scale": scale,
        "angle": rng.uniform(0.0, 2 * math.pi, n),
        "centre": rng.uniform(-1.0, 1.0, (n, 2)) * (1.0 - SHAPE_EXTENT * scale)[:, None],
        "fg": _hsv_to_rgb(rng.random(n), rng.uniform(0.3, 1.0, n), rng.uniform(0.1, 0.45, n)),
    }
    nuisances["bg"] = bg = _hsv_to_rgb(rng.random(n), rng.uniform(0.0, 0.8, n), rng.uniform(0.65, 1.0, n))
    nuisances["bg_far"] = np.clip(bg + rng.uniform(-0.1, 0.1, (n, 3)), 0.0, 1.0)
    nuisances["ramp_angle"] = rng.uniform(0.0, 2 * math.pi, n)
    nuisances["dot_centre"] = rng.uniform(-1.0, 1.0, (n, distractors, 2))
    nuisances["dot_radius"] = rng.uniform(0.04, 0.12, (n, distractors)) * (rng.random((n, distractors)) < 0.7)
    nuisances["dot_colour"] = rng.random((n, distractors, 3))
    images = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    for start in range(0, n, RENDER_CHUNK):
        rows = slice(start, min(n, start + RENDER_CHUNK))
        noise = rng.standard_normal((rows.stop - rows.start, 3, image_size, image_size)) * 0.03
        chunk = {key: value[rows] for key, value in nuisances.items()}
        images[rows] = _render(labels[rows], chunk, torch.from_numpy(noise.astype(np.float32)), image_size)
    return images


def _render(labels: np.ndarray, nuisances: dict[str, np.ndarray], noise: torch.Tensor, size: int) -> torch.Tensor:
    """The images of `render_shapes` for one chunk: ``nuisances`` its per-image draws,
    ``noise`` ``(n, 3, S, S)`` float32."""
    n = len(labels)
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0  # pixel centres in [-1, 1]
    gy, gx = (-grid)[:, None].expand(size, size), grid[None, :].expand(size, size)  # y up
    px_per_unit = size / 2.0

    # the shape: its signed distance in its own frame, rotated, scaled and moved
    angle, scale, centre = nuisances["angle"], nuisances["scale"], nuisances["centre"]
    cos, sin, inv_scale = _column(np.cos(angle)), _column(np.sin(angle)), _column(1.0 / scale)
    scale_px = _column(scale) * px_per_unit  # unit-frame distances -> pixels
    dx, dy = gx[None] - _column(centre[:, 0]), gy[None] - _column(centre[:, 1])
    local_x, local_y = (cos * dx + sin * dy) * inv_scale, (cos * dy - sin * dx) * inv_scale
    coverage = torch.empty(n, size, size, dtype=torch.float32)
    for index, name in enumerate(SHAPES_CLASSES):
        rows = torch.from_numpy(np.flatnonzero(labels == index))
        if len(rows):
            dist_px = shape_distance(name, local_x[rows], local_y[rows]) * scale_px[rows]
            coverage[rows] = (0.5 - dist_px).clamp(0.0, 1.0)

    ramp_angle = nuisances["ramp_angle"]
    ramp = ((_column(np.cos(ramp_angle)) * gx + _column(np.sin(ramp_angle)) * gy) * 0.5 + 0.5)[:, None]
    image = _colour(nuisances["bg"]) * (1.0 - ramp) + _colour(nuisances["bg_far"]) * ramp
    for k in range(nuisances["dot_radius"].shape[1]):
        radius_px = nuisances["dot_radius"][:, k] * px_per_unit
        dot = _disc_coverage(gx, gy, nuisances["dot_centre"][:, k], radius_px, px_per_unit)
        image = image * (1.0 - dot) + _colour(nuisances["dot_colour"][:, k]) * dot
    alpha = coverage[:, None]
    image = image * (1.0 - alpha) + _colour(nuisances["fg"]) * alpha + noise
    return (image * 255.0).round().clamp(0.0, 255.0).to(torch.uint8)


class ShapesDataset(TensorImageDataset):
    """Ten shapes under random colour, position, size and rotation, generated from ``seed`` (no files).

    ``(3, image_size, image_size)`` uint8 images: ``num_train`` of them with ``train: true``,
    ``num_test`` with ``train: false``, the two splits drawn from independent streams of ``seed``
    (no image is in both, whatever the sizes).  Classes are balanced (``labels``: ``i % 10``,
    shuffled) and named in `SHAPES_CLASSES`; ``distractors`` is the number of candidate
    dots per image (each drawn with probability 0.7; 0: none).  Building 2000 images takes about
    0.1 s at 16 px and 0.4 s at 32 px on 2 CPU cores.
    """

    def __init__(self, train: bool = True, image_size: int = 32, num_train: int = 2000, num_test: int = 1000,
                 seed: int = 0, distractors: int = 3) -> None:
        for key, value, low in (("image_size", image_size, 8), ("num_train", num_train, 1), ("num_test", num_test, 1),
                                ("seed", seed, 0), ("distractors", distractors, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentsError(f"shapes: {key} must be an int >= {low}, got {value!r}")
        rng = np.random.default_rng([seed, _SPLIT_STREAM[bool(train)]])
        count = num_train if train else num_test
        labels = rng.permutation(np.arange(count) % len(SHAPES_CLASSES))
        images = render_shapes(labels, image_size, rng, distractors)
        super().__init__(images, torch.from_numpy(labels.astype(np.int64)), list(SHAPES_CLASSES))
