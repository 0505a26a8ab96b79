"""A method from an outside package, end to end, as a new user meets it.

The package is faked as an installed distribution (a package plus a ``*.dist-info`` folder with
an entry point in the group ``contrastive``, as in tests/test_plugins.py) in a temporary folder
on ``sys.path`` — and on ``PYTHONPATH`` for the ``contrastive fit`` subprocesses, whose plugin
autoload stays on, so they discover it through the real entry-point path.  Its method subclasses
``contrastive.Method``, takes the injected ``head``, returns diagnostics from ``loss`` and counts
its ``after_step`` calls in a buffer.  Checked: ``list``, ``check`` and its two one-line errors;
a fit whose metrics.jsonl carries the diagnostics and whose checkpoint carries the counter; and a
SIGKILL after a mid-run checkpoint, resumed to the same weights and buffers bit for bit.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

import contrastive.plugins
from contrastive.cli import main
from contrastive.storage import checkpoint
from tests.helpers import write_distribution
from tests.reliability.conftest import assert_same_tensors, kill_when, logged_steps

NAME = "outside_counting"
PACKAGE = "outside_method_plugin"
DIST = "outside-method-plugin"

OUTSIDE_METHOD = """
    import torch
    import torch.nn.functional as F

    from contrastive import Method, hookimpl
    from contrastive.methods.base import embed_views


    class CountingInfoNCE(Method):
        \"\"\"InfoNCE over two projected views, counting its applied steps in a buffer.\"\"\"

        def __init__(self, backbone, head, temperature: float = 0.5) -> None:
            super().__init__()
            self.backbone = backbone
            self.head = head
            self.temperature = temperature
            self.register_buffer("steps_counted", torch.zeros((), dtype=torch.int64))

        def forward(self, views, batch):
            return {"z": embed_views(lambda x: self.head(self.backbone(x)), views)}  # (B, 2, D)

        def loss(self, outputs, batch):
            z = F.normalize(outputs["z"].float(), dim=-1)
            logits = z[:, 0] @ z[:, 1].T / self.temperature
            targets = torch.arange(z.shape[0], device=z.device)
            loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
            cosine = (z[:, 0] * z[:, 1]).sum(dim=1).mean()
            return loss, {"outside_positive_cosine": float(cosine), "outside_count": float(self.steps_counted)}

        def after_step(self, outputs, batch, step, total_steps):
            self.steps_counted += 1


    @hookimpl
    def contrastive_register(registries):
        registries.methods.register("outside_counting", CountingInfoNCE)
"""

STEPS = 6
CHECKPOINT_EVERY = 3  # a complete checkpoint at step 3; the kill comes after step 4 is logged


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the faked installed distribution of the outside method."""
    root = tmp_path_factory.mktemp("site")
    write_distribution(root, OUTSIDE_METHOD, dist=DIST, package=PACKAGE, entry_point="outside_method")
    return root


@pytest.fixture
def install(site, monkeypatch):
    """The outside distribution installed for this process (``sys.path``), autoload on."""
    monkeypatch.delenv(contrastive.plugins.AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(contrastive.plugins.DISABLE_ENV, raising=False)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()  # path and metadata finders cache directory listings
    yield site
    for name in list(sys.modules):
        if name.split(".")[0] == PACKAGE:
            del sys.modules[name]


def child_env(site: Path, **extra: str) -> dict[str, str]:
    """The fit subprocess's environment: the outside distribution on PYTHONPATH, plugins autoloaded."""
    env = {k: v for k, v in os.environ.items()
           if k not in (contrastive.plugins.AUTOLOAD_ENV, contrastive.plugins.DISABLE_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def fit_argv(out: Path, *extra: str) -> list[str]:
    """The quickstart recipe, tiny, with the outside method selected by name."""
    return [
        "fit", "--method.name", NAME, "--trainer.max_steps", str(STEPS), "--trainer.batch_size", "16",
        "--backbone.name", "test_resnet", "--data.args.image_size", "16", "--trainer.progress", "false",
        "--eval.protocols", "[]", "--trainer.log_every", "1",
        "--trainer.checkpoint_every_steps", str(CHECKPOINT_EVERY), "--trainer.output_dir", str(out), *extra,
    ]  # fmt: skip


def run_fit(site: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "contrastive", *fit_argv(out, *extra)]
    return subprocess.run(command, env=child_env(site), capture_output=True, text=True, timeout=300)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def final_checkpoint(out: Path) -> Path:
    return out / "checkpoints" / f"step_{STEPS:09d}"


@pytest.fixture(scope="module")
def reference_run(site, tmp_path_factory) -> Path:
    """One uninterrupted fit of the outside method in a subprocess."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = run_fit(site, out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_listed_and_checked_by_name(install, capsys):
    assert main(["list", "methods"]) == 0
    listing = capsys.readouterr().out
    assert re.search(rf"^{NAME}\s+InfoNCE over two projected views", listing, re.M), listing

    assert main(["check", "--method.name", NAME]) == 0
    assert f"method={NAME}" in capsys.readouterr().out

    assert main(["check", "--method.name", "outside_countng"]) == 2
    error = capsys.readouterr().err
    assert f"unknown method 'outside_countng' — did you mean '{NAME}'?" in error, error
    assert "contrastive list methods" in error and len(error.strip().splitlines()) == 1

    assert main(["check", "--method.name", NAME, "--method.args.temprature", "0.2"]) == 2
    error = capsys.readouterr().err
    assert f"method '{NAME}' has no argument 'temprature'" in error, error
    assert "did you mean 'temperature'" in error and "its arguments: backbone, head, temperature" in error
    assert len(error.strip().splitlines()) == 1


def test_fit_logs_the_diagnostics_and_checkpoints_the_counter(reference_run):
    logged = records(reference_run)
    assert [r["step"] for r in logged] == list(range(1, STEPS + 1))
    for record in logged:
        assert {"loss", "outside_positive_cosine", "outside_count"} <= set(record), record
        assert -1 <= record["outside_positive_cosine"] <= 1
        assert record["outside_count"] == record["step"] - 1  # after_step ran once per earlier step
    model = load_file(str(final_checkpoint(reference_run) / "model.safetensors"))
    assert model["steps_counted"].item() == STEPS
    assert any(key.startswith("head.") for key in model)  # the injected head is part of the method
    assert (reference_run / "backbone.safetensors").is_file()
    config = (reference_run / "config.yaml").read_text()
    assert NAME in config and DIST in config


def test_sigkill_after_a_checkpoint_then_resume_is_exact(site, reference_run, tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "killed.log"
    # The final save (step 6) pauses if reached, so the run cannot end before it is killed.
    env = child_env(site, **{checkpoint.PAUSE_ENV: f"{STEPS}:{tmp_path / 'paused'}"})
    with open(log, "w") as handle:
        killed = subprocess.Popen([sys.executable, "-m", "contrastive", *fit_argv(out)], env=env,
                                  stdout=handle, stderr=subprocess.STDOUT)
        kill_when(killed, lambda: CHECKPOINT_EVERY + 1 in logged_steps(out))
    assert [p.name for p in checkpoint.complete(out / "checkpoints")] == [f"step_{CHECKPOINT_EVERY:09d}"], log.read_text()

    resumed = run_fit(site, out, "--trainer.resume", "true")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert re.search(rf"resumed from .*step_{CHECKPOINT_EVERY:09d}", resumed.stdout + resumed.stderr)
    # The counter came back from the checkpoint: every record, before and after the kill, saw step - 1.
    assert all(r["outside_count"] == r["step"] - 1 for r in records(out))
    assert_same_tensors(final_checkpoint(reference_run) / "model.safetensors", final_checkpoint(out) / "model.safetensors")
    assert_same_tensors(reference_run / "backbone.safetensors", out / "backbone.safetensors")
    assert load_file(str(final_checkpoint(out) / "model.safetensors"))["steps_counted"].item() == STEPS
