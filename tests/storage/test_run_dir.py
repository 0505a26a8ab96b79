"""RunDir names every file of a run directory exactly as the public contract (DESIGN.md, docs) has it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from contrastive.storage.run_dir import RunDir


def test_every_name_is_the_contract(tmp_path):
    files = RunDir(tmp_path)
    assert files.config == tmp_path / "config.yaml"
    assert files.results == tmp_path / "results.json"
    assert files.backbone == tmp_path / "backbone.safetensors"
    assert files.metrics == tmp_path / "metrics.jsonl"
    assert files.checkpoints == tmp_path / "checkpoints"
    assert files.report == tmp_path / "report.html"
    assert files.lock == tmp_path / ".lock"
    assert files.snapshots == tmp_path / "snapshots"
    assert files.tensorboard == tmp_path / "tensorboard"
    assert files.mlflow == tmp_path / "mlruns"


def test_a_snapshot_is_a_run_directory_of_its_own(tmp_path):
    snapshot = RunDir(tmp_path).snapshot(4)
    assert snapshot.root == tmp_path / "snapshots" / "epoch_0004"
    assert snapshot.backbone == tmp_path / "snapshots" / "epoch_0004" / "backbone.safetensors"
    assert snapshot.config == tmp_path / "snapshots" / "epoch_0004" / "config.yaml"


def test_it_takes_a_string_names_without_touching_the_disk_and_is_frozen(tmp_path):
    files = RunDir(str(tmp_path / "missing"))
    assert isinstance(files.root, Path) and files.results == tmp_path / "missing" / "results.json"
    assert not (tmp_path / "missing").exists()
    with pytest.raises(dataclasses.FrozenInstanceError):
        files.root = tmp_path  # type: ignore[misc]


def test_the_modules_that_named_them_use_it():
    from contrastive.evaluation.report import REPORT_FILE
    from contrastive.storage.run_lock import LOCK_NAME

    assert (REPORT_FILE, LOCK_NAME) == (RunDir.REPORT, RunDir.LOCK)
