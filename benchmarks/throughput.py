"""Side-by-side throughput: our GPU-first data path vs the per-sample pipeline of the peers.

    python benchmarks/throughput.py                        # CPU defaults (<= ~8 min on 2 cores)
    python benchmarks/throughput.py --quick                # seconds: tiny sizes, for smoke tests
    python benchmarks/throughput.py --device cuda --preset gpu   # what benchmarks/gpu.sh runs

Prints one JSON document (and writes it to ``--output``):

* ``augmentation``: views/s of our SimCLR view pipeline (``ViewPipeline.two_views`` on a uint8
  batch, on ``--device``; ``color_jitter`` in its default ``sequential`` mode and again with the
  opt-in ``twist``) vs torchvision.transforms.v2 applied per sample in DataLoader workers (how
  lightly and solo-learn do it) and vs Kornia's ``AugmentationSequential`` of the same steps on
  the same batch and device, at each size of the preset;
* ``augmentation_ops``: views/s of single augmentations applied to every sample, each alone in a
  ``ViewPipeline``: our built-ins beside the same op by its Kornia name (``kornia_*``), and
  Kornia ops we have no built-in for (rotation, affine, perspective, erasing, TrivialAugment ...);
* ``training``: steady-state views/s and peak memory of a full step of our engine (timed through
  ``contrastive.training.fit``: the ``views_per_second`` and ``peak_memory_mb`` of its
  ``results.json``) vs a reference loop written with lightly (``SimCLRTransform`` in DataLoader
  workers, ``NTXentLoss``) with the same backbone, head, optimiser, batch, image size and data;
* ``methods`` (``--parts methods``): images/s of each built-in method, of multi-crop SimCLR, of
  SwAV (its 3000 prototypes) and of DINO (its paper's 65536-prototype head), the multi-crop rows
  with 2 global + 6 local views at half the size, on the first training row's backbone, with
  ``simclr`` as the reference row of the same run;
* ``decode`` (``--decode``): JPEG decode of synthetic files, PIL with a reduced-size draft in
  workers vs batched ``torchvision.io.decode_jpeg(device="cuda")``;
* ``ratios``: ours / reference for each pair, and the issue's goals.

Each training measurement runs in its own subprocess, so peak memory (``ru_maxrss`` of the
training process on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU) is not shared
between them; DataLoader worker processes are not counted in either.  Data: synthetic uint8
images (random values), identical for both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

# -- shared set-up ------------------------------------------------------------------------------


def simclr_augmentation(size: int, blur: bool) -> list[dict[str, Any]]:
    """The SimCLR view pipeline as recipe entries (CIFAR strength 0.5 jitter; blur at ImageNet sizes)."""
    steps = [
        {"name": "random_resized_crop", "args": {"size": size, "scale": [0.08, 1.0]}},
        {"name": "horizontal_flip", "args": {"p": 0.5}},
        {"name": "color_jitter", "args": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 0.8}},
        {"name": "grayscale", "args": {"p": 0.2}},
    ]
    if blur:
        steps.append({"name": "gaussian_blur", "args": {"kernel_fraction": 0.1, "sigma": [0.1, 2.0], "p": 0.5}})
    steps.append({"name": "normalize", "args": {}})
    return steps


def torchvision_transform(size: int, blur: bool):
    """The same pipeline with torchvision.transforms.v2, for one ``(C, H, W)`` uint8 image."""
    from torchvision.transforms import v2

    steps = [
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(0.2),
    ]
    if blur:
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, (0.1, 2.0))], p=0.5))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    return v2.Compose(steps)


def kornia_transform(size: int, blur: bool):
    """The same pipeline as Kornia's ``AugmentationSequential``, for a ``(B, 3, H, W)`` float batch.

    Per-sample semantics wherever Kornia has them: every ``p`` is per sample except the crop's
    (Kornia's ``RandomResizedCrop`` takes ``p`` as a batch probability; here it is 1, as in
    SimCLR), ``align_corners=False`` as torchvision; Kornia's ``ColorJitter`` draws one order of
    its four steps per call, shared by the batch (ours and torchvision's: one per sample)."""
    import kornia.augmentation as K

    steps = [
        K.RandomResizedCrop((size, size), scale=(0.08, 1.0), align_corners=False),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
    ]
    if blur:
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        steps.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=0.5))
    steps.append(K.Normalize(mean=torch.tensor((0.485, 0.456, 0.406)), std=torch.tensor((0.229, 0.224, 0.225))))
    return K.AugmentationSequential(*steps)


def synthetic_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``(n, 3, size, size)`` uint8: random values, the same for every seed on every machine."""
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


POOL = 1024  # distinct synthetic images; longer datasets repeat them (memory stays small at 224 px)


class SyntheticImages(torch.utils.data.Dataset):
    """Fixed-size uint8 images, label 0 (the dataset contract); registered as ``bench_synthetic``."""

    def __init__(self, num_images: int = 1024, image_size: int = 32, seed: int = 0) -> None:
        self.images = synthetic_images(min(num_images, POOL), image_size, seed)
        self.num_images = num_images
        self.labels = torch.arange(num_images, dtype=torch.int64) % 10  # 10 classes (SupCon's positives)
        self.num_channels = 3
        self.image_size = (image_size, image_size)
        self.classes = [str(c) for c in range(10)]
        self.has_labels = True

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index % len(self.images)], int(self.labels[index])


class _PerSampleViews(torch.utils.data.Dataset):
    """Two views per sample with ``transform`` (torchvision v2 or lightly's SimCLRTransform)."""

    def __init__(self, num_images: int, size: int, transform, pil: bool = False) -> None:
        self.images, self.transform, self.pil = synthetic_images(min(num_images, POOL), size), transform, pil
        self.num_images = num_images
        if pil:
            from PIL import Image

            self.images = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in self.images]

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int):
        image = self.images[index % len(self.images)]
        if self.pil:
            return self.transform(image), 0  # lightly: a list of two views
        return (self.transform(image), self.transform(image)), 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_calls(call, device: torch.device, steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``call()`` after ``warmup`` untimed ones, the device
    synchronised around each."""
    for _ in range(warmup):
        call()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -- augmentation only --------------------------------------------------------------------------


def bench_aug_ours(size: int, batch: int, device: str = "cpu", steps: int = 5, warmup: int = 2,
                   jitter_mode: str = "sequential") -> dict[str, Any]:
    """views/s of ``ViewPipeline.two_views`` on a uint8 batch already on ``device``; ``jitter_mode``:
    ``color_jitter``'s mode (``sequential``, the default: torchvision's distribution, or ``twist``,
    the opt-in colour matrix)."""
    import contrastive
    from contrastive.components.augmentations.views import ViewPipeline

    regs = contrastive.load_registries(autoload=False)
    dev = torch.device(device)
    blur = size >= 96
    steps_args = simclr_augmentation(size, blur)
    for a in steps_args:
        if a["name"] == "color_jitter":
            a["args"]["mode"] = jitter_mode
    pipe = ViewPipeline([regs.augmentations.build(a["name"], **a["args"]) for a in steps_args]).to(dev)
    x = synthetic_images(batch, size).to(dev)
    times = _timed_calls(lambda: pipe.two_views(x), dev, steps, warmup)
    total = sum(times)
    return {"impl": f"ours: ViewPipeline.two_views (batched, color_jitter mode {jitter_mode})", "device": str(dev),
            "size": size, "jitter_mode": jitter_mode,
            "batch": batch, "blur": blur, "views_per_s": 2 * batch * steps / total,
            "ms_per_batch_median": 1000 * sorted(times)[len(times) // 2]}


def bench_aug_kornia(size: int, batch: int, device: str = "cpu", steps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """views/s of Kornia's ``AugmentationSequential`` (:func:`kornia_transform`) on the same uint8
    batch on ``device``, timed as :func:`bench_aug_ours`: uint8 -> float, then one pass over both
    views (``cat([x, x])``)."""
    import kornia

    dev = torch.device(device)
    blur = size >= 96
    pipe = kornia_transform(size, blur).to(dev)
    x = synthetic_images(batch, size).to(dev)

    def two_views() -> torch.Tensor:
        with torch.no_grad():
            return pipe(torch.cat([x, x]).float().div_(255))

    times = _timed_calls(two_views, dev, steps, warmup)
    return {"impl": f"kornia {kornia.__version__}: AugmentationSequential (batched)", "device": str(dev), "size": size,
            "batch": batch, "blur": blur, "views_per_s": 2 * batch * steps / sum(times),
            "ms_per_batch_median": 1000 * sorted(times)[len(times) // 2]}


def op_rows(size: int) -> list[tuple[str, dict[str, Any]]]:
    """Single augmentations, each applied to every sample (``p: 1``): our built-ins beside their
    Kornia-by-name counterparts, then Kornia ops we have no built-in for."""
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
    jitter = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 1.0}
    return [
        ("horizontal_flip", {"p": 1.0}),
        ("kornia_random_horizontal_flip", {"p": 1.0}),
        ("color_jitter", jitter),
        ("kornia_color_jitter", jitter),
        ("grayscale", {"p": 1.0}),
        ("kornia_random_grayscale", {"p": 1.0}),
        ("gaussian_blur", {"kernel_size": kernel, "sigma": [0.1, 2.0], "p": 1.0}),
        ("kornia_random_gaussian_blur", {"kernel_size": kernel, "sigma": [0.1, 2.0], "p": 1.0}),
        ("kornia_random_rotation", {"degrees": 15, "p": 1.0}),
        ("kornia_random_affine", {"degrees": 15, "translate": [0.1, 0.1], "p": 1.0}),
        ("kornia_random_perspective", {"p": 1.0}),
        ("kornia_random_erasing", {"p": 1.0}),
        ("kornia_random_sharpness", {"p": 1.0}),
        ("kornia_random_posterize", {"p": 1.0}),
        ("kornia_random_equalize", {"p": 1.0}),
        ("kornia_trivial_augment", {"p": 1.0}),
    ]


def bench_aug_ops(size: int, batch: int, device: str = "cpu", steps: int = 5, warmup: int = 2,
                  names: list[str] | None = None) -> list[dict[str, Any]]:
    """views/s of each of :func:`op_rows` alone, as a one-step ``ViewPipeline.two_views`` on a uint8
    batch on ``device`` (uint8 -> float included, as in :func:`bench_aug_ours`): one JSON row each."""
    import contrastive
    from contrastive.components.augmentations.views import ViewPipeline

    regs = contrastive.load_registries(autoload=False)
    dev = torch.device(device)
    x = synthetic_images(batch, size).to(dev)
    rows = []
    for name, args in op_rows(size):
        if names and name not in names:
            continue
        pipe = ViewPipeline([regs.augmentations.build(name, **args)]).to(dev)
        times = _timed_calls(lambda pipe=pipe: pipe.two_views(x), dev, steps, warmup)
        rows.append({"impl": "op", "name": name, "args": args, "device": str(dev), "size": size, "batch": batch,
                     "views_per_s": 2 * batch * steps / sum(times),
                     "ms_per_batch_median": 1000 * sorted(times)[len(times) // 2]})
    return rows


def bench_aug_torchvision(size: int, batch: int, workers: int | None = None, steps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """views/s of torchvision.transforms.v2 applied per sample (two views) in DataLoader workers.

    Steady state: the batches the workers prefetched during warm-up (``workers x prefetch_factor``)
    are drained before the clock starts, so the timed batches arrive at the production rate."""
    workers = _cpu_count() if workers is None else workers
    blur = size >= 96
    skip = warmup + 2 * workers
    data = _PerSampleViews(batch * (skip + steps), size, torchvision_transform(size, blur))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, num_workers=workers,
                                         prefetch_factor=2 if workers else None)
    it = iter(loader)
    for _ in range(skip):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    total = time.perf_counter() - start
    del it
    return {"impl": "torchvision.transforms.v2 per sample in DataLoader workers", "device": "cpu", "size": size,
            "batch": batch, "blur": blur, "workers": workers, "views_per_s": 2 * batch * steps / total}


# -- full training step -------------------------------------------------------------------------


def train_recipe(output_dir: str, *, backbone: str, size: int, batch: int, steps: int, device: str,
                 precision: str, num_images: int, workers: int | None, channels_last: bool | None,
                 compile: bool = False, method: str = "simclr", local_views: int = 0) -> dict[str, Any]:
    """The recipe our loop runs: synthetic data, SimCLR views, MLP head (dino: the paper's head,
    :data:`HEADS`), NT-Xent (for the methods that take the recipe's loss; a predictor for those
    that take one), SGD, no eval.

    ``method``: the registered method; ``local_views`` > 0: multi-crop, 2 global views at
    ``size`` plus that many local views at ``size // 2`` (crop scale 0.05-0.4)."""
    cifar_stem = size <= 64
    views: dict[str, Any] = {"augmentation": simclr_augmentation(size, blur=size >= 96)}
    if local_views:
        local = simclr_augmentation(size // 2, blur=size // 2 >= 96)
        local[0] = {"name": "random_resized_crop", "args": {"size": size // 2, "scale": [0.05, 0.4]}}
        views = {"views": [{"count": 2, "augmentation": views["augmentation"]},
                           {"count": local_views, "augmentation": local}]}
    parts: dict[str, Any] = {"head": {"name": "mlp", "args": {"hidden_dim": 2048, "out_dim": 128, "num_layers": 2}}}
    if method in HEADS:
        parts["head"] = HEADS[method]
    if method in PREDICTOR_METHODS:
        parts["predictor"] = {"name": "mlp", "args": {"hidden_dim": 512, "out_dim": 128}}
    if method in LOSS_METHODS:
        parts["loss"] = {"name": "ntxent", "args": {"temperature": 0.5}}
    return {
        "seed": 0,
        "data": {"name": "bench_synthetic", "args": {"num_images": num_images, "image_size": size}},
        "method": {"name": method},
        **parts,
        **views,
        "backbone": {"name": backbone, "args": {"cifar_stem": True} if cifar_stem else {}},
        "optimizer": OPTIMIZERS.get(method, {"name": "sgd", "args": {"lr": 0.06, "lr_scaling": "none", "momentum": 0.9,
                                                                     "weight_decay": 5e-4}}),
        "scheduler": {"name": "constant", "args": {}},
        "trainer": {"max_epochs": 1000, "max_steps": steps, "batch_size": batch, "mixed_precision": precision,
                    "output_dir": output_dir, "overwrite": True, "progress": False, "log_every": 1000,
                    "checkpoint_every": 0, "cpu": device == "cpu", "num_workers": workers,
                    "channels_last": channels_last, "compile": compile},
        "eval": {"protocols": [], "baselines": []},
    }


def bench_train_ours(*, backbone: str, size: int, batch: int, steps: int, warmup: int, device: str = "cpu",
                     precision: str = "no", workers: int | None = None, channels_last: bool | None = None,
                     compile: bool = False, method: str = "simclr", local_views: int = 0) -> dict[str, Any]:
    """Our training step, timed through ``fit``: ``results.json`` views/s over the steps after ``warmup``
    (``method``, ``local_views``: see :func:`train_recipe`)."""
    import contrastive
    from contrastive import recipe as recipes
    from contrastive.training import fit

    regs = contrastive.load_registries(autoload=False)
    regs.datasets.register("bench_synthetic", SyntheticImages)
    with tempfile.TemporaryDirectory() as out:
        raw = train_recipe(out, backbone=backbone, size=size, batch=batch, steps=warmup + steps, device=device,
                           precision=precision, num_images=batch * (warmup + steps), workers=workers,
                           channels_last=channels_last, compile=compile, method=method, local_views=local_views)
        raw["trainer"]["speed_warmup_steps"] = warmup  # results.json's views/s leaves these steps out
        recipe = recipes.validate(raw, regs)
        start = time.perf_counter()
        results = fit(recipe, regs)
        wall = time.perf_counter() - start
        saved = json.loads(open(os.path.join(out, "results.json")).read())
    assert saved["views_per_second"] == results["views_per_second"]
    return {"impl": "ours: contrastive.training.fit (results.json)", "device": results["device"], "backbone": backbone,
            "size": size, "batch": batch, "precision": precision, "steps_timed": steps, "warmup_steps": warmup,
            "views_per_s": results["views_per_second"], "peak_memory_mb": results["peak_memory_mb"],
            "fit_wall_s": wall, "channels_last": channels_last, "compile": compile, "method": method,
            "views_per_image": results["views_per_image"],
            "images_per_s": results["views_per_second"] / results["views_per_image"]}


def bench_train_lightly(*, backbone: str, size: int, batch: int, steps: int, warmup: int, device: str = "cpu",
                        precision: str = "no", workers: int | None = None, channels_last: bool | None = None,
                        compile: bool = False) -> dict[str, Any]:
    """The reference: lightly's SimCLRTransform on PIL images in DataLoader workers, NTXentLoss, the
    same timm backbone (our registry's, CIFAR stem at <= 64 px), head, SGD and precision."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    import contrastive

    dev = torch.device(device)
    workers = _cpu_count() if workers is None else workers
    regs = contrastive.load_registries(autoload=False)
    torch.manual_seed(0)
    net = regs.backbones.build(backbone, **({"cifar_stem": True} if size <= 64 else {}))
    head = SimCLRProjectionHead(net.num_features, 2048, 128)
    model = torch.nn.Sequential(net, head).to(dev)
    use_cl = channels_last if channels_last is not None else dev.type == "cuda"
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        net.compile()
    transform = SimCLRTransform(input_size=size, cj_strength=0.5, gaussian_blur=0.5 if size >= 96 else 0.0)
    data = _PerSampleViews(batch * (warmup + steps), size, transform, pil=True)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                         pin_memory=dev.type == "cuda", persistent_workers=workers > 0,
                                         prefetch_factor=2 if workers else None)
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model.train()
    times: list[float] = []
    tick = time.perf_counter()
    for step, ((x0, x1), _) in enumerate(loader):  # one epoch = warmup + steps batches
        x = torch.cat([x0.to(dev, non_blocking=True), x1.to(dev, non_blocking=True)])  # pinned -> async copies
        if use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            z0, z1 = model(x).chunk(2)
            loss = criterion(z0, z1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the engine reads its loss every step too
        now = time.perf_counter()
        if step >= warmup:
            times.append(now - tick)
        tick = now
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return {"impl": "lightly reference: SimCLRTransform in DataLoader workers + NTXentLoss", "device": str(dev),
            "backbone": backbone, "size": size, "batch": batch, "precision": precision, "workers": workers,
            "steps_timed": len(times), "warmup_steps": warmup, "views_per_s": 2 * batch * len(times) / sum(times),
            "peak_memory_mb": peak, "channels_last": use_cl, "compile": compile}


TRAIN_FUNCTIONS = {"ours": bench_train_ours, "lightly": bench_train_lightly}


def run_isolated(kind: str, **kwargs) -> dict[str, Any]:
    """Run ``TRAIN_FUNCTIONS[kind](**kwargs)`` in a fresh interpreter (its own peak memory)."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps({"kind": kind, **kwargs})],
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"impl": kind, "error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1])


# -- JPEG decode (variable-size images) ---------------------------------------------------------


def make_jpegs(folder: str, n: int, width: int = 500, height: int = 375, seed: int = 0) -> list[str]:
    """``n`` synthetic JPEGs (smooth colour gradients plus noise, quality 90) of ImageNet's typical size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(n):
        base = np.stack([(xx * rng.uniform(0.2, 1) + yy * rng.uniform(0, 0.5)) % 256,
                         (yy * rng.uniform(0.2, 1)) % 256, (xx + yy) * rng.uniform(0.1, 0.3) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


class _PILDecode(torch.utils.data.Dataset):
    """CPU path: PIL decode with a reduced-size JPEG draft (shorter side >= ``min_side``), whole image kept."""

    def __init__(self, paths: list[str], min_side: int) -> None:
        self.paths, self.min_side = paths, min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        with Image.open(self.paths[index]) as img:
            w, h = img.size
            scale = self.min_side / min(w, h)
            if scale < 1:
                img.draft("RGB", (int(w * scale + 0.999), int(h * scale + 0.999)))
            img = img.convert("RGB")
            # a fixed-size batch for the benchmark: resize to min_side square (the view crop comes later)
            img = img.resize((self.min_side, self.min_side))
            return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


class _ReadBytes(torch.utils.data.Dataset):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from torchvision.io import read_file

        return read_file(self.paths[index])


def bench_decode(n: int = 512, batch: int = 128, min_side: int = 256, device: str = "cuda",
                 workers: int | None = None) -> dict[str, Any]:
    """images/s: PIL + draft in workers vs ``decode_jpeg(device=cuda)`` on batches of file bytes."""
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg

    workers = _cpu_count() if workers is None else workers
    out: dict[str, Any] = {"images": n, "batch": batch, "min_side": min_side, "workers": workers}
    with tempfile.TemporaryDirectory() as folder:
        paths = make_jpegs(folder, n)
        out["jpeg_mb"] = sum(os.path.getsize(p) for p in paths) / 2**20
        loader = torch.utils.data.DataLoader(_PILDecode(paths, min_side), batch_size=batch, num_workers=workers)
        next(iter(loader))
        start = time.perf_counter()
        for _ in loader:
            pass
        out["cpu_pil_draft_images_per_s"] = n / (time.perf_counter() - start)
        if device.startswith("cuda") and torch.cuda.is_available():
            dev = torch.device(device)
            raw_loader = torch.utils.data.DataLoader(_ReadBytes(paths), batch_size=batch, num_workers=workers,
                                                     collate_fn=list)

            def gpu_pass() -> None:
                for files in raw_loader:
                    images = decode_jpeg(files, device=dev)
                    # whole images, each resized so the shorter side is min_side (per image: sizes differ)
                    for im in images:
                        h, w = im.shape[-2:]
                        s = min_side / min(h, w)
                        F.interpolate(im[None].float(), size=(round(h * s), round(w * s)), mode="bilinear",
                                      antialias=True)
                _sync(dev)

            gpu_pass()  # warm-up (nvjpeg handles)
            start = time.perf_counter()
            gpu_pass()
            out["gpu_nvjpeg_images_per_s"] = n / (time.perf_counter() - start)
    return out


# -- driver ---------------------------------------------------------------------------------------

# --parts methods: (row name, method, local views); simclr is the reference row.
METHOD_ROWS = (("simclr", "simclr", 0), ("supcon", "supcon", 0), ("simclr_multicrop_2x6", "simclr", 6),
               ("byol", "byol", 0), ("simsiam", "simsiam", 0), ("barlow_twins", "barlow_twins", 0), ("vicreg", "vicreg", 0),
               ("swav_2x6", "swav", 6), ("dino_multicrop_2x6", "dino", 6))
#: Methods whose row trains another head than the mlp 2048 -> 128: DINO's own, as in its paper
#: (MLP 2048 -> 2048 -> 256, 65536 weight-normalised prototypes); the teacher sees the 2 global views.
HEADS = {"dino": {"name": "dino", "args": {"hidden_dim": 2048, "bottleneck_dim": 256, "out_dim": 65536}}}
#: Methods whose row trains with another optimiser than SGD at lr 0.06: VICReg's loss (weights 25 /
#: 25 / 1) diverged under it (inf at step 4 on the synthetic images); its paper's LARS, base lr 0.2
#: scaled linearly, weight decay 1e-6, trains.  A step's cost hardly depends on the optimiser.
OPTIMIZERS = {"vicreg": {"name": "lars", "args": {"lr": 0.2, "lr_scaling": "linear", "weight_decay": 1e-6}}}
#: Methods that take the recipe's predictor (an mlp back to the head's 128 dimensions), and those
#: that use the recipe's loss (the others have their own and get no loss: section).
PREDICTOR_METHODS = ("byol", "simsiam", "moco_v3", "nnclr")
LOSS_METHODS = ("simclr", "supcon")

PRESETS = {
    # ResNet-18 CIFAR stem at 32 px, batch 256: the CPU goal; 1 + 2 steps each (a step is ~1 min here)
    "cpu": {"aug": [(32, 256), (224, 32)], "train": [("resnet18", 32, 256, "no")], "warmup": 1, "steps": 2,
            "aug_steps": 3, "decode": False},
    "quick": {"aug": [(16, 8)], "train": [("test_resnet", 16, 8, "no")], "warmup": 1, "steps": 1,
              "aug_steps": 1, "decode": False, "decode_images": 16},
    "gpu": {"aug": [(32, 512), (224, 256)],
            "train": [("resnet18", 32, 512, "bf16"), ("resnet50", 224, 256, "bf16")],
            # warm-up longer than the reference loader's prefetch (16 workers x 2 batches): steady state
            "warmup": 40, "steps": 30, "aug_steps": 20, "decode": True},
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    preset = dict(PRESETS[args.preset])
    if args.steps:
        preset["steps"] = args.steps
    if args.warmup is not None:
        preset["warmup"] = args.warmup
    report: dict[str, Any] = {
        "preset": args.preset, "device": args.device, "cpu_cores": _cpu_count(),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg(),
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available() else None,
        "augmentation": [], "augmentation_ops": [], "training": [], "ratios": {},
    }
    started = time.perf_counter()
    if "aug" in args.parts:
        for size, batch in preset["aug"]:
            timing = {"steps": preset["aug_steps"], "warmup": 1}
            ours = bench_aug_ours(size, batch, args.device, **timing)
            twist = bench_aug_ours(size, batch, args.device, **timing, jitter_mode="twist")
            ref = bench_aug_torchvision(size, batch, args.workers, **timing)
            theirs = bench_aug_kornia(size, batch, args.device, **timing)
            report["augmentation"] += [ours, twist, ref, theirs]
            ratios = report["ratios"]
            ratios[f"augmentation_{size}px"] = ours["views_per_s"] / ref["views_per_s"]
            ratios[f"augmentation_{size}px_twist_jitter"] = twist["views_per_s"] / ref["views_per_s"]
            ratios[f"augmentation_{size}px_vs_kornia"] = ours["views_per_s"] / theirs["views_per_s"]
            ratios[f"augmentation_{size}px_twist_jitter_vs_kornia"] = twist["views_per_s"] / theirs["views_per_s"]
            print(f"aug {size}px: ours {ours['views_per_s']:.0f} views/s (twist jitter {twist['views_per_s']:.0f}), "
                  f"torchvision per-sample {ref['views_per_s']:.0f}, kornia {theirs['views_per_s']:.0f} views/s",
                  file=sys.stderr)
            ops = bench_aug_ops(size, batch, args.device, **timing)
            report["augmentation_ops"] += ops
            print(f"aug ops {size}px: " + ", ".join(f"{r['name']} {r['views_per_s']:.0f}" for r in ops) + " views/s",
                  file=sys.stderr)
    if "train" in args.parts:
        for backbone, size, batch, precision in preset["train"]:
            if args.device == "cpu":
                precision = "no"  # no bf16 units on most CPUs: fp32 for both sides
            common = {"backbone": backbone, "size": size, "batch": batch, "steps": preset["steps"],
                      "warmup": preset["warmup"], "device": args.device, "precision": precision,
                      "compile": args.compile}
            skipped = {"error": "not run (--sides)"}
            ours = run_isolated("ours", **common, workers=args.workers) if "ours" in args.sides else skipped
            ref = run_isolated("lightly", **common, workers=args.workers) if "lightly" in args.sides else skipped
            report["training"] += [r for r in (ours, ref) if r is not skipped]
            if "error" not in ours and "error" not in ref:
                report["ratios"][f"training_{backbone}_{size}px"] = ours["views_per_s"] / ref["views_per_s"]
                print(f"train {backbone} {size}px: ours {ours['views_per_s']:.1f} views/s, lightly "
                      f"{ref['views_per_s']:.1f} views/s", file=sys.stderr)
            # share of the step spent on augmentation (the GPU goal: aug + loss <= 10%)
            aug = next((a for a in report["augmentation"] if a["size"] == size and a["impl"].startswith("ours")), None)
            if aug and "error" not in ours:
                report["ratios"][f"augmentation_share_of_step_{backbone}_{size}px"] = ours["views_per_s"] / aug["views_per_s"]
    if "methods" in args.parts:  # one backbone, every built-in method and multi-crop, vs simclr in the same run
        backbone, size, batch, precision = preset["train"][0]
        precision = "no" if args.device == "cpu" else precision
        common = {"backbone": backbone, "size": size, "batch": batch, "steps": preset["steps"],
                  "warmup": preset["warmup"], "device": args.device, "precision": precision, "compile": args.compile}
        chosen = set(args.method_rows.split(",")) | {"simclr"} if args.method_rows else None
        rows = {name: run_isolated("ours", **common, workers=args.workers, method=method, local_views=local)
                for name, method, local in METHOD_ROWS if chosen is None or name in chosen}
        report["methods"] = list(rows.values())
        reference = rows["simclr"]
        for name, row in rows.items():
            if name != "simclr" and "error" not in row and "error" not in reference:
                report["ratios"][f"method_{name}_images_per_s_vs_simclr"] = row["images_per_s"] / reference["images_per_s"]
                print(f"method {name}: {row['images_per_s']:.1f} images/s, simclr {reference['images_per_s']:.1f}",
                      file=sys.stderr)
    if preset["decode"] or args.decode:
        n = preset.get("decode_images", 512)
        report["decode"] = bench_decode(n=n, batch=min(128, n), device=args.device, workers=args.workers)
    report["goals"] = {
        "cpu": {"training_ratio_vs_lightly": ">= 1.0 (resnet18, 32 px, batch 256)",
                "augmentation_ratio_vs_torchvision": ">= 3.0"},
        "gpu": {"augmentation_224px_views_per_s": ">= 20000", "resnet50_224px_bf16_views_per_s": ">= 3000",
                "resnet18_32px_views_per_s": ">= 20000", "augmentation_share_of_step": "<= 0.10"},
    }
    report["load_average_at_end"] = os.getloadavg()
    report["wall_time_s"] = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (our pipeline and both training loops)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: gpu on cuda, else cpu")
    parser.add_argument("--quick", action="store_true", help="the 'quick' preset: tiny sizes, seconds")
    parser.add_argument("--parts", default="aug,train", help="comma list of aug, train, methods")
    parser.add_argument("--method-rows", default=None,
                        help="with --parts methods: only these rows (comma list of "
                             + ", ".join(name for name, _, _ in METHOD_ROWS) + "), beside simclr")
    parser.add_argument("--sides", default="ours,lightly", help="training loops to run: ours, lightly or both")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up training steps, not timed")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for the per-sample pipelines (default: all cores) and for ours "
                             "(default: the engine's choice)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of the main processes (both sides; workers use 1). On a "
                             "CPU shared with other jobs, 1 avoids OpenMP oversubscription")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (both sides)")
    parser.add_argument("--decode", action="store_true", help="also benchmark JPEG decode")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.method_rows.split(",")) - {name for name, _, _ in METHOD_ROWS}) if args.method_rows else []
    if unknown:
        parser.error(f"--method-rows: no row named {', '.join(unknown)} (rows: {', '.join(n for n, _, _ in METHOD_ROWS)})")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the training subprocesses
        torch.set_num_threads(args.threads)
    if args.child:
        spec = json.loads(args.child)
        result = TRAIN_FUNCTIONS[spec.pop("kind")](**spec)
        print(json.dumps(result))
        return 0
    args.preset = "quick" if args.quick else args.preset or ("gpu" if args.device.startswith("cuda") else "cpu")
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    args.sides = [p.strip() for p in args.sides.split(",") if p.strip()]
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
