"""benchmarks/eval_scale.py at a tiny size: one JSON row per method, each from its own process,
with an accuracy, a time and a peak memory; sizes parse with k and m suffixes."""

import json

from tests.helpers import load_benchmark


def test_sizes_parse_with_suffixes():
    assert load_benchmark("eval_scale").parse_sizes("10k:512:10, 1m:2048:1000") == [(10_000, 512, 10), (1_000_000, 2048, 1000)]


def test_a_tiny_run_prints_a_row_per_method(capsys):
    rows = load_benchmark("eval_scale").main(["--sizes", "300:16:3", "--methods", "knn,minibatch,lbfgs", "--max-iter", "20"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == rows and [r["method"] for r in rows] == ["knn", "minibatch", "lbfgs"]
    for row in rows:
        assert (row["n"], row["d"], row["c"], row["n_test"]) == (300, 16, 3, 50)
        assert 0.0 <= row["top1"] <= 1.0 and row["seconds"] >= 0 and row["peak_rss_mib"] > 0


def test_an_extraction_row_with_two_processes(capsys):
    rows = load_benchmark("eval_scale").main(["--extract", "2", "--extract-images", "64", "--extract-size", "16",
                                              "--extract-backbone", "test_resnet", "--batch-size", "16"])
    assert [r.get("processes") for r in rows] == [2], rows
    for row in rows:
        assert "error" not in row, row
        assert row["images"] == 64 and row["features"][0] == 64 and row["images_per_s"] > 0
