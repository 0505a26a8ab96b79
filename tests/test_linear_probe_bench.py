"""benchmarks/linear_probe.py: both probes on the same tiny problem, the rows and the ratios it prints."""

import pytest
import torch

from tests.helpers import load_benchmark

pytest.importorskip("sklearn")
pytest.importorskip("threadpoolctl")


def test_both_probes_score_the_same_problem_alike_and_the_ratio_is_sklearn_over_ours():
    bench = load_benchmark("linear_probe")
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 12, generator=g) * 3
    train_y, test_y = torch.arange(200) % 10, torch.arange(100) % 10
    data = (centres[train_y] + torch.randn(200, 12, generator=g), train_y,
            centres[test_y] + torch.randn(100, 12, generator=g), test_y)
    rows = list(bench.compare("toy", data, 1e-3, 100))
    assert [(r["probe"], r["auto"], r.get("threads")) for r in rows] == [
        ("ours", False, None), ("ours", True, None), ("sklearn", False, "1"), ("sklearn", False, "all")]
    assert abs(rows[0]["top1"] - rows[2]["top1"]) <= 0.02 and rows[0]["top1"] > 0.8  # same objective, same answer
    ratios = bench._ratios(rows)["toy"]
    assert ratios["sklearn_1_threads_over_ours"] == pytest.approx(rows[2]["seconds"] / rows[0]["seconds"])
    assert "ours" in bench._line(rows[0]) and "iterations" in bench._line(rows[2])
