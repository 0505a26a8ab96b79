"""No file we read runs code: pickles planted in every checkpoint file and as checkpoint_path.

Each hostile file is a pickle whose ``__reduce__`` would create a marker file when unpickled;
every test checks the marker was never created.  The manifest is rewritten to match the
planted file (an attacker who can write the checkpoint can write its manifest too), so the
refusal comes from the loader, not from the checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil

import pytest
import torch

from contrastive.cli import main
from contrastive.errors import DataError, TrainingError
from contrastive.storage import checkpoint, safeload
from tests.helpers import tiny_recipe_dict


class Hostile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_bytes(marker, zip_format=False) -> bytes:
    if zip_format:
        import io

        buffer = io.BytesIO()
        torch.save({"weight": Hostile(str(marker))}, buffer)
        return buffer.getvalue()
    return pickle.dumps({"weight": Hostile(str(marker))})


def reseal(path) -> None:
    """Rewrite the manifest so that it matches the (tampered) files."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest:
        data = (path / name).read_bytes()
        manifest[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    path = checkpoint.save(root / "ckpts", model=model, optimizer=optimizer, progress={"global_step": 1})
    return path, model, optimizer


@pytest.mark.parametrize("name", [*checkpoint.REQUIRED])
@pytest.mark.parametrize("zip_format", [False, True], ids=["pickle", "torch-save"])
def test_pickle_in_any_checkpoint_file_is_refused(saved, tmp_path, name, zip_format):
    path, model, optimizer = saved
    copy = tmp_path / path.name
    shutil.copytree(path, copy)
    marker = tmp_path / "pwned"
    (copy / name).write_bytes(hostile_bytes(marker, zip_format))
    reseal(copy)
    assert checkpoint.verify(copy) is None  # the checksums match: the loader must refuse it
    with pytest.raises(TrainingError, match=rf"{name}.*(pickle|refus)"):
        checkpoint.load(copy, model=model, optimizer=optimizer)
    assert not marker.exists()


def test_pickled_manifest_makes_the_checkpoint_damaged_not_executed(saved, tmp_path):
    path, _, _ = saved
    copy = tmp_path / "ckpts" / path.name
    shutil.copytree(path, copy)
    marker = tmp_path / "pwned"
    (copy / "manifest.json").write_bytes(hostile_bytes(marker))
    found, problems = checkpoint.newest_valid(tmp_path / "ckpts")
    assert found is None and "refusing to unpickle" in problems[0]
    assert not marker.exists()


def test_manifest_cannot_point_outside_the_checkpoint(saved, tmp_path):
    path, _, _ = saved
    copy = tmp_path / path.name
    shutil.copytree(path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["../../etc/passwd"] = {"bytes": 1, "sha256": "0"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert "not a file of the checkpoint" in checkpoint.verify(copy)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".safetensors", ".ckpt"])
@pytest.mark.parametrize("zip_format", [False, True], ids=["pickle", "torch-save"])
def test_hostile_checkpoint_path_is_refused(registries, tmp_path, suffix, zip_format):
    marker = tmp_path / "pwned"
    weights = tmp_path / f"weights{suffix}"
    weights.write_bytes(hostile_bytes(marker, zip_format))
    with pytest.raises(DataError, match="nothing was executed"):
        registries.backbones.build("test_resnet", checkpoint_path=str(weights))
    assert not marker.exists()


def test_safeload_reads_plain_state_dicts(tmp_path):
    state = {"w": torch.arange(3.0)}
    torch.save({"state_dict": state}, tmp_path / "ok.pt")
    assert torch.equal(safeload.read_state_dict(tmp_path / "ok.pt")["w"], state["w"])
    assert safeload.sniff(tmp_path / "ok.pt") == "torch-zip"
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(safeload.UnreadableFileError, match="neither"):
        safeload.read_state_dict(tmp_path / "empty.pt")


def test_resume_from_hostile_checkpoint_exits_2_and_runs_nothing(registries, tmp_path, capsys):
    """End to end through the command line: a finished run, its newest checkpoint's state.json
    replaced by a pickle (manifest resealed); planted Accelerate-style pickles beside it are
    never opened."""
    import yaml

    out = tmp_path / "run"
    raw = tiny_recipe_dict(str(out), max_steps=2, checkpoint_every_steps=1, keep_last=3)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": []}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["fit", "--recipe", str(recipe)]) == 0
    marker = tmp_path / "pwned"
    newest = checkpoint.complete(out / "checkpoints")[-1]
    for planted in ("random_states_0.pkl", "optimizer.bin", "pytorch_model.bin", "scheduler.bin"):
        (newest / planted).write_bytes(hostile_bytes(marker))
    capsys.readouterr()
    assert main(["fit", "--recipe", str(recipe), "--trainer.resume", "true"]) == 0  # extra files: ignored
    (newest / "state.json").write_bytes(hostile_bytes(marker))
    reseal(newest)
    capsys.readouterr()
    assert main(["fit", "--recipe", str(recipe), "--trainer.resume", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: could not restore checkpoint") and "Traceback" not in err
    assert "refusing to unpickle" in err
    assert not marker.exists()
