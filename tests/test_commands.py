"""The command table (contrastive.commands.COMMANDS): the parser, ``--help``, the recipe
overrides each command takes and the docs' command list all come from it; output to a
closed pipe ends quietly."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from contrastive.cli import EXIT_CLOSED_PIPE, _split_line, main
from contrastive.commands import COMMANDS, RECIPE
from contrastive.commands.overrides import own_options

ROOT = Path(__file__).resolve().parent.parent
DOCS_COMMANDS = ROOT / "docs" / "getting-started.md"


def test_the_docs_command_table_is_the_command_table():
    section = DOCS_COMMANDS.read_text().split("\n## The command line\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `contrastive (\S+)` \| ([^|]+) \|$", section, flags=re.MULTILINE)
    assert rows == [(name, command.help) for name, command in COMMANDS.items()]


def test_every_command_has_one_line_of_help_and_its_name():
    for name, command in COMMANDS.items():
        assert command.name == name and command.help and "\n" not in command.help and "\n" not in command.usage


def test_help_shows_each_commands_usage_line(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert re.search(rf"^  contrastive {name} *{re.escape(command.usage)}$", out, flags=re.MULTILINE), name


def test_each_command_takes_the_overrides_its_entry_names():
    assert [name for name, c in COMMANDS.items() if c.overrides == RECIPE] == ["fit", "check", "sweep"]
    assert COMMANDS["eval"].overrides == ("--eval.",) and COMMANDS["embed"].overrides == ("--data.",)
    line = ["--debug", "sweep", "--grid", "loss.args.temperature=0.1,0.2", "--trainer.max_epochs", "1", "--out", "d"]
    assert _split_line(line) == (["--debug", "sweep", "--grid", "loss.args.temperature=0.1,0.2", "--out", "d"],
                                 ["--trainer.max_epochs", "1"])
    assert _split_line(["eval", "runs/x", "--eval.knn_k", "5", "--json", "--disable-plugin", "eval"]) == (
        ["--disable-plugin", "eval", "eval", "runs/x", "--json"], ["--eval.knn_k", "5"])
    assert _split_line(["list", "--trainer.max_epochs", "1"]) == (["list", "--trainer.max_epochs", "1"], [])


def test_own_options_come_from_the_commands_arguments():
    assert own_options(COMMANDS["fit"]) == {"-h": False, "--help": False, "--recipe": True, "--config": True,
                                            "--print-config": False}


def test_output_to_a_closed_pipe_ends_quietly():
    """``contrastive list | head -1`` once head has exited: status 141 (as a shell reports a tool
    that SIGPIPE ended), no traceback, and no message from the interpreter's flush at exit."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "contrastive", "list"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300, cwd=ROOT)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (EXIT_CLOSED_PIPE, "")
