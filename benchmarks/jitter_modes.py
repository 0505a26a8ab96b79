"""What ``color_jitter``'s opt-in ``mode: twist`` costs in accuracy against the default ``sequential``.

``sequential`` (the default) draws torchvision's ``ColorJitter`` distribution, as the SimCLR paper
trained with; ``twist`` composes the four steps into one colour matrix per sample (a YIQ hue
rotation, one clamp at the end), several times cheaper on the CPU but a different distribution.
This trains the same SimCLR recipe once per mode, same seed, and scores each frozen backbone with
the same kNN and linear probe:

* ``tinted`` (default): a colour dataset generated from Fashion-MNIST (no colour dataset ships
  offline): every garment gets a random foreground and a random background colour, independent of
  its class, so colour is a shortcut that colour distortion must remove (the paper's reason for
  it).  Augmentation: SimCLR's ImageNet colour distortion, jitter (0.8, 0.8, 0.8, 0.2) with
  p = 0.8 and grayscale p = 0.2, after the crop and flip of ``simclr_fmnist_cpu``.
* ``fashion_mnist``: the shipped ``simclr_fmnist_cpu`` recipe as it is (grayscale: its jitter is
  brightness and contrast 0.4, where the two modes differ only where a step clips).

Everything else is ``recipes/simclr_fmnist_cpu.yaml`` (test_resnet, CIFAR stem, 16 px views, batch
256, LARS) for ``--epochs`` (default 1).  Prints a JSON report and a table; writes
``OUT/jitter_modes.json``.

    python benchmarks/jitter_modes.py                                  # tinted, both modes, 1 epoch
    python benchmarks/jitter_modes.py --datasets tinted,fashion_mnist  # both datasets
    python benchmarks/jitter_modes.py --datasets tinted,fashion_mnist --limit 512 --out /tmp/jm  # smoke test, scores mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RECIPE = "simclr_fmnist_cpu"
MODES = ("sequential", "twist")
DATASETS = ("tinted", "fashion_mnist")
#: SimCLR's colour distortion at ImageNet strength (recipes/simclr_r50.yaml), for the colour dataset.
COLOUR_AUGMENTATION = [
    {"name": "color_jitter", "args": {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2, "p": 0.8}},
    {"name": "grayscale", "args": {"p": 0.2}},
]


def dataset_class():
    """``BenchFashionMNIST``: Fashion-MNIST, tinted (``colour: true``) or as it is, optionally cut
    to its first ``limit`` images (smoke tests).

    Tinted: ``(3, 28, 28)`` uint8, pixel = background + (foreground - background) * intensity,
    the foreground an HSV colour of uniform hue, saturation U(0.6, 1), value U(0.7, 1), the
    background one of uniform hue, saturation U(0.3, 0.8), value U(0.05, 0.4).  The colours come
    from a generator seeded by ``seed`` and the split, so they are the same on every run, and are
    independent of the label."""
    import kornia

    from contrastive.components.datasets.arrays import FashionMNISTDataset, TensorImageDataset

    class BenchFashionMNIST(TensorImageDataset):
        def __init__(self, root: str = "/usr/share/datasets/fashion-mnist", train: bool = True, colour: bool = True,
                     seed: int = 0, limit: int | None = None) -> None:
            gray = FashionMNISTDataset(root, train=train)
            images, labels = gray.images[:limit], gray.labels[:limit]
            if colour:
                images = self.tint(images, torch.Generator().manual_seed(seed * 2 + int(train)))
            super().__init__(images, labels, gray.classes)

        @staticmethod
        def tint(gray: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
            n = len(gray)

            def colours(sat: tuple[float, float], val: tuple[float, float]) -> torch.Tensor:
                hsv = torch.stack([torch.rand(n, generator=rng) * 2 * torch.pi,
                                   torch.empty(n).uniform_(*sat, generator=rng),
                                   torch.empty(n).uniform_(*val, generator=rng)], 1)
                return kornia.color.hsv_to_rgb(hsv[:, :, None, None])  # (n, 3, 1, 1)

            foreground, background = colours((0.6, 1.0), (0.7, 1.0)), colours((0.3, 0.8), (0.05, 0.4))
            images = torch.empty(n, 3, *gray.shape[2:], dtype=torch.uint8)
            for start in range(0, n, 4096):  # chunks: a float copy of all 60k images would take 560 MB
                part = slice(start, start + 4096)
                rgb = background[part] + (foreground[part] - background[part]) * (gray[part].float() / 255)
                images[part] = (rgb * 255).round().clamp(0, 255).to(torch.uint8)
            return images

    return BenchFashionMNIST


def recipe_for(dataset: str, mode: str, args, registries, out_dir: Path, baselines: bool):
    """``simclr_fmnist_cpu`` with colour jitter ``mode``; for ``tinted``, the tinted data and the
    SimCLR colour distortion in place of its jitter."""
    from contrastive import recipe as recipes

    raw = recipes.read_recipe(RECIPE)
    colour = dataset == "tinted"
    raw["data"] = {"name": "bench_fashion_mnist",
                   "args": {"root": args.data, "train": True, "colour": colour, "seed": args.seed, "limit": args.limit}}
    if colour:
        raw["augmentation"] = [a for a in raw["augmentation"] if a["name"] != "color_jitter"]
        raw["augmentation"] += [{"name": a["name"], "args": dict(a["args"])} for a in COLOUR_AUGMENTATION]
    for step in raw["augmentation"]:
        if step["name"] == "color_jitter":
            step["args"]["mode"] = mode
    raw["seed"] = args.seed
    trainer = raw["trainer"]
    trainer.update({"max_epochs": args.epochs, "output_dir": str(out_dir), "overwrite": True, "progress": False})
    if args.max_steps:
        trainer["max_steps"] = args.max_steps
    raw.setdefault("eval", {})
    if not baselines:
        raw["eval"]["baselines"] = []
    return recipes.validate(raw, registries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="folder of the four IDX files")
    parser.add_argument("--datasets", default="tinted", help=f"comma list of {', '.join(DATASETS)}")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of color_jitter modes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="stop each run after this many steps (smoke test)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use the first N images of each split (smoke tests; scores mean little)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_jitter_modes")
    args = parser.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for name, given, allowed in (("--datasets", datasets, DATASETS), ("--modes", modes, MODES)):
        if not given or set(given) - set(allowed):
            parser.error(f"{name} takes a comma list of {', '.join(allowed)}, got {','.join(given) or 'nothing'}")

    import contrastive
    from contrastive.training import fit

    registries = contrastive.load_registries(autoload=False)
    registries.datasets.register("bench_fashion_mnist", dataset_class())
    out = Path(args.out)
    report = {"command": " ".join(["python", "benchmarks/jitter_modes.py", *(argv if argv is not None else sys.argv[1:])]),
              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "cuda": torch.cuda.is_available(), "load_average_at_start": os.getloadavg()},
              "recipe": RECIPE, "epochs": args.epochs, "max_steps": args.max_steps, "limit": args.limit, "seed": args.seed,
              "rows": {}}
    for dataset in datasets:
        for i, mode in enumerate(modes):
            recipe = recipe_for(dataset, mode, args, registries, out / dataset / mode, baselines=i == 0)
            started = time.perf_counter()
            results = fit(recipe, registries)
            ev = results.get("eval", {})
            report["rows"][f"{dataset} {mode}"] = {
                "knn_top1": ev.get("knn_top1"), "linear_top1": ev.get("linear_top1"),
                "train_time_s": results.get("wall_time_s"), "views_per_second": results.get("views_per_second"),
                "total_time_s": time.perf_counter() - started, "loss": results.get("loss"),
                "augmentation": recipe.to_dict()["augmentation"]}
            for name, values in ev.get("baselines", {}).items():
                report["rows"][f"{dataset} baseline {name}"] = {"knn_top1": values.get("knn_top1"),
                                                                "linear_top1": values.get("linear_top1")}
            out.mkdir(parents=True, exist_ok=True)
            (out / "jitter_modes.json").write_text(json.dumps(report, indent=2))  # so far
    report["machine"]["load_average_at_end"] = os.getloadavg()
    (out / "jitter_modes.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"{'row':<36} {'kNN top-1':>10} {'linear top-1':>13} {'views/s':>9}")
    for name, row in report["rows"].items():
        cells = [f"{row[k]:.4f}" if isinstance(row.get(k), float) else "" for k in ("knn_top1", "linear_top1")]
        speed = f"{row['views_per_second']:.0f}" if row.get("views_per_second") else ""
        print(f"{name:<36} {cells[0]:>10} {cells[1]:>13} {speed:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
