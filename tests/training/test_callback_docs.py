"""docs/callbacks.md's complete example, as written: its plugin module installed as a package
(a fake dist-info on sys.path, no pip), its recipe lines added to the tiny recipe; the callback's
values land in metrics.jsonl and the stop comes at the same step with 1 and with 2 processes."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

import contrastive
from contrastive import recipe as recipes
from contrastive.training import fit
from tests.helpers import run_ranks, tiny_recipe_dict, write_distribution

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "callbacks.md").read_text()


def block(after: str, language: str) -> str:
    """The first ``language`` code block of the page after the text ``after``."""
    found = re.search(re.escape(after) + r".*?```" + language + r"\n(.*?)```", PAGE, re.S)
    assert found, (after, language)
    return found.group(1)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, block("`acme_callbacks/plugin.py`:", "python"), dist="acme-callbacks",
                       package="acme_callbacks", entry_point="acme_callbacks")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    importlib.invalidate_caches()
    yield site
    for name in list(sys.modules):
        if name.split(".")[0] == "acme_callbacks":
            del sys.modules[name]


def _steps_with(out: Path, key: str) -> list[int]:
    return [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if key in r]


def test_the_documented_callback_logs_and_stops_at_the_same_step_on_1_and_2_processes(tmp_path, installed):
    registries = contrastive.load_registries()
    assert registries.callbacks.source("loss_threshold") == "plugin 'acme_callbacks' (distribution acme-callbacks 0.1.0)"
    raw = tiny_recipe_dict(str(tmp_path / "one"), max_steps=4, batch_size=8)
    raw.update(yaml.safe_load(block("name it in a recipe:", "yaml")))
    results = fit(recipes.validate(raw, registries), registries)
    # ntxent of 8 pairs at temperature 0.5 is about ln(15) < 4: the mean of two steps is below the threshold
    assert results["stopped_early"] and results["steps"] == 2
    assert _steps_with(tmp_path / "one", "loss_running_mean") == [1, 2]

    raw["trainer"].update(output_dir=str(tmp_path / "two"), batch_size=4)  # the same global batch of 8
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    code, output = run_ranks(["fit", "--recipe", str(tmp_path / "recipe.yaml")])
    assert code == 0, output[-3000:]
    assert output.count("stopping after step 2 of 4: loss_running_mean") == 1, output[-3000:]  # main process prints
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["processes"] == 2 and two["stopped_early"] and two["steps"] == 2
    assert _steps_with(tmp_path / "two", "loss_running_mean") == [1, 2]


def test_the_documented_conformance_line_passes_for_the_documented_callback(installed):
    namespace: dict = {}
    exec(block("## Test it", "python"), namespace)  # noqa: S102  the page's code, as written
    namespace["test_loss_threshold_meets_the_callback_contract"]()
