"""The global options' environment variables and the shell completion script."""

import importlib.util
import subprocess

import pytest

from contrastive.cli import main
from contrastive.errors import RecipeError


def test_contrastive_debug_shows_the_traceback(monkeypatch, capsys):
    argv = ["check", "--recipe", "missing.yaml"]
    assert main(argv) == 2 and "Traceback" not in capsys.readouterr().err
    for value in ("1", "true", "TRUE"):
        monkeypatch.setenv("CONTRASTIVE_DEBUG", value)
        with pytest.raises(RecipeError, match="does not exist"):
            main(argv)
    monkeypatch.setenv("CONTRASTIVE_DEBUG", "0")
    assert main(argv) == 2


def test_contrastive_disable_plugins_is_the_environments_disable_plugin(monkeypatch, capsys):
    assert main(["plugins"]) == 0
    assert "builtin.dcl" in capsys.readouterr().out
    monkeypatch.setenv("CONTRASTIVE_DISABLE_PLUGINS", "builtin.dcl, builtin.heads")
    assert main(["plugins", "--disable-plugin", "builtin.optim"]) == 0  # the option adds to the variable
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "builtin.losses" in shown
    assert not {"builtin.dcl", "builtin.heads", "builtin.optim"} & set(shown)


def test_help_names_the_variables(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "CONTRASTIVE_DEBUG=1" in out and "CONTRASTIVE_DISABLE_PLUGINS=a,b" in out and "--print_completion" in out


def _complete(script: str, *words: str) -> list[str]:
    """What bash completes for ``words`` (the last one being typed) with ``script`` loaded."""
    line = " ".join(words)
    program = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; COMP_POINT={len(line)}\n"
               "_shtab_contrastive; printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(importlib.util.find_spec("shtab") is None, reason="shell completion needs shtab")
def test_the_bash_completion_script_completes_subcommands_and_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--print_completion", "shtab-bash"])
    assert exited.value.code == 0
    script = capsys.readouterr().out
    assert "complete -o bashdefault -F _shtab_contrastive contrastive" in script
    assert _complete(script, "contrastive", "ex") == ["export"]
    assert _complete(script, "contrastive", "e") == ["eval", "embed", "export"]
    assert _complete(script, "contrastive", "eval", "runs/x", "--pro") == ["--protocol"]
    assert _complete(script, "contrastive", "eval", "runs/x", "--protocol", "") == [
        "auto", "knn", "linear", "linear_augmented", "finetune", "label_free", "all"]
    assert "--disable-plugin" in _complete(script, "contrastive", "--")


def test_completion_without_shtab_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "shtab", None)
    assert main(["--print_completion", "shtab-bash"]) == 2
    assert capsys.readouterr().err.startswith("error: shell completion scripts need shtab: pip install shtab")
