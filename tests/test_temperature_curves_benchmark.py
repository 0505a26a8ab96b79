"""benchmarks/temperature_curves.py: reads sweep cells' metrics.jsonl and draws their diagnostics."""

import json
from pathlib import Path

import pytest

from tests.helpers import load_benchmark


def _script():
    return load_benchmark("temperature_curves")


def _run(folder: Path, temperature: float, records: list[dict]) -> Path:
    folder.mkdir()
    (folder / "config.yaml").write_text(f"loss: {{name: ntxent, args: {{temperature: {temperature}}}}}\n"
                                        "trainer: {batch_size: 64}\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_series_labels_and_png(tmp_path):
    curves = _script()
    low = _run(tmp_path / "low", 0.1, [{"step": 5, "loss": 3.0, "logit_entropy": 0.4},
                                       {"epoch": 0, "knn_top1": 0.7},  # an online-kNN record: no step metrics
                                       {"step": 10, "loss": 2.5, "logit_entropy": 0.3},
                                       {"step": 10, "loss": 2.4, "logit_entropy": 0.2}])  # resumed: logged twice
    high = _run(tmp_path / "high", 1.0, [{"step": 5, "loss": 4.0, "logit_entropy": 0.99}])
    assert curves.read_series(low, ["loss", "logit_entropy"]) == {"loss": ([5, 10], [3.0, 2.4]),
                                                                  "logit_entropy": ([5, 10], [0.4, 0.2])}
    assert curves.run_label(high) == "τ=1.0, B=64"
    out = tmp_path / "curves.png"
    assert curves.main([str(low), str(high), "--out", str(out), "--metrics", "loss,logit_entropy"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):  # a metric no run logged is an error, not an empty panel
        curves.main([str(low), "--out", str(out), "--metrics", "uniformity"])


def test_the_temperature_panel_reads_a_schedule_a_learned_value_or_the_fixed_number(tmp_path):
    curves = _script()
    fixed = _run(tmp_path / "fixed", 0.2, [{"step": 5, "loss": 3.0}, {"epoch": 0, "knn_top1": 0.7}])
    scheduled = tmp_path / "scheduled"
    scheduled.mkdir()
    (scheduled / "config.yaml").write_text("loss: {name: ntxent, args: {temperature: {schedule: cosine, start: 0.5, end: 0.1}}}\n")
    (scheduled / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 3.0, "schedule/loss.temperature": 0.41}) + "\n")
    learned = tmp_path / "learned"
    learned.mkdir()
    (learned / "config.yaml").write_text("loss: {name: ntxent, args: {temperature: {learned: true, lr_scale: 0.05}}}\n")
    (learned / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 3.0, "learned/loss.temperature": 0.13}) + "\n")
    assert curves.read_series(fixed, ["temperature"]) == {"temperature": ([5], [0.2])}  # not the online-kNN record
    assert curves.read_series(scheduled, ["temperature"]) == {"temperature": ([5], [0.41])}
    assert curves.read_series(learned, ["temperature"]) == {"temperature": ([5], [0.13])}
    assert curves.run_label(scheduled) == "τ cosine 0.5→0.1"
    assert curves.run_label(learned) == "τ learned (lr×0.05)"
    assert curves.temperature_label("learned") == "τ learned"
    assert curves.temperature_label({"schedule": "periodic_cosine", "min": 0.1, "max": 1.0, "period_epochs": 4}) == \
        "τ periodic_cosine 0.1–1.0"
