"""A plugin's callback and protocol through SIGKILL and ``--trainer.resume auto``: the package of
docs/callbacks.md and docs/protocols.md (their examples as written, installed as a fake
dist-info on PYTHONPATH), a real ``contrastive fit`` killed mid-run and resumed ends with the
uninterrupted run's weights, callback state and protocol score."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from contrastive.storage import checkpoint
from tests.helpers import write_distribution

from .conftest import (
    assert_same_tensors,
    child_env,
    kill_recipe,
    kill_when,
    logged_steps,
    run_fit,
    start_fit,
    write_recipe,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _example(page: str, path: str) -> str:
    return re.search(re.escape(f"`{path}`:") + r"\s*```python\n(.*?)```", (DOCS / page).read_text(), re.S).group(1)


def test_a_plugin_callback_and_protocol_survive_sigkill_and_resume_auto(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, _example("callbacks.md", "acme_callbacks/plugin.py"), dist="acme-callbacks",
                       package="acme_callbacks", entry_point="acme_callbacks")
    write_distribution(site, _example("protocols.md", "acme_protocols/plugin.py"), dist="acme-protocols",
                       package="acme_protocols", entry_point="acme_protocols")
    root = str(Path(__file__).resolve().parents[2])
    env = child_env(CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD="0",
                    PYTHONPATH=os.pathsep.join([str(site), root, os.environ.get("PYTHONPATH", "")]))

    def recipe(out: Path) -> Path:
        raw = kill_recipe(out, resume="auto")
        raw["callbacks"] = [{"name": "loss_threshold", "args": {"threshold": 0.0, "window": 3}}]  # never stops
        raw["eval"] = {"protocols": ["centroid"], "baselines": []}
        return write_recipe(out.parent / f"{out.name}.yaml", raw)

    reference = tmp_path / "reference"
    done = run_fit(recipe(reference), env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "run"
    path = recipe(out)
    killed = start_fit(path, tmp_path / "killed.log", env=env)
    kill_when(killed, lambda: 7 in logged_steps(out))
    resumed = run_fit(path, env=env)  # the same command line: resume auto continues it
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr

    final = checkpoint.complete(reference / "checkpoints")[-1].name
    assert final == checkpoint.complete(out / "checkpoints")[-1].name
    for name in (f"checkpoints/{final}/model.safetensors", "backbone.safetensors"):
        assert_same_tensors(reference / name, out / name)

    def state(run):
        return json.loads((run / "checkpoints" / final / "state.json").read_text())["callbacks"]

    assert state(out) == state(reference) and len(state(out)["loss_threshold"]["recent"]) == 3

    def records(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss_running_mean"]) for r in map(json.loads, lines) if "loss_running_mean" in r]

    assert records(out) == records(reference) and [s for s, _ in records(out)] == list(range(1, 11))
    score = [json.loads((run / "results.json").read_text())["eval"]["centroid_top1"] for run in (reference, out)]
    assert score[0] == score[1]
