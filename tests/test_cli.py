"""The command line: subcommands, overrides, and user errors that exit 2 without a traceback."""

import json
import subprocess
import sys

import pytest
import yaml

from contrastive.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contrastive", *args], capture_output=True, text=True, timeout=300)


def test_help_does_not_import_torch():
    code = "import sys; from contrastive.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False"
    code = "import sys, contrastive; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_print_config_shows_paper_settings(capsys):
    assert main(["fit", "--recipe", "recipes/simclr_r50.yaml", "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["backbone"]["name"] == "resnet50"
    assert config["optimizer"]["args"]["lr"] == 0.3
    assert config["loss"]["args"]["temperature"] == 0.1


def test_override_swaps_backbone(capsys):
    assert main(["fit", "--print_config", "--backbone.name", "resnet10t", "--loss.args.temperature=0.2"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["backbone"]["name"] == "resnet10t"
    assert config["loss"]["args"]["temperature"] == 0.2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", "--loss.name", "ntxnet"], "did you mean 'ntxent'"),
        (["check", "--loss.args.temprature", "0.1"], "did you mean 'temperature'"),
        (["check", "--trainer.max_epoch", "1"], "did you mean 'max_epochs'"),
        (["check", "--traner.max_epochs", "1"], "did you mean 'trainer'"),
        (["check", "--trainer.batch_size", "many"], "batch_size should be int"),
        (["check", "--recipe", "missing.yaml"], "does not exist"),
        (["check", "--backbone.name", "resnet5O"], "resnet50"),
        (["list", "lossses"], "did you mean 'losses'"),
        (["list", "losses", "--describe", "ntxnet"], "did you mean 'ntxent'"),
    ],
)
def test_user_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_unwritable_output_dir_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["fit", "--trainer.output_dir", str(blocker / "run"), "--trainer.max_steps", "1"]) == 2
    assert "cannot be created or written" in capsys.readouterr().err


def test_check_and_list(capsys):
    assert main(["check"]) == 0
    assert "recipe OK" in capsys.readouterr().out
    assert main(["list", "losses"]) == 0
    assert "ntxent" in capsys.readouterr().out.split()
    assert main(["list", "backbones", "resnet1*"]) == 0
    names = capsys.readouterr().out.split("\n")
    assert "resnet18" in names and "resnet50" not in names
    assert main(["list", "losses", "--describe", "ntxent"]) == 0
    assert "temperature" in capsys.readouterr().out
    assert main(["plugins"]) == 0
    assert "builtin.losses" in capsys.readouterr().out


def test_subprocess_exit_status_and_no_traceback():
    out = run_cli("check", "--loss.name", "ntxnet")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "did you mean 'ntxent'" in out.stderr
    out = run_cli("fit", "--recipe", "recipes/simclr_r50.yaml", "--print_config", "--debug")
    assert out.returncode == 0 and json.dumps(yaml.safe_load(out.stdout)["trainer"]["batch_size"]) == "512"


def test_version_anywhere_on_the_line():
    from contrastive._version import __version__

    for argv in (["--version"], ["fit", "--version"]):
        done = run_cli(*argv)
        assert done.returncode == 0 and done.stdout.strip() == f"contrastive {__version__} (distribution contrastive-ssl)", done


def test_config_is_an_alias_of_recipe(capsys):
    assert main(["check", "--config", "moco_fmnist_cpu"]) == 0
    assert "method=moco" in capsys.readouterr().out
    assert main(["fit", "--config=quickstart", "--print_config"]) == 0
    assert "name: shapes" in capsys.readouterr().out


def test_fit_help_lists_the_recipe_keys_and_settings_with_types_and_defaults():
    done = run_cli("fit", "--help")
    assert done.returncode == 0
    assert "seed, data, method, augmentation, views" in done.stdout
    assert "--trainer.max_epochs               int (default: 100)" in done.stdout
    assert "--trainer.resume                   bool or 'auto' (default: false)" in done.stdout
    assert "--eval.knn_k" in done.stdout


def test_check_validates_callbacks_from_the_command_line(capsys):
    assert main(["check", "--callbacks", "[{name: early_stopping, args: {monitor: loss, mode: min}}]"]) == 0
    assert "callbacks=early_stopping" in capsys.readouterr().out
    assert main(["check", "--callbacks", "[{name: early_stoping}]"]) == 2
    assert "callbacks.0: unknown callback 'early_stoping' — did you mean 'early_stopping'?" in capsys.readouterr().err
