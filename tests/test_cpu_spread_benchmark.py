"""benchmarks/cpu_spread.py: one real run under a setting gives a row of the run's scores, the
summary spans the rows, and an unknown setting is refused in one line."""

import pytest

from tests.helpers import load_benchmark


def test_a_row_holds_the_scores_of_the_run_under_its_setting(tmp_path):
    bench = load_benchmark("cpu_spread")
    overrides = ["--trainer.max_steps", "1", "--data.args.num_train", "64", "--data.args.num_test", "40",
                 "--trainer.batch_size", "32", "--eval.baselines", "[raw_pixels]"]
    row = bench.run_once("quickstart", None, 3, "default-1", overrides, tmp_path)
    assert row["setting"] == "default-1" and row["seed"] == 3 and row["ATEN_CPU_CAPABILITY"] == "default"
    for protocol in ("knn_top1", "linear_top1"):
        assert 0.0 <= row[f"learned_{protocol}"] <= 1.0
        assert row[f"learned_minus_raw_pixels_{protocol}"] == pytest.approx(
            row[f"learned_{protocol}"] - row[f"raw_pixels_{protocol}"], abs=1e-6)
    assert (tmp_path / "default-1-seed3" / "results.json").is_file()


def test_the_summary_spans_every_row():
    bench = load_benchmark("cpu_spread")
    rows = [{"setting": "a", "x": 0.5, "y": 0.1}, {"setting": "b", "x": 0.25, "y": 0.3}]
    assert bench.summarise(rows) == {"x": {"min": 0.25, "max": 0.5}, "y": {"min": 0.1, "max": 0.3}}


def test_an_unknown_setting_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("cpu_spread").main(["--settings", "avx512-2"])
    assert exit_info.value.code == 2 and "unknown setting 'avx512-2'; choose from avx2-2" in capsys.readouterr().err
