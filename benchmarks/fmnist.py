"""Fashion-MNIST quality benchmark: ``contrastive fit`` vs reference implementations written with lightly.

One run on one machine, for each method of ``--method`` (default ``simclr``; any of simclr, supcon,
moco, moco_v3, nnclr, byol, simsiam, barlow_twins, vicreg, swav, dino), at the same backbone, batch size, epochs, image size, optimiser settings
(the preset's LARS, lr, weight decay and warm-up for every row but dino, which brings its own
multi-crop views, head and AdamW) and augmentation strengths — so between rows only the method
differs:

1. **ours** — ``contrastive fit --recipe recipes/simclr_fmnist.yaml --method.name M`` plus the
   method's entry of :data:`METHOD_PRESETS` (a subprocess, as a user runs it); the first method's
   ``results.json`` also holds the raw-pixel and random-init baselines.  Under the CPU preset this
   is the shipped ``recipes/METHOD_fmnist_cpu.yaml`` (tests/test_recipe.py holds the two equal).
2. **lightly** (every method but supcon and moco_v3) — the method as lightly's examples write it
   (``examples/pytorch/{simclr,moco,nnclr,byol,simsiam,barlowtwins,vicreg}.py``): lightly's
   ``SimCLRTransform`` (PIL, in DataLoader workers), its projection / prediction heads, its losses
   (``NTXentLoss`` with a memory bank for MoCo, ``NegativeCosineSimilarity``, ``BarlowTwinsLoss``,
   ``VICRegLoss``), ``NNMemoryBankModule`` (NNCLR), ``update_momentum`` (MoCo, BYOL: with
   ``cosine_schedule`` per step), ``LARS`` (one lr for every group: lightly's examples have no
   per-group rates) and ``CosineWarmupScheduler``
   around the *same* backbone module, in the plain PyTorch loop of the examples, with the queue
   sizes, momentum, temperature and head sizes of our run of the method.  DINO as
   ``examples/pytorch/dino.py`` writes it: ``DINOTransform`` (multi-crop), ``DINOProjectionHead``
   (its ``cancel_last_layer_gradients``), ``DINOLoss``, ``update_momentum`` with
   ``cosine_schedule``, and the preset's AdamW and gradient clipping.
3. Every backbone is scored by the same frozen-feature protocols (:mod:`contrastive.evaluation`:
   weighted kNN k=200 T=0.1, L-BFGS linear probe) on the 10k test images, fitted on the 60k
   training images.

Prints a JSON document and a table (rows ``ours simclr``, ``lightly simclr``, ``ours moco``, ...,
then the baselines: kNN / linear top-1, train and total seconds, views/s), and writes the JSON to
``OUT/benchmark.json``.  Needs ``pip install lightly`` (``pip install -e .[bench]``).

    python benchmarks/fmnist.py --data /usr/share/datasets/fashion-mnist            # default budget
    python benchmarks/fmnist.py --data DIR --method simclr,supcon,moco,moco_v3,nnclr  # the contrastive methods
    python benchmarks/fmnist.py --data DIR --method byol,simsiam,barlow_twins,vicreg  # the negative-free ones
    python benchmarks/fmnist.py --data DIR --max-steps 5 --eval-subset 2000         # smoke test
    python benchmarks/fmnist.py --data DIR -- --loss.args.temperature 0.2          # recipe overrides
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "simclr_fmnist.yaml"
#: The default CPU budget (< 30 min on 2 idle cores for SimCLR, both implementations and all
#: evaluations): timm's small test_resnet with the CIFAR stem, views of 16 px cropped from the
#: 28 px images (as lightly's SimCLRTransform does; evaluation resizes to 16 px), 3 epochs.
#: --preset recipe trains the recipe as written (resnet18 at 28 px; a GPU run).
#: lr, lr_scaling, temperature and warm-up were set by the sweep in docs/benchmarks.md ("Tuning"),
#: which has the numbers; lightly's references read the same overrides.
CPU_PRESET = ["--backbone.name", "test_resnet", "--augmentation.0.args.size", "16",
              "--trainer.max_epochs", "3", "--scheduler.args.warmup_epochs", "0.2",
              "--optimizer.args.lr", "0.15", "--optimizer.args.lr_scaling", "sqrt", "--loss.args.temperature", "0.2"]

#: The methods --method takes, in table order, and those with a lightly reference.
METHODS = ("simclr", "supcon", "moco", "moco_v3", "nnclr", "byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino")
LIGHTLY_METHODS = ("simclr", "moco", "nnclr", "byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino")
#: A prediction head the size of the recipe's projection head (mlp 512 -> 128), for the methods
#: that take one: its out_dim must equal the head's, since predictions are compared with projections.
PREDICTOR = ["--predictor.name", "mlp", "--predictor.args", "{hidden_dim: 512, out_dim: 128}"]
#: DINO's multi-crop views: 2 global 16 px crops at scale (0.4, 1) and 4 local 8 px crops at (0.1, 0.4),
#: each with the preset's flip and colour jitter (recipes/dino_fmnist_cpu.yaml).
_JITTER = [{"name": "horizontal_flip", "args": {"p": 0.5}},
           {"name": "color_jitter", "args": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0, "p": 0.8}}]
DINO_VIEWS = [
    {"count": 2, "augmentation": [{"name": "random_resized_crop", "args": {"size": 16, "scale": [0.4, 1.0]}}, *_JITTER]},
    {"count": 4, "augmentation": [{"name": "random_resized_crop", "args": {"size": 8, "scale": [0.1, 0.4]}}, *_JITTER]},
]
DINO_ARGS = {"teacher_temperature": 0.04, "warmup_teacher_temperature": 0.04, "warmup_teacher_temperature_epochs": 0,
             "student_temperature": 0.1, "center_momentum": 0.9, "momentum": 0.99, "final_momentum": 1.0,
             "freeze_last_layer_epochs": 1, "global_views": 2}
DINO_HEAD = {"name": "dino", "args": {"hidden_dim": 512, "bottleneck_dim": 128, "out_dim": 2048, "norm_last_layer": True}}
DINO_OPTIMIZER = {"name": "adamw", "args": {"lr": 1.0e-3, "lr_scaling": "linear", "weight_decay": 0.04}}
#: Per-method recipe overrides of our run, after the preset (and before the overrides after --).
#: Everything else — backbone, head, batch, epochs, view size, LARS, lr, warm-up, augmentation —
#: is the preset's for every method.  lightly's references read their queue sizes, momentum,
#: temperature and head sizes from the resolved recipe, so both sides change together.
METHOD_PRESETS: dict[str, list[str]] = {
    # The recipe as it is: ntxent at the preset's tuned tau 0.2.
    "simclr": [],
    # The recipe's ntxent at the preset's tau with the labels as positives: nothing to add.
    "supcon": [],
    # Queue 4096: lightly's MoCo example's memory bank, 1/15 of an epoch's keys, so the queue
    # turns over ~15 times an epoch.  m 0.99 instead of the paper's 0.999: a 3-epoch run has only
    # ~700 steps and 0.999 would leave the key encoder near its random init (short schedules, as
    # lightly's examples, use 0.99).  moco has its own InfoNCE, not the recipe's loss: its
    # temperature is set to the preset's loss temperature (0.2) by method_overrides.
    "moco": ["--method.args", "{queue_size: 4096, momentum: 0.99}"],
    # The paper's tau 0.2 and starting m 0.99 (cosine to 1 over the run); the predictor is
    # required (queries h(g(f(x)))).
    "moco_v3": [*PREDICTOR, "--method.args", "{temperature: 0.2, momentum: 0.99}"],
    # Support set 8192 (not the paper's 98,304, more than the 59,904 projections an epoch pushes:
    # check_data refuses that); tau 0.2, the preset's, instead of the paper's 0.1 tuned for 1000
    # epochs.  The predictor is required (p = h(z)).
    "nnclr": [*PREDICTOR, "--method.args", "{queue_size: 8192, temperature: 0.2}"],
    # The target's momentum from 0.99 (not the paper's 0.996, tuned for ~300k steps; lightly's
    # examples start at 0.99 too) to 1 on the cosine schedule; the predictor back to 128.
    "byol": [*PREDICTOR, "--method.args", "{momentum: 0.99}"],
    # The paper's bottleneck predictor (hidden = out / 4: 128 -> 32 -> 128), its lr fixed, and its
    # 3-layer projector with BatchNorm on the output (lightly's SimSiamProjectionHead too).  With the
    # preset's 2-layer head SimSiam ended below random init after 3 epochs (kNN 0.7555, linear 0.8162).
    "simsiam": ["--predictor.name", "mlp", "--predictor.args", "{hidden_dim: 32, out_dim: 128}",
                "--head.args.num_layers", "3", "--head.args.last_batch_norm", "true"],
    # The paper's lambda 5e-3 and biases at 0.024 x the weights' lr; its 3-layer projector at the
    # preset's 512 -> 512 -> 128 (not 8192-d).
    "barlow_twins": ["--head.args.num_layers", "3"],
    # The paper's weights 25 / 25 / 1 and its 3-layer expander at 512 -> 512 -> 128 (with the
    # 2-layer head VICReg tied random init after 3 epochs: kNN 0.7816, linear 0.8279).
    "vicreg": ["--head.args.num_layers", "3"],
    # 30 prototypes for 10 classes, the paper's tau 0.1 (not the preset's 0.2) and epsilon 0.05,
    # the prototypes frozen for the warm-up's 0.2 epochs (the paper's one epoch would be a third of
    # the run), no queue at batch 256; multi-crop views from MULTICROP.
    "swav": ["--method.args", "{prototypes: 30, temperature: 0.1, freeze_prototypes_epochs: 0.2, queue_size: 0}"],
    # Multi-crop views instead of the two-view pipeline, the dino head (2048 prototypes), tau_t 0.04
    # held, m 0.99 -> 1, the last layer frozen for the first epoch; AdamW 1e-3 (wd 0.04) and
    # gradient clipping 3.0 instead of the preset's LARS (recipes/dino_fmnist_cpu.yaml says why).
    "dino": ["--augmentation", "null", "--views", json.dumps(DINO_VIEWS), "--method.args", json.dumps(DINO_ARGS),
             "--head", json.dumps(DINO_HEAD), "--optimizer", json.dumps(DINO_OPTIMIZER), "--trainer.grad_clip", "3.0"],
}
#: Multi-crop methods: (local views, their crop scale).  Their recipe's ``views:`` are the preset's
#: augmentation as 2 global views, then that many local views at half its crop size, cropped at
#: that scale (SwAV's 2 + 6 at 224 / 96 px, scaled to a 16 px budget: 2 + 4 at 16 / 8 px).
MULTICROP: dict[str, tuple[int, list[float]]] = {"swav": (4, [0.05, 0.2])}


def parse_methods(value: str) -> list[str]:
    methods = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))  # each once, in the order given


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of the four IDX files")
    parser.add_argument("--recipe", default=str(RECIPE), help="our recipe (default: recipes/simclr_fmnist.yaml)")
    parser.add_argument("--method", type=parse_methods, default=["simclr"],
                        help=f"comma list of methods to train, each with ours and (for {', '.join(LIGHTLY_METHODS)}) "
                        f"lightly: any of {', '.join(METHODS)} (default: simclr)")
    parser.add_argument("--preset", choices=["cpu", "recipe"], default=None,
                        help="cpu: test_resnet at 16 px for 3 epochs (default without a GPU); recipe: the recipe as written "
                        "(default with a GPU)")
    parser.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default: the recipe's)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop pre-training after N optimiser steps (smoke tests)")
    parser.add_argument("--eval-subset", type=int, default=None,
                        help="evaluate on the first N train / N test images only (smoke tests)")
    parser.add_argument("--out", default="runs/bench_fmnist", help="output folder")
    parser.add_argument("--skip-lightly", action="store_true", help="only our runs and the baselines")
    parser.add_argument("--skip-ours", action="store_true", help="only lightly (baselines need our run)")
    parser.add_argument("--lightly-workers", type=int, default=None,
                        help="DataLoader workers for lightly's CPU transforms (default: 1 on <= 2 cores, else cores - 1, at most 8)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides after --, e.g. -- --loss.args.temperature 0.2")
    return parser.parse_args(argv)


def build_recipe(args, registries, method: str | None = None):
    """The recipe of ``method`` (None: the recipe's own method, simclr) with the preset, the
    command-line settings, the method's :data:`METHOD_PRESETS` entry and the overrides after --."""
    import torch

    from contrastive import recipe as recipes

    preset = args.preset or ("recipe" if torch.cuda.is_available() else "cpu")
    common = ["--data.args.root", args.data] + (CPU_PRESET if preset == "cpu" else [])
    if args.epochs is not None:
        common += ["--trainer.max_epochs", str(args.epochs)]
    if args.batch_size is not None:
        common += ["--trainer.batch_size", str(args.batch_size)]
    if args.max_steps is not None:
        common += ["--trainer.max_steps", str(args.max_steps)]
    user = list(args.overrides)
    own = [] if method is None else method_overrides(method, args.recipe, common, user, registries)
    overrides = common + own + user
    return recipes.load(args.recipe, overrides, registries), overrides


def method_overrides(method: str, recipe_path: str, common: list[str], user: list[str], registries) -> list[str]:
    """``--method.name METHOD`` and its :data:`METHOD_PRESETS` entry.  A method with a temperature
    argument of its own (it does not use the recipe's loss) that neither the entry nor the
    overrides set (moco) gets the recipe's loss temperature — the preset's tau, as the methods
    that use the recipe's loss train at."""
    from contrastive import recipe as recipes

    own = ["--method.name", method, *METHOD_PRESETS[method]]
    if method in MULTICROP:
        own += multicrop_overrides(recipes.load(recipe_path, common, registries), *MULTICROP[method])
    resolved = recipes.load(recipe_path, common + own + user, registries)
    takes = inspect.signature(registries.methods.get(method)).parameters
    if ("temperature" in takes and "temperature" not in resolved.method.args and resolved.loss is not None
            and "temperature" in resolved.loss.args):
        own += ["--method.args.temperature", str(resolved.loss.args["temperature"])]
    return own


def multicrop_overrides(recipe, local_views: int, scale: list[float]) -> list[str]:
    """``--augmentation null --views [...]``: ``recipe``'s augmentation as 2 global views, then
    ``local_views`` views of it with the crop at half the size and at ``scale``."""
    steps = [{"name": a.name, "args": dict(a.args)} for a in recipe.augmentation]
    local = [dict(step, args=dict(step["args"])) for step in steps]
    for step in local:
        if step["name"] == "random_resized_crop":
            size = step["args"]["size"]
            step["args"].update(size=size // 2 if isinstance(size, int) else [s // 2 for s in size], scale=list(scale))
    views = [{"count": 2, "augmentation": steps}, {"count": local_views, "augmentation": local}]
    return ["--augmentation", "null", "--views", json.dumps(views)]


def eval_data(recipe, registries, subset):
    """The evaluation data of the recipe, optionally cut to the first ``subset`` images of each split."""
    from contrastive.evaluation import EvalData

    data = EvalData.from_recipe(recipe, registries)
    if subset:
        from contrastive.components.datasets import TensorImageDataset

        for split in ("train", "test"):
            full = getattr(data, split)
            setattr(data, split, TensorImageDataset(full.images[:subset], full.labels[:subset], full.classes))
    return data


def scores(ev: dict) -> dict:
    return {"knn_top1": ev["knn_top1"], "linear_top1": ev["linear_top1"],
            "knn_top5": ev.get("knn_top5"), "linear_top5": ev.get("linear_top5")}


# -- ours -----------------------------------------------------------------------------------------
def run_ours(args, method: str, overrides, out: Path, baselines: bool) -> dict:
    """``contrastive fit`` of ``method`` into ``OUT/contrastive/METHOD``; the baselines only when asked."""
    run_dir = out / "contrastive" / method
    command = [sys.executable, "-m", "contrastive", "fit", "--recipe", args.recipe, *overrides,
               "--trainer.output_dir", str(run_dir), "--trainer.overwrite", "true",
               "--trainer.progress", "false"]
    if not baselines:
        command += ["--eval.baselines", "[]"]
    if args.eval_subset:
        command += ["--eval.protocols", "[]"]  # scored below on the subset instead
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    results = json.loads((run_dir / "results.json").read_text())
    return {"results": results, "wall_time_s": wall, "command": shlex.join(command), "run_dir": run_dir}


# -- lightly ------------------------------------------------------------------------------------
def _jitter_args(aug: dict) -> dict:
    """lightly's colour-jitter, flip, grayscale and normalisation arguments from one of our pipelines."""
    jitter = aug.get("color_jitter", {})
    return dict(
        cj_prob=jitter.get("p", 0.0), cj_strength=1.0,
        cj_bright=jitter.get("brightness", 0.0), cj_contrast=jitter.get("contrast", 0.0),
        cj_sat=jitter.get("saturation", 0.0), cj_hue=jitter.get("hue", 0.0),
        random_gray_scale=aug.get("grayscale", {}).get("p", 0.0) if "grayscale" in aug else 0.0,
        hf_prob=aug.get("horizontal_flip", {}).get("p", 0.5) if "horizontal_flip" in aug else 0.0,
        normalize=None if "normalize" not in aug else {"mean": list(aug["normalize"]["mean"]), "std": list(aug["normalize"]["std"])},
    )


def _side(crop: dict) -> int:
    size = crop.get("size", 28)
    return size if isinstance(size, int) else size[0]


def dino_transform(recipe):
    """lightly's ``DINOTransform`` with the recipe's view groups: the global crops (the first
    ``global_views`` views, one pipeline) and the local crops (the next group), their sizes, crop
    scales, flip, colour jitter, blur and solarisation probabilities."""
    from lightly.transforms import DINOTransform

    groups = recipe.views
    global_views = recipe.method.args.get("global_views", 2)
    if groups is None or len(groups) != 2 or groups[0].count != global_views:
        raise SystemExit("the lightly dino reference takes two view groups: the global crops, then the local ones")
    first, local = ({a.name: a.args for a in g.augmentation} for g in groups)
    blur = [g.get("gaussian_blur", {}).get("p", 0.0) for g in (first, first, local)]
    return DINOTransform(
        global_crop_size=_side(first["random_resized_crop"]),
        global_crop_scale=tuple(first["random_resized_crop"].get("scale", (0.08, 1.0))),
        local_crop_size=_side(local["random_resized_crop"]),
        local_crop_scale=tuple(local["random_resized_crop"].get("scale", (0.08, 1.0))),
        n_local_views=groups[1].count, gaussian_blur=tuple(blur),
        sigmas=tuple(first.get("gaussian_blur", {}).get("sigma", (0.1, 2.0))),
        solarization_prob=first.get("solarize", {}).get("p", 0.0), **_jitter_args(first),
    )


def swav_transform(recipe, strengths: dict):
    """lightly's ``SwaVTransform`` for the recipe's ``views:`` groups: each group's count, crop size
    and scale, with the first group's strengths (lightly's multi-crop applies the same ones to every crop)."""
    from lightly.transforms import SwaVTransform

    def crop_of(group):
        crop = next((a.args for a in group if a.name == "random_resized_crop"), {})
        return _side(crop), crop.get("scale", [0.08, 1.0])

    crops = [crop_of(group.augmentation) for group in recipe.views]
    return SwaVTransform(crop_sizes=tuple(size for size, _ in crops), crop_counts=tuple(g.count for g in recipe.views),
                         crop_min_scales=tuple(scale[0] for _, scale in crops),
                         crop_max_scales=tuple(scale[1] for _, scale in crops), **strengths)


def lightly_setup(recipe, registries, args, method: str = "simclr") -> dict:
    """What every lightly reference shares: the seed, lightly's transform with the recipe's
    augmentation strengths (PIL, in DataLoader workers: ``SimCLRTransform``'s two views, or
    ``DINOTransform``'s multi-crop for dino, ``SwaVTransform``'s for other ``views:`` groups), the loader and the backbone module our run builds."""
    import torch
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    torch.manual_seed(recipe.seed)
    aug = {a.name: a.args for a in recipe.global_augmentation}
    crop = aug.get("random_resized_crop", {})
    blur = aug.get("gaussian_blur")
    strengths = dict(gaussian_blur=blur.get("p", 0.5) if blur else 0.0,
                     sigmas=tuple(blur.get("sigma", (0.1, 2.0))) if blur else (0.1, 2.0), **_jitter_args(aug))
    if method == "dino":
        transform = dino_transform(recipe)
    elif recipe.views is not None:
        transform = swav_transform(recipe, strengths)
    else:
        transform = SimCLRTransform(input_size=_side(crop), min_scale=crop.get("scale", [0.08, 1.0])[0], **strengths)
    train = registries.datasets.build(recipe.data.name, **recipe.data.args)
    images = train.images

    class PILData(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i, 0].numpy(), mode="L").convert("RGB"))

    cores = os.cpu_count() or 1
    workers = args.lightly_workers if args.lightly_workers is not None else (1 if cores <= 2 else min(8, cores - 1))
    loader = torch.utils.data.DataLoader(PILData(), batch_size=recipe.trainer.batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args)
    return {"loader": loader, "backbone": backbone, "workers": workers}


def lightly_train(recipe, setup: dict, model, step, name: str, after_backward=None) -> dict:
    """The plain loop of lightly's examples: LARS (AdamW for a recipe whose optimizer is adamw;
    weight decay off for biases and norms, as ours) and ``CosineWarmupScheduler`` per step, with
    the recipe's lr, scaling, weight decay, warm-up and gradient clipping, over the parameters of
    ``model`` that require grad; ``step(*views)`` is one step's loss, ``after_backward()`` (if
    given) runs between backward and the clipping and optimiser step."""
    import torch
    from lightly.utils.lars import LARS
    from lightly.utils.scheduler import CosineWarmupScheduler

    from contrastive.components.optim import scaled_lr

    loader, batch = setup["loader"], recipe.trainer.batch_size
    opt_args = recipe.optimizer.args
    lr = scaled_lr(opt_args.get("lr", 0.3), batch, opt_args.get("lr_scaling", "linear"))
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.ndim > 1]
    no_decay = [p for p in trained if p.ndim <= 1]
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=opt_args.get("weight_decay", 0.05))
    else:
        optimizer = LARS(groups, lr=lr, momentum=0.9, weight_decay=opt_args.get("weight_decay", 1e-6))
    epochs, max_steps = recipe.trainer.max_epochs, recipe.trainer.max_steps
    steps = len(loader)
    warmup = round(recipe.scheduler.args.get("warmup_epochs", 0) * steps)
    total = epochs * steps if max_steps is None else min(epochs * steps, max_steps)
    scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=min(warmup, total), max_epochs=total, end_value=0.0)
    model.train()
    losses, views_seen = [], 0
    started = time.perf_counter()
    for epoch in range(epochs):
        for views in loader:
            loss = step(*views)
            loss.backward()
            if after_backward is not None:
                after_backward()
            if recipe.trainer.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trained, recipe.trainer.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            losses.append(loss.item())
            views_seen += sum(len(v) for v in views)
            if max_steps is not None and len(losses) >= max_steps:
                break
        window = losses[-steps:]
        print(f"lightly {name}: epoch {epoch} loss {sum(window) / len(window):.4f}", flush=True)
        if max_steps is not None and len(losses) >= max_steps:
            break
    train_time = time.perf_counter() - started
    return {"loss": losses[-1], "train_time_s": train_time, "views_per_second": views_seen / train_time}


def lightly_simclr(backbone, recipe, total_steps: int | None = None):
    """``examples/pytorch/simclr.py``: ``SimCLRProjectionHead`` and ``NTXentLoss`` of the two views."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    head_args = recipe.head.args
    head = SimCLRProjectionHead(input_dim=backbone.num_features, hidden_dim=head_args.get("hidden_dim", 2048),
                                output_dim=head_args.get("out_dim", 128), num_layers=head_args.get("num_layers", 2))
    model = torch.nn.Sequential(backbone, head)
    criterion = NTXentLoss(temperature=recipe.loss.args.get("temperature", 0.5))
    return model, lambda x0, x1: criterion(model(x0), model(x1))


def lightly_moco(backbone, recipe, total_steps: int | None = None):
    """``examples/pytorch/moco.py`` (MoCo v2): ``MoCoProjectionHead``; a deep-copied momentum
    backbone and head (``deactivate_requires_grad``), moved by ``update_momentum`` at the start of
    every step with our m; queries of view 0, keys of view 1 from the momentum encoder;
    ``NTXentLoss`` with a memory bank of our queue size as the negatives."""
    import copy

    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import MoCoProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    args, head_args = recipe.method.args, recipe.head.args
    out_dim = head_args.get("out_dim", 128)
    head = MoCoProjectionHead(backbone.num_features, head_args.get("hidden_dim", 2048), out_dim)
    backbone_momentum, head_momentum = copy.deepcopy(backbone), copy.deepcopy(head)
    deactivate_requires_grad(backbone_momentum)
    deactivate_requires_grad(head_momentum)
    m = args.get("momentum", 0.999)
    criterion = NTXentLoss(temperature=args.get("temperature", 0.2),
                           memory_bank_size=(args.get("queue_size", 65536), out_dim))

    def step(x_query, x_key):
        update_momentum(backbone, backbone_momentum, m=m)
        update_momentum(head, head_momentum, m=m)
        query = head(backbone(x_query))
        key = head_momentum(backbone_momentum(x_key)).detach()
        return criterion(query, key)

    return torch.nn.ModuleList([backbone, head, backbone_momentum, head_momentum]), step


def lightly_nnclr(backbone, recipe, total_steps: int | None = None):
    """``examples/pytorch/nnclr.py``: ``NNCLRProjectionHead``, ``NNCLRPredictionHead``, an
    ``NNMemoryBankModule`` of our support-set size (pushed with view 1's projections), and the
    symmetric ``NTXentLoss`` of (NN(z0), p1) and (NN(z1), p0)."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead, NNMemoryBankModule

    args, head_args = recipe.method.args, recipe.head.args
    pred_args = recipe.predictor.args if recipe.predictor is not None else {}
    out_dim = head_args.get("out_dim", 128)
    head = NNCLRProjectionHead(backbone.num_features, head_args.get("hidden_dim", 2048), out_dim)
    predictor = NNCLRPredictionHead(out_dim, pred_args.get("hidden_dim", 4096), pred_args.get("out_dim", out_dim))
    memory_bank = NNMemoryBankModule(size=(args.get("queue_size", 98304), out_dim))
    criterion = NTXentLoss(temperature=args.get("temperature", 0.1))

    def forward(x):
        z = head(backbone(x))
        return z.detach(), predictor(z)

    def step(x0, x1):
        (z0, p0), (z1, p1) = forward(x0), forward(x1)
        z0 = memory_bank(z0, update=False)
        z1 = memory_bank(z1, update=True)
        return 0.5 * (criterion(z0, p1) + criterion(z1, p0))

    return torch.nn.ModuleList([backbone, head, predictor, memory_bank]), step


def _lightly_heads(backbone, recipe, projection, prediction=None):
    """lightly's projection head (and prediction head) at the recipe's sizes."""
    head_args = recipe.head.args
    out_dim = head_args.get("out_dim", 128)
    head = projection(backbone.num_features, head_args.get("hidden_dim", 2048), out_dim)
    if prediction is None:
        return head
    pred_args = recipe.predictor.args if recipe.predictor is not None else {}
    return head, prediction(out_dim, pred_args.get("hidden_dim", 512), pred_args.get("out_dim", out_dim))


def lightly_byol(backbone, recipe, total_steps: int | None = None):
    """``examples/pytorch/byol.py``: ``BYOLProjectionHead``, ``BYOLPredictionHead``, deep-copied
    momentum backbone and head moved by ``update_momentum`` at the start of every step with
    ``cosine_schedule`` from our base momentum to 1 (per step, as ours), and the symmetric
    ``NegativeCosineSimilarity`` of the predictions and the other view's momentum projections."""
    import copy

    import torch
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    head, predictor = _lightly_heads(backbone, recipe, BYOLProjectionHead, BYOLPredictionHead)
    backbone_momentum, head_momentum = copy.deepcopy(backbone), copy.deepcopy(head)
    deactivate_requires_grad(backbone_momentum)
    deactivate_requires_grad(head_momentum)
    base = recipe.method.args.get("momentum", 0.996)
    criterion = NegativeCosineSimilarity()
    done = [0]

    def step(x0, x1):
        m = cosine_schedule(done[0], max(1, total_steps or 1), base, 1.0)
        done[0] += 1
        update_momentum(backbone, backbone_momentum, m=m)
        update_momentum(head, head_momentum, m=m)
        p0, p1 = predictor(head(backbone(x0))), predictor(head(backbone(x1)))
        with torch.no_grad():
            t0, t1 = head_momentum(backbone_momentum(x0)), head_momentum(backbone_momentum(x1))
        return 0.5 * (criterion(p0, t1) + criterion(p1, t0))

    return torch.nn.ModuleList([backbone, head, predictor, backbone_momentum, head_momentum]), step


def lightly_simsiam(backbone, recipe, total_steps: int | None = None):
    """``examples/pytorch/simsiam.py``: ``SimSiamProjectionHead``, ``SimSiamPredictionHead`` and
    ``NegativeCosineSimilarity`` against the other view's detached projection."""
    import torch
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

    head, predictor = _lightly_heads(backbone, recipe, SimSiamProjectionHead, SimSiamPredictionHead)
    criterion = NegativeCosineSimilarity()

    def step(x0, x1):
        z0, z1 = head(backbone(x0)), head(backbone(x1))
        p0, p1 = predictor(z0), predictor(z1)
        return 0.5 * (criterion(p0, z1.detach()) + criterion(p1, z0.detach()))

    return torch.nn.ModuleList([backbone, head, predictor]), step


def lightly_barlow_twins(backbone, recipe, total_steps: int | None = None):
    """``examples/pytorch/barlowtwins.py``: ``BarlowTwinsProjectionHead`` and ``BarlowTwinsLoss``
    with our lambda."""
    import torch
    from lightly.loss import BarlowTwinsLoss
    from lightly.models.modules import BarlowTwinsProjectionHead

    head = _lightly_heads(backbone, recipe, BarlowTwinsProjectionHead)
    criterion = BarlowTwinsLoss(lambda_param=recipe.method.args.get("lambda_offdiag", 5e-3))
    model = torch.nn.Sequential(backbone, head)
    return model, lambda x0, x1: criterion(model(x0), model(x1))


def lightly_vicreg(backbone, recipe, total_steps: int | None = None):
    """``examples/pytorch/vicreg.py``: ``VICRegProjectionHead`` (2 layers, as our head) and
    ``VICRegLoss`` with our weights."""
    import torch
    from lightly.loss import VICRegLoss
    from lightly.models.modules.heads import VICRegProjectionHead

    args, head_args = recipe.method.args, recipe.head.args
    head = VICRegProjectionHead(backbone.num_features, head_args.get("hidden_dim", 2048), head_args.get("out_dim", 128),
                                num_layers=head_args.get("num_layers", 2))
    criterion = VICRegLoss(lambda_param=args.get("invariance", 25.0), mu_param=args.get("variance", 25.0),
                           nu_param=args.get("covariance", 1.0))
    model = torch.nn.Sequential(backbone, head)
    return model, lambda x0, x1: criterion(model(x0), model(x1))


def lightly_swav(backbone, recipe, total_steps: int | None = None, steps_per_epoch: int | None = None):
    """``examples/pytorch/swav.py``: ``SwaVProjectionHead``, ``SwaVPrototypes`` (normalised before
    every step; frozen for our ``freeze_prototypes_epochs`` through its ``n_steps_frozen_prototypes``)
    and ``SwaVLoss`` of the 2 high- and the low-resolution crops, with our K, τ, ε and iterations.
    No queue (the preset has none; lightly's ``swav_queue.py`` keeps one per process)."""
    import torch
    from lightly.loss import SwaVLoss
    from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

    args = recipe.method.args
    if args.get("queue_size", 0):
        raise SystemExit("benchmarks/fmnist.py: the lightly SwAV reference has no queue; set --method.args.queue_size 0")
    head = _lightly_heads(backbone, recipe, SwaVProjectionHead)
    frozen = round(args.get("freeze_prototypes_epochs", 1.0) * (steps_per_epoch or 0))
    prototypes = SwaVPrototypes(recipe.head.args.get("out_dim", 128), n_prototypes=args.get("prototypes", 3000),
                                n_steps_frozen_prototypes=frozen)
    criterion = SwaVLoss(temperature=args.get("temperature", 0.1), sinkhorn_iterations=args.get("sinkhorn_iterations", 3),
                         sinkhorn_epsilon=args.get("epsilon", 0.05))
    done = [0]

    def step(*views):
        prototypes.normalize()
        scores = [prototypes(torch.nn.functional.normalize(head(backbone(x)), dim=1), step=done[0]) for x in views]
        done[0] += 1
        return criterion(scores[:2], scores[2:])

    return torch.nn.ModuleList([backbone, head, prototypes]), step


def lightly_dino(backbone, recipe, total_steps: int | None = None, steps_per_epoch: int = 1):
    """``examples/pytorch/dino.py``: ``DINOProjectionHead`` at our head's sizes, a teacher backbone
    (deep-copied) and head (a second ``DINOProjectionHead`` loaded with the student's weights: the
    official code starts the teacher as the student), ``deactivate_requires_grad``, moved by ``update_momentum`` at the start of every
    step with ``cosine_schedule`` from our base momentum to 1 (per step); the teacher embeds the 2
    global views, the student every view; ``DINOLoss`` with our student temperature and centre
    momentum, the teacher temperature of our schedule passed per step; the head's
    ``cancel_last_layer_gradients`` after backward while our freeze lasts (its ``freeze_last_layer``
    counted in steps: our epochs times ``steps_per_epoch``).  Returns ``(model, step,
    after_backward)``."""
    import copy

    import torch
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    args, head_args = recipe.method.args, recipe.head.args
    total = max(1, total_steps or 1)
    freeze = round(args.get("freeze_last_layer_epochs", 1) * steps_per_epoch)
    warmup = round(args.get("warmup_teacher_temperature_epochs", 30) * steps_per_epoch)
    start, end = args.get("warmup_teacher_temperature", 0.04), args.get("teacher_temperature", 0.07)
    def dino_head():
        return DINOProjectionHead(backbone.num_features, head_args.get("hidden_dim", 2048),
                                  head_args.get("bottleneck_dim", 256), head_args.get("out_dim", 65536),
                                  batch_norm=head_args.get("batch_norm", False), freeze_last_layer=freeze,
                                  norm_last_layer=head_args.get("norm_last_layer", True))

    head, head_teacher = dino_head(), dino_head()
    head_teacher.load_state_dict(head.state_dict())  # its weight_norm cannot be deep-copied
    backbone_teacher = copy.deepcopy(backbone)
    deactivate_requires_grad(backbone_teacher)
    deactivate_requires_grad(head_teacher)
    criterion = DINOLoss(output_dim=head_args.get("out_dim", 65536), student_temp=args.get("student_temperature", 0.1),
                         center_momentum=args.get("center_momentum", 0.9))
    base, done = args.get("momentum", 0.996), [0]
    global_views = args.get("global_views", 2)

    def step(*views):
        m = cosine_schedule(done[0], total, base, args.get("final_momentum", 1.0))
        tau = end if done[0] >= warmup else start + (end - start) * done[0] / warmup
        done[0] += 1
        update_momentum(backbone, backbone_teacher, m=m)
        update_momentum(head, head_teacher, m=m)
        with torch.no_grad():
            teacher_out = [head_teacher(backbone_teacher(v)) for v in views[:global_views]]
        student_out = [head(backbone(v)) for v in views]
        return criterion(teacher_out, student_out, teacher_temp=tau)

    def after_backward():
        head.cancel_last_layer_gradients(current_epoch=done[0] - 1)  # steps, not epochs: see the docstring

    model = torch.nn.ModuleList([backbone, head, backbone_teacher, head_teacher, criterion])
    return model, step, after_backward


LIGHTLY = {"simclr": lightly_simclr, "moco": lightly_moco, "nnclr": lightly_nnclr, "byol": lightly_byol,
           "simsiam": lightly_simsiam, "barlow_twins": lightly_barlow_twins, "vicreg": lightly_vicreg,
           "swav": lightly_swav, "dino": lightly_dino}


def run_lightly(method: str, recipe, registries, args) -> dict:
    """``method`` as lightly's examples write it, with the recipe's settings and the same backbone."""
    started = time.perf_counter()
    setup = lightly_setup(recipe, registries, args, method)
    epochs, max_steps = recipe.trainer.max_epochs, recipe.trainer.max_steps
    total = epochs * len(setup["loader"]) if max_steps is None else min(epochs * len(setup["loader"]), max_steps)
    factory = LIGHTLY[method]
    per_epoch = {"steps_per_epoch": len(setup["loader"])} if "steps_per_epoch" in inspect.signature(factory).parameters else {}
    model, step, *after_backward = factory(setup["backbone"], recipe, total_steps=total, **per_epoch)
    setup_time = time.perf_counter() - started
    result = lightly_train(recipe, setup, model, step, method, *after_backward)
    return {"backbone": setup["backbone"], "setup_time_s": setup_time, "workers": setup["workers"], **result}


# -- report ----------------------------------------------------------------------------------------
def table(rows: dict) -> str:
    lines = [f"{'':18s}{'kNN top-1':>11s}{'linear top-1':>14s}{'train s':>10s}{'total s':>10s}{'views/s':>10s}"]

    def fmt(row, key, width, spec):
        value = row.get(key)
        return f"{value:{width}{spec}}" if isinstance(value, (int, float)) else f"{'-':>{width}s}"

    for name, row in rows.items():
        lines.append(f"{name:18s}{fmt(row, 'knn_top1', 11, '.4f')}{fmt(row, 'linear_top1', 14, '.4f')}"
                     f"{fmt(row, 'train_time_s', 10, '.0f')}{fmt(row, 'total_time_s', 10, '.0f')}"
                     f"{fmt(row, 'views_per_second', 10, '.0f')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import torch

    import contrastive
    from contrastive import recipe as recipes
    from contrastive.evaluation import evaluate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    registries = contrastive.load_registries()
    recipe, _ = build_recipe(args, registries)
    methods = {m: build_recipe(args, registries, m) for m in args.method}  # every recipe checked before training
    report = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], "benchmarks/fmnist.py", *argv]),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "processor": platform.processor(), "cuda": torch.cuda.is_available()},
        "settings": {"backbone": recipe.backbone.name, "backbone_args": recipe.backbone.args,
                     "epochs": recipe.trainer.max_epochs, "batch_size": recipe.trainer.batch_size,
                     "image_size": next((a.args.get("size") for a in recipe.global_augmentation if a.name == "random_resized_crop"), None),
                     "temperature": recipe.loss.args.get("temperature"), "optimizer": recipe.to_dict()["optimizer"],
                     "scheduler": recipe.to_dict()["scheduler"], "max_steps": args.max_steps,
                     "eval_subset": args.eval_subset, "methods": list(args.method)},
        "methods": {m: {**{part: r.to_dict().get(part) for part in ("method", "head", "predictor")},
                        "loss": r.to_dict().get("loss") if "loss" in recipes.method_parts(registries.methods.get(m)) else None,
                        "overrides": overrides, "lightly": m in LIGHTLY_METHODS and not args.skip_lightly}
                    for m, (r, overrides) in methods.items()},
        "rows": {},
    }
    rows, baselines = report["rows"], {}
    data = eval_data(recipe, registries, args.eval_subset)
    for method, (method_recipe, overrides) in methods.items():
        if not args.skip_ours:
            first = not baselines  # the baselines do not depend on the method: scored with the first run only
            ours = run_ours(args, method, overrides, out, baselines=first)
            res = ours["results"]
            ev = res.get("eval")
            if ev is None:  # evaluation skipped in the run (subset): score the saved backbone here
                from contrastive.evaluation import load_run

                _, backbone = load_run(ours["run_dir"], registries, list(args.overrides))
                ev = evaluate(backbone, recipe, registries, baselines=None if first else [], data=data, device="cpu")
            rows[f"ours {method}"] = {**scores(ev), "train_time_s": res["wall_time_s"],
                                      "total_time_s": ours["wall_time_s"], "eval_time_s": ev["wall_time_s"],
                                      "views_per_second": res["views_per_second"], "loss": res["loss"]}
            for name, values in ev.get("baselines", {}).items():
                baselines[name] = {k: v for k, v in values.items() if k.endswith(("top1", "top5"))}
            report["methods"][method]["command"] = ours["command"]
        if not args.skip_lightly and method in LIGHTLY_METHODS:
            started = time.perf_counter()
            ref = run_lightly(method, method_recipe, registries, args)
            eval_started = time.perf_counter()
            ev = evaluate(ref["backbone"], recipe, registries, baselines=[], data=data, device="cpu")
            rows[f"lightly {method}"] = {**scores(ev), "train_time_s": ref["train_time_s"],
                                         "total_time_s": time.perf_counter() - started,
                                         "eval_time_s": time.perf_counter() - eval_started,
                                         "views_per_second": ref["views_per_second"], "loss": ref["loss"],
                                         "workers": ref["workers"]}
        (out / "benchmark.json").write_text(json.dumps({**report, "rows": {**rows, **baselines}}, indent=2))  # so far
    rows.update(baselines)
    if not args.skip_lightly and any(m in LIGHTLY_METHODS for m in args.method):
        import lightly

        report["machine"]["lightly"] = lightly.__version__
    report["machine"]["contrastive"] = contrastive.__version__
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
