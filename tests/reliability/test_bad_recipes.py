"""Bad recipes and environments: each exits 2 before any training, with one line naming the
cause and the fix, and no traceback (``--debug`` shows it)."""

from __future__ import annotations

import pytest
import yaml

from contrastive.cli import main
from contrastive.storage import checkpoint
from tests.helpers import tiny_recipe_dict


@pytest.fixture
def recipe(tmp_path):
    raw = tiny_recipe_dict(str(tmp_path / "run"), max_steps=1)
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["eval"] = {"protocols": []}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def fails_cleanly(argv, capsys, *expected) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


CASES = {
    "unknown name": (["--loss.name", "ntxnet"], ["did you mean 'ntxent'"]),
    "unknown argument": (["--loss.args.temprature", "0.1"], ["did you mean 'temperature'"]),
    "unknown trainer key": (["--trainer.max_epoch", "1"], ["did you mean 'max_epochs'"]),
    "unknown top-level key": (["--traner.max_epochs", "1"], ["did you mean 'trainer'"]),
    "wrong type": (["--trainer.batch_size", "many"], ["batch_size should be int"]),
    "negative skip_nonfinite": (["--trainer.skip_nonfinite", "-1"], ["skip_nonfinite must be >= 0"]),
    "fp16 on the CPU": (["--trainer.mixed_precision", "fp16", "--trainer.cpu", "true"], ["fp16 needs a GPU"]),
    "missing checkpoint_path": (["--backbone.args.checkpoint_path", "/nonexistent/w.safetensors"], ["does not exist"]),
    "missing image folder": (
        ["--data.name", "image_folder", "--data.args", "{root: /nonexistent/images, image_size: 16}"],
        ["/nonexistent/images does not exist"],
    ),
    "batch larger than the dataset": (["--trainer.batch_size", "100000"], ["fewer than one global batch", "--trainer.batch_size"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_recipe_exits_2_with_one_line(case, recipe, capsys):
    overrides, expected = CASES[case]
    fails_cleanly(["fit", "--recipe", str(recipe), *overrides], capsys, *expected)


def test_missing_and_malformed_recipe_files(tmp_path, capsys):
    fails_cleanly(["fit", "--recipe", str(tmp_path / "nope.yaml")], capsys, "does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_epochs: [1\n")
    err = fails_cleanly(["check", "--recipe", str(bad)], capsys)
    assert "not valid YAML" in err


def test_empty_image_folder_stops_naming_it(recipe, tmp_path, capsys):
    empty = tmp_path / "images"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    fails_cleanly(
        ["fit", "--recipe", str(recipe), "--data.name", "image_folder", "--data.args", f"{{root: {empty}, image_size: 16}}"],
        capsys, f"{empty} holds no images",
    )  # fmt: skip


def test_output_dir_that_cannot_be_created(recipe, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fails_cleanly(
        ["fit", "--recipe", str(recipe), "--trainer.output_dir", str(blocker / "run")],
        capsys, "cannot be created or written", "--trainer.output_dir",
    )  # fmt: skip


def test_resume_with_only_damaged_checkpoints_is_an_error(recipe, tmp_path, capsys):
    ckpts = tmp_path / "run" / "checkpoints" / "step_000000001"
    ckpts.mkdir(parents=True)
    (ckpts / checkpoint.MANIFEST).write_text("{not json")
    fails_cleanly(["fit", "--recipe", str(recipe), "--trainer.resume", "true"], capsys, "no checkpoint in", "is intact")


def test_debug_shows_the_traceback(recipe):
    with pytest.raises(Exception, match="ntxent"):
        main(["--debug", "fit", "--recipe", str(recipe), "--loss.name", "ntxnet"])


def test_plugin_switches_from_the_command_line(capsys, monkeypatch):
    assert main(["--disable-plugin", "hardneg", "plugins"]) == 0
    assert "hardneg" not in capsys.readouterr().out
    monkeypatch.setenv("CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "hardneg" not in out and "not loaded" in out

