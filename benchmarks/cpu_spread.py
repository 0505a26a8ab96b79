"""How much a trained result moves with the CPU it runs on: the quickstart under other kernels,
thread counts and seeds.

PyTorch picks its vectorised kernels by ``ATEN_CPU_CAPABILITY`` (``default``, ``avx2``,
``avx512``; only those the processor has take effect), MKL its BLAS kernels by
``MKL_ENABLE_INSTRUCTIONS`` and oneDNN its convolutions by ``ONEDNN_MAX_CPU_ISA``;
``OMP_NUM_THREADS`` changes how sums are split. Each changes the order of floating-point sums,
so a run on another machine ends on other numbers than the same seed here. This script runs
``contrastive fit`` (the quickstart, or ``--recipe``) as a subprocess under every setting of
``--settings`` for every seed of ``--seeds``, prints one JSON row per run as it finishes
(learned and baseline kNN / linear top-1, learned minus each baseline), then one JSON summary
with the minimum and maximum of every column: the spread a test's threshold must clear.

    python benchmarks/cpu_spread.py --epochs 3 --seeds 0,1,2          # the quickstart test's run
    python benchmarks/cpu_spread.py --seeds 0                          # the full quickstart
    python benchmarks/cpu_spread.py --settings avx2-2,default-1 -- --data.args.seed 1

Settings (comma list, default all): ``avx2-2`` / ``avx2-1`` (this machine's kernels, 2 or 1
threads), ``default-2`` / ``default-1`` (ATen's portable kernels), ``old-1`` (portable ATen
kernels, MKL limited to SSE4.2 and oneDNN to SSE4.1: a processor without AVX).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "avx2-2": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "2"},
    "avx2-1": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"},
    "default-2": {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "2"},
    "default-1": {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
    "old-1": {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1",
              "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
PROTOCOLS = ("knn_top1", "linear_top1")


def run_once(recipe: str, epochs: int | None, seed: int, setting: str, extra: list[str], root: Path) -> dict:
    """One ``contrastive fit`` under ``SETTINGS[setting]``; returns the row of its results.json."""
    out = root / f"{setting}-seed{seed}"
    command = [sys.executable, "-m", "contrastive", "fit", "--recipe", recipe, "--seed", str(seed),
               "--trainer.output_dir", str(out), "--eval.monitor_every", "0", "--report", "false",
               "--trainer.log_with", "[]", "--trainer.progress", "false", *extra]
    if epochs is not None:
        command += ["--trainer.max_epochs", str(epochs)]
    env = {**os.environ, **SETTINGS[setting]}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    scores = json.loads((out / "results.json").read_text())["eval"]
    row = {"setting": setting, "seed": seed, **{k: v for k, v in SETTINGS[setting].items()}}
    for protocol in PROTOCOLS:
        row[f"learned_{protocol}"] = scores[protocol]
        for baseline, values in scores.get("baselines", {}).items():
            row[f"{baseline}_{protocol}"] = values[protocol]
            row[f"learned_minus_{baseline}_{protocol}"] = round(scores[protocol] - values[protocol], 6)
    return row


def summarise(rows: list[dict]) -> dict:
    """Minimum and maximum of every numeric column over ``rows``."""
    columns = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {c: {"min": min(r[c] for r in rows), "max": max(r[c] for r in rows)} for c in columns}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (default: the recipe's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("overrides", nargs="*", help="recipe overrides, after --")
    args = parser.parse_args(argv)
    unknown = [s for s in args.settings.split(",") if s not in SETTINGS]
    if unknown:
        parser.exit(2, f"error: unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}\n")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for seed in (int(s) for s in args.seeds.split(",")):
            for setting in args.settings.split(","):
                rows.append(run_once(args.recipe, args.epochs, seed, setting, args.overrides, Path(root)))
                print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"summary": summarise(rows), "runs": len(rows), "recipe": args.recipe,
                      "epochs": args.epochs, "overrides": args.overrides}))


if __name__ == "__main__":
    main()
