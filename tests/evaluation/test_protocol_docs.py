"""The ``protocols`` kind: docs/protocols.md's example protocol, installed as a package (a fake
dist-info on sys.path, no pip), is checked with the recipe and scored after fit beside the
built-in ones — in results.json, the printed table and the report; a failing one is named."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
import torch

import contrastive
from contrastive import recipe as recipes
from contrastive.errors import EvaluationError, RecipeError
from contrastive.evaluation import format_table
from contrastive.evaluation.protocols import score_features
from contrastive.training import fit
from tests.helpers import tiny_recipe_dict, write_distribution

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "protocols.md").read_text()


@pytest.fixture
def installed(tmp_path, monkeypatch):
    source = re.search(r"`acme_protocols/plugin\.py`:\s*```python\n(.*?)```", PAGE, re.S).group(1)
    write_distribution(tmp_path, source, dist="acme-protocols", package="acme_protocols", entry_point="acme_protocols")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield contrastive.load_registries()
    for name in list(sys.modules):
        if name.split(".")[0] == "acme_protocols":
            del sys.modules[name]


def test_the_documented_protocol_is_scored_in_results_the_table_and_the_report(tmp_path, installed):
    registries = installed
    assert registries.protocols.source("centroid") == "plugin 'acme_protocols' (distribution acme-protocols 0.1.0)"
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=1)
    raw["eval"] = {"protocols": ["knn", "centroid"], "baselines": ["raw_pixels"]}
    raw["report"] = True
    fit(recipes.validate(raw, registries), registries)
    results = json.loads((tmp_path / "run" / "results.json").read_text())["eval"]
    assert results["protocols"] == ["knn", "centroid"]
    assert 0.0 <= results["centroid_top1"] <= 1.0 and "centroid_top1" in results["baselines"]["raw_pixels"]
    assert "knn_top1" in results and "linear_top1" not in results
    header = format_table(results).splitlines()[1]
    assert header.split() == ["kNN", "top-1", "kNN", "top-5", "eff.", "rank", "centroid_top1"]
    assert "<th>centroid_top1</th>" in (tmp_path / "run" / "report.html").read_text()

    raw["eval"]["protocols"] = ["centriod"]
    with pytest.raises(RecipeError, match=r"eval\.protocols: unknown 'centriod' — did you mean 'centroid'\?"):
        recipes.validate(raw, registries)


def test_a_protocol_gets_only_labelled_samples_unless_it_says_otherwise_and_a_failing_one_is_named(registries):
    mine = contrastive.load_registries(autoload=False)
    seen = {}

    def counts(train_x, train_y, test_x, test_y, *, num_classes, config, seed):
        seen[len(train_y)] = int((train_y < 0).sum())
        return {"n": len(train_y)}

    def everything(train_x, train_y, test_x, test_y, *, num_classes, config, seed):
        return counts(train_x, train_y, test_x, test_y, num_classes=num_classes, config=config, seed=seed)

    everything.needs_labels = False

    def broken(train_x, train_y, test_x, test_y, *, num_classes, config, seed):
        raise ValueError("no centroid")

    with mine.registering_as("acme-protocols"):
        mine.protocols.register("counts", counts)
        mine.protocols.register("everything", everything)
        mine.protocols.register("broken", broken)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, -1, 0, 1, -1])
    config = recipes.EvalConfig()
    scores = score_features((x, y), (x, y), ["counts", "everything", "knn"], config, 2, registries=mine)
    assert scores["counts_n"] == 4 and scores["everything_n"] == 6 and seen == {4: 0, 6: 2}
    assert "knn_top1" in scores
    with pytest.raises(EvaluationError, match=r"evaluation protocol 'broken' \(from acme-protocols\) failed: "
                                              r"ValueError: no centroid; fix it or leave it out of eval.protocols"):
        score_features((x, y), (x, y), ["broken"], config, 2, registries=mine)
