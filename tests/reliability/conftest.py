"""Fault injection: helpers to run ``contrastive fit`` as a real subprocess and kill it.

The recipe is tiny on purpose (timm's ``test_resnet`` with the CIFAR stem, 90 digits at 16 px,
batch 16: 5 steps per epoch), so each subprocess costs mostly torch's import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from contrastive.storage import checkpoint

STEPS_PER_EPOCH = 5


def kill_recipe(output_dir: Path, **trainer) -> dict:
    return {
        "seed": 0,
        "data": {"name": "digits", "args": {"train": False, "test_fraction": 0.05, "image_size": 16}},
        "augmentation": [
            {"name": "random_resized_crop", "args": {"size": 16, "scale": [0.5, 1.0]}},
            {"name": "horizontal_flip", "args": {"p": 0.5}},
            {"name": "color_jitter", "args": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0, "p": 0.8}},
        ],
        "backbone": {"name": "test_resnet", "args": {"cifar_stem": True}},
        "head": {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16, "num_layers": 2}},
        "loss": {"name": "ntxent", "args": {"temperature": 0.5}},
        "optimizer": {"name": "sgd", "args": {"lr": 0.05, "lr_scaling": "none", "momentum": 0.9}},
        "scheduler": {"name": "warmup_cosine", "args": {"warmup_epochs": 1}},
        "trainer": {
            "max_epochs": 2, "batch_size": 16, "num_workers": 0, "progress": False, "log_every": 1,
            "checkpoint_every": 1, "checkpoint_every_steps": 3, "keep_last": 10,
            "output_dir": str(output_dir), **trainer,
        },
        "eval": {"protocols": []},  # no evaluation after fit: the suite is about training state
        "report": False,  # nor a report
    }  # fmt: skip


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def fit_command(recipe: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "contrastive", "fit", "--recipe", str(recipe), *overrides]


def run_fit(recipe: Path, *overrides: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        fit_command(recipe, *overrides), env=env or child_env(), capture_output=True, text=True, timeout=timeout
    )


def start_fit(recipe: Path, log: Path, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115  (closed with the process by the caller's kill_when)
    return subprocess.Popen(fit_command(recipe, *overrides), env=env or child_env(), stdout=handle, stderr=subprocess.STDOUT)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 240, poll: float = 0.02) -> None:
    """SIGKILL ``proc`` as soon as ``condition()`` holds (it must hold before the process ends)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before the kill point")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the kill point never came")
        time.sleep(poll)
    proc.kill()  # SIGKILL: no handler, no cleanup, no flush
    proc.wait(timeout=30)
    assert proc.returncode == -9


def logged_steps(output_dir: Path) -> list[int]:
    import json

    path = output_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass  # a line cut by the kill
    return steps


def tensorboard_steps(output_dir: Path, tag: str = "loss") -> list[int]:
    """The steps of ``tag`` as TensorBoard shows them (purged events of earlier sessions hidden)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = [p for p in (output_dir / "tensorboard").iterdir() if p.is_dir()]  # the run's (project's) folder
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def assert_same_tensors(a: Path, b: Path) -> None:
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys(), a.name
    for key in left:
        assert torch.equal(left[key], right[key]), f"{a.name}: {key} differs"


def kill_after_step_4_then_resume(tmp_path: Path, recipe_for) -> tuple[Path, Path]:
    """Train ``recipe_for(output_dir)`` (a recipe dict of 10 steps, checkpoints every 3 steps and
    every epoch) uninterrupted into ``tmp_path/reference``; train it again into ``tmp_path/run``,
    SIGKILL it once step 4 is logged (the step-3 checkpoint is complete; a pause in the step-6
    save keeps the run from finishing before the kill arrives) and rerun it with
    ``--trainer.resume true``. Returns the two run directories, for the caller to compare."""
    reference = tmp_path / "reference"
    done = run_fit(write_recipe(tmp_path / "reference.yaml", recipe_for(reference)))
    assert done.returncode == 0, done.stderr

    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "recipe.yaml", recipe_for(out))
    pause = child_env(**{checkpoint.PAUSE_ENV: f"6:{tmp_path / 'paused'}"})
    first = start_fit(recipe, tmp_path / "first.log", env=pause)
    kill_when(first, lambda: 4 in logged_steps(out))
    assert checkpoint.complete(out / "checkpoints"), "a complete checkpoint exists before the kill"

    resumed = run_fit(recipe, "--trainer.resume", "true")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout + resumed.stderr
    return reference, out


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """The uninterrupted run every kill-and-resume run must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("reference")
    recipe = write_recipe(out.parent / "reference.yaml", kill_recipe(out))
    done = run_fit(recipe)
    assert done.returncode == 0, done.stderr
    return out
