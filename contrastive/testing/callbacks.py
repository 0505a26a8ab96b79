"""The callback contract, checked: [`check_callback`][contrastive.testing.callbacks.check_callback].

A callback (``registries.callbacks``, docs/callbacks.md) runs in a real ``fit`` of a tiny recipe
(the bundled digits at 16 px, a small ResNet, a checkpoint every step, on the CPU).  The rules:

1. **runs** — a fit naming it (with the given args) ends without an error;
2. **resume is exact** — that run resumed from its second-newest checkpoint ends with the same
   weights (bit for bit), the same callback state in the last checkpoint (``state_dict``), the
   same ``metrics.jsonl`` records (timings aside) and the same stopping step.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: Record keys that measure time, not training: left out of the comparison.
TIMINGS = ("views_per_second",)


def tiny_recipe(output_dir: str | Path, max_steps: int = 4) -> dict[str, Any]:
    """A recipe that trains in seconds on the CPU, with a checkpoint every step and no evaluation."""
    return {
        "seed": 0,
        "data": {"name": "digits", "args": {"image_size": 16}},
        "augmentation": [
            {"name": "random_resized_crop", "args": {"size": 16, "scale": [0.5, 1.0]}},
            {"name": "horizontal_flip", "args": {"p": 0.5}},
        ],
        "backbone": {"name": "test_resnet", "args": {"cifar_stem": True}},
        "head": {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16, "num_layers": 2}},
        "loss": {"name": "ntxent", "args": {"temperature": 0.5}},
        "optimizer": {"name": "sgd", "args": {"lr": 0.05, "lr_scaling": "none", "momentum": 0.9}},
        "scheduler": {"name": "constant", "args": {}},
        "trainer": {"max_epochs": 1, "max_steps": max_steps, "batch_size": 16, "num_workers": 0, "cpu": True,
                    "output_dir": str(output_dir), "progress": False, "log_every": 1, "checkpoint_every_steps": 1,
                    "keep_last": max_steps, "log_with": []},
        "eval": {"protocols": [], "baselines": []},
        "report": False,
    }


def _fail(name: str, rule: str, detail: str) -> None:
    raise AssertionError(f"callback '{name}' breaks the callback contract ({rule}): {detail}")


def _fit(raw: dict[str, Any], registries: Registries) -> dict[str, Any]:
    from contrastive import recipe as recipes
    from contrastive.training import fit

    return fit(recipes.validate(raw, registries), registries)


def _records(out: Path) -> list[dict[str, Any]]:
    lines = RunDir(out).metrics.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in lines]


def _same_bits(a: Path, b: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file

    left, right = load_file(str(a)), load_file(str(b))
    if left.keys() != right.keys():
        return sorted(set(left) ^ set(right))
    return [k for k in left if not torch.equal(left[k].reshape(-1).view(torch.uint8), right[k].reshape(-1).view(torch.uint8))]


def check_callback(name: str, *, registries: Registries | None=None, max_steps: int = 4, **args: Any) -> None:
    """Check the callback registered as ``name``, built with ``args``, against the rules of this
    module (``max_steps``: the length of the tiny run, at least 2)."""
    import contrastive
    from contrastive.errors import ContrastiveError
    from contrastive.storage import checkpoint

    registries = registries if registries is not None else contrastive.load_registries()
    with tempfile.TemporaryDirectory() as folder:
        out, copy = Path(folder) / "run", Path(folder) / "resumed"
        raw = tiny_recipe(out, max_steps)
        raw["callbacks"] = [{"name": name, "args": args}]
        try:
            steps = _fit(raw, registries)["steps"]
        except ContrastiveError as exc:
            _fail(name, "runs", str(exc))
        saved = checkpoint.complete(RunDir(out).checkpoints)
        if len(saved) < 2:
            _fail(name, "resume is exact", f"the run stopped after {steps} step(s): give args under which it runs 2 or more")
        shutil.copytree(out, copy)
        shutil.rmtree(RunDir(copy).checkpoints / saved[-1].name)
        RunDir(copy).backbone.unlink()
        _fit({**raw, "trainer": {**raw["trainer"], "output_dir": str(copy), "resume": True}}, registries)
        last = saved[-1].name
        if not (RunDir(copy).checkpoints / last).is_dir():
            _fail(name, "resume is exact", f"the resumed run did not end at the uninterrupted run's step ({last})")
        differ = _same_bits(RunDir(out).checkpoints / last / "model.safetensors", RunDir(copy).checkpoints / last / "model.safetensors")
        if differ:
            _fail(name, "resume is exact", f"the resumed run's weights differ ({', '.join(differ[:3])})")
        states = [json.loads((RunDir(run).checkpoints / last / "state.json").read_text())["callbacks"] for run in (out, copy)]
        if states[0] != states[1]:
            _fail(name, "resume is exact", f"state_dict after the resumed run {states[1]} differs from the uninterrupted "
                  f"run's {states[0]}: keep everything that decides what the callback does in state_dict")
        if _records(out) != _records(copy):
            _fail(name, "resume is exact", "metrics.jsonl of the resumed run differs from the uninterrupted run's")
