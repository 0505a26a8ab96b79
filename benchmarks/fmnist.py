"""Fashion-MNIST quality benchmark: ``contrastive fit`` vs a reference SimCLR written with lightly.

One run on one machine, at the same backbone, batch size, epochs, image size, temperature,
optimiser settings and augmentation strengths:

1. **contrastive** — ``contrastive fit --recipe recipes/simclr_fmnist.yaml`` (a subprocess, as a
   user runs it); its ``results.json`` also holds the raw-pixel and random-init baselines.
2. **lightly** — lightly's ``SimCLRTransform`` (PIL, in DataLoader workers), ``SimCLRProjectionHead``,
   ``NTXentLoss``, ``LARS`` and ``CosineWarmupScheduler`` around the *same* backbone module, the
   plain PyTorch loop of lightly's examples.
3. Every backbone is scored by the same frozen-feature protocols (:mod:`contrastive.evaluation`:
   weighted kNN k=200 T=0.1, L-BFGS linear probe) on the 10k test images, fitted on the 60k
   training images.

Prints a JSON document and a table (kNN / linear top-1, wall time), and writes the JSON to
``OUT/benchmark.json``.  Needs ``pip install lightly`` (``pip install -e .[bench]``).

    python benchmarks/fmnist.py --data /usr/share/datasets/fashion-mnist            # default budget
    python benchmarks/fmnist.py --data DIR --max-steps 5 --eval-subset 2000         # smoke test
    python benchmarks/fmnist.py --data DIR -- --loss.args.temperature 0.2          # recipe overrides
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "simclr_fmnist.yaml"
#: The default CPU budget (< 30 min on 2 idle cores for both methods and all evaluations): timm's
#: small test_resnet with the CIFAR stem, views of 16 px cropped from the 28 px images (as lightly's
#: SimCLRTransform does; evaluation resizes to 16 px), 3 epochs.  --preset recipe trains the recipe
#: as written (resnet18 at 28 px; a GPU run).
#: lr, lr_scaling, temperature and warm-up were set by the sweep in docs/benchmarks.md ("Tuning"),
#: which has the numbers; lightly's reference reads the same overrides.
CPU_PRESET = ["--backbone.name", "test_resnet", "--augmentation.0.args.size", "16",
              "--trainer.max_epochs", "3", "--scheduler.args.warmup_epochs", "0.2",
              "--optimizer.args.lr", "0.15", "--optimizer.args.lr_scaling", "sqrt", "--loss.args.temperature", "0.2"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of the four IDX files")
    parser.add_argument("--recipe", default=str(RECIPE), help="our recipe (default: recipes/simclr_fmnist.yaml)")
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
    parser.add_argument("--skip-lightly", action="store_true", help="only our run and the baselines")
    parser.add_argument("--skip-ours", action="store_true", help="only lightly (baselines need our run)")
    parser.add_argument("--lightly-workers", type=int, default=None,
                        help="DataLoader workers for lightly's CPU transforms (default: 1 on <= 2 cores, else cores - 1, at most 8)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides after --, e.g. -- --loss.args.temperature 0.2")
    return parser.parse_args(argv)


def build_recipe(args, registries):
    import torch

    from contrastive import recipe as recipes

    preset = args.preset or ("recipe" if torch.cuda.is_available() else "cpu")
    overrides = ["--data.args.root", args.data] + (CPU_PRESET if preset == "cpu" else [])
    if args.epochs is not None:
        overrides += ["--trainer.max_epochs", str(args.epochs)]
    if args.batch_size is not None:
        overrides += ["--trainer.batch_size", str(args.batch_size)]
    if args.max_steps is not None:
        overrides += ["--trainer.max_steps", str(args.max_steps)]
    overrides += list(args.overrides)
    return recipes.load(args.recipe, overrides, registries), overrides


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


# -- ours -----------------------------------------------------------------------------------------
def run_ours(args, overrides, out: Path) -> dict:
    command = [sys.executable, "-m", "contrastive", "fit", "--recipe", args.recipe, *overrides,
               "--trainer.output_dir", str(out / "contrastive"), "--trainer.overwrite", "true",
               "--trainer.progress", "false"]
    if args.eval_subset:
        command += ["--eval.protocols", "[]"]  # scored below on the subset instead
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    results = json.loads((out / "contrastive" / "results.json").read_text())
    return {"results": results, "wall_time_s": wall, "command": " ".join(command)}


# -- lightly ------------------------------------------------------------------------------------
def run_lightly(recipe, registries, args) -> dict:
    """SimCLR as lightly's examples write it, with the recipe's settings and the same backbone."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from lightly.utils.lars import LARS
    from lightly.utils.scheduler import CosineWarmupScheduler
    from PIL import Image

    from contrastive.components.optim import scaled_lr

    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    aug = {a.name: a.args for a in recipe.global_augmentation}
    crop, jitter = aug.get("random_resized_crop", {}), aug.get("color_jitter", {})
    blur = aug.get("gaussian_blur")
    size = crop.get("size", 28)
    transform = SimCLRTransform(
        input_size=size if isinstance(size, int) else size[0],
        min_scale=crop.get("scale", [0.08, 1.0])[0],
        cj_prob=jitter.get("p", 0.0), cj_strength=1.0,
        cj_bright=jitter.get("brightness", 0.0), cj_contrast=jitter.get("contrast", 0.0),
        cj_sat=jitter.get("saturation", 0.0), cj_hue=jitter.get("hue", 0.0),
        random_gray_scale=aug.get("grayscale", {}).get("p", 0.0) if "grayscale" in aug else 0.0,
        gaussian_blur=blur.get("p", 0.5) if blur else 0.0,
        sigmas=tuple(blur.get("sigma", (0.1, 2.0))) if blur else (0.1, 2.0),
        hf_prob=aug.get("horizontal_flip", {}).get("p", 0.5) if "horizontal_flip" in aug else 0.0,
        normalize=None if "normalize" not in aug else {"mean": list(aug["normalize"]["mean"]), "std": list(aug["normalize"]["std"])},
    )
    train = registries.datasets.build(recipe.data.name, **recipe.data.args)
    images = train.images

    class PILData(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i, 0].numpy(), mode="L").convert("RGB"))

    batch = recipe.trainer.batch_size
    cores = os.cpu_count() or 1
    workers = args.lightly_workers if args.lightly_workers is not None else (1 if cores <= 2 else min(8, cores - 1))
    loader = torch.utils.data.DataLoader(PILData(), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args)
    head_args = recipe.head.args
    head = SimCLRProjectionHead(input_dim=backbone.num_features, hidden_dim=head_args.get("hidden_dim", 2048),
                                output_dim=head_args.get("out_dim", 128), num_layers=head_args.get("num_layers", 2))
    model = torch.nn.Sequential(backbone, head)
    criterion = NTXentLoss(temperature=recipe.loss.args.get("temperature", 0.5))
    opt_args = recipe.optimizer.args
    lr = scaled_lr(opt_args.get("lr", 0.3), batch, opt_args.get("lr_scaling", "linear"))
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = LARS([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=0.9,
                     weight_decay=opt_args.get("weight_decay", 1e-6))
    epochs = recipe.trainer.max_epochs
    steps = len(loader)
    warmup = round(recipe.scheduler.args.get("warmup_epochs", 0) * steps)
    total = epochs * steps if recipe.trainer.max_steps is None else min(epochs * steps, recipe.trainer.max_steps)
    scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=min(warmup, total), max_epochs=total, end_value=0.0)
    model.train()
    losses = []
    train_started = time.perf_counter()
    for epoch in range(epochs):
        for (x0, x1) in loader:
            z0, z1 = model(x0), model(x1)
            loss = criterion(z0, z1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            losses.append(loss.item())
            if recipe.trainer.max_steps is not None and len(losses) >= recipe.trainer.max_steps:
                break
        window = losses[-steps:]
        print(f"lightly: epoch {epoch} loss {sum(window) / len(window):.4f}", flush=True)
        if recipe.trainer.max_steps is not None and len(losses) >= recipe.trainer.max_steps:
            break
    train_time = time.perf_counter() - train_started
    views_per_second = 2 * batch * len(losses) / train_time
    return {"backbone": backbone, "loss": losses[-1], "train_time_s": train_time, "setup_time_s": train_started - started,
            "views_per_second": views_per_second, "workers": workers}


# -- report ----------------------------------------------------------------------------------------
def table(rows: dict) -> str:
    lines = [f"{'':16s}{'kNN top-1':>11s}{'linear top-1':>14s}{'train s':>10s}{'total s':>10s}"]

    def fmt(row, key, width, spec):
        value = row.get(key)
        return f"{value:{width}{spec}}" if isinstance(value, (int, float)) else f"{'-':>{width}s}"

    for name, row in rows.items():
        lines.append(f"{name:16s}{fmt(row, 'knn_top1', 11, '.4f')}{fmt(row, 'linear_top1', 14, '.4f')}"
                     f"{fmt(row, 'train_time_s', 10, '.0f')}{fmt(row, 'total_time_s', 10, '.0f')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import torch

    import contrastive
    from contrastive.evaluation import evaluate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    registries = contrastive.load_registries()
    recipe, overrides = build_recipe(args, registries)
    report = {
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], "benchmarks/fmnist.py", *argv]),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "processor": platform.processor(), "cuda": torch.cuda.is_available()},
        "settings": {"backbone": recipe.backbone.name, "backbone_args": recipe.backbone.args,
                     "epochs": recipe.trainer.max_epochs, "batch_size": recipe.trainer.batch_size,
                     "image_size": next((a.args.get("size") for a in recipe.global_augmentation if a.name == "random_resized_crop"), None),
                     "temperature": recipe.loss.args.get("temperature"), "max_steps": args.max_steps,
                     "eval_subset": args.eval_subset, "overrides": overrides},
        "rows": {},
    }
    rows = report["rows"]
    data = eval_data(recipe, registries, args.eval_subset)
    if not args.skip_ours:
        ours = run_ours(args, overrides, out)
        res = ours["results"]
        ev = res.get("eval")
        if ev is None:  # evaluation skipped in the run (subset): score the saved backbone here
            from contrastive.evaluation import load_run

            _, backbone = load_run(out / "contrastive", registries, list(args.overrides))
            ev = evaluate(backbone, recipe, registries, data=data, device="cpu")
        rows["contrastive"] = {"knn_top1": ev["knn_top1"], "linear_top1": ev["linear_top1"],
                               "knn_top5": ev.get("knn_top5"), "linear_top5": ev.get("linear_top5"),
                               "train_time_s": res["wall_time_s"], "total_time_s": ours["wall_time_s"],
                               "eval_time_s": ev["wall_time_s"], "views_per_second": res["views_per_second"],
                               "loss": res["loss"]}
        for name, scores in ev.get("baselines", {}).items():
            rows[name] = {k: v for k, v in scores.items() if k.endswith(("top1", "top5"))}
        report["contrastive_command"] = ours["command"]
    if not args.skip_lightly:
        started = time.perf_counter()
        ref = run_lightly(recipe, registries, args)
        eval_started = time.perf_counter()
        ev = evaluate(ref["backbone"], recipe, registries, baselines=[], data=data, device="cpu")
        rows["lightly"] = {"knn_top1": ev["knn_top1"], "linear_top1": ev["linear_top1"],
                           "knn_top5": ev.get("knn_top5"), "linear_top5": ev.get("linear_top5"),
                           "train_time_s": ref["train_time_s"], "total_time_s": time.perf_counter() - started,
                           "eval_time_s": time.perf_counter() - eval_started,
                           "views_per_second": ref["views_per_second"], "loss": ref["loss"], "workers": ref["workers"]}
        import lightly

        report["machine"]["lightly"] = lightly.__version__
    report["machine"]["contrastive"] = contrastive.__version__
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
