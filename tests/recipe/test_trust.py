"""No recipe runs code: webdataset ``pipe:`` URLs run only when the user allows them on the command
line (``--allow-pipe``, anywhere on the line) or in the environment (``CONTRASTIVE_ALLOW_PIPE=1``);
otherwise one line saying how.  A recipe has no key for it."""

from __future__ import annotations

import pytest

from contrastive.cli import main
from contrastive.errors import DataError
from contrastive.recipe.trust import ALLOW_PIPE_ENV, pipe_allowed, refuse_pipes
from tests.helpers import image_folder, shard_folder


@pytest.fixture()
def not_allowed(monkeypatch):
    monkeypatch.setenv(ALLOW_PIPE_ENV, "0")  # restored after the test, whatever --allow-pipe set


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("trust")
    shard_folder(image_folder(base / "folder", per_class=4), base / "shards", shard_size=6)
    return base / "shards"


def check(shards, *extra):
    pipe = f"pipe:cat {shards}/train-00000{{0..1}}.tar"
    return ["check", "--recipe", "simclr_folder", "--data.name", "webdataset", "--data.args.urls", pipe,
            "--data.args.index", str(shards / "shards.json"), "--backbone.name", "test_resnet", *extra]


def test_refuse_pipes(not_allowed, monkeypatch):
    refuse_pipes(["a.tar", "https://host/b.tar", "file:c.tar"], "urls")  # no command: fine
    with pytest.raises(DataError, match=r"^urls: 'pipe:curl x' is a pipe: URL.*--allow-pipe.*CONTRASTIVE_ALLOW_PIPE=1"):
        refuse_pipes(["a.tar", "pipe:curl x"], "urls")
    for value, allowed in (("1", True), ("true", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(ALLOW_PIPE_ENV, value)
        assert pipe_allowed() is allowed


def test_pipe_urls_are_refused_without_the_users_opt_in(shards, not_allowed, capsys):
    assert main(check(shards)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a pipe: URL" in err and "--allow-pipe" in err
    assert main(check(shards, "--data.args.allow_pipe", "true")) == 2  # no recipe key can allow it
    assert "no argument 'allow_pipe'" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_allow_pipe_on_the_command_line(shards, not_allowed, capsys, where):
    args = ["--allow-pipe", *check(shards)] if where == "before" else [*check(shards), "--allow-pipe"]
    assert main(args) == 0, capsys.readouterr().err
    assert "recipe OK" in capsys.readouterr().out


def test_allow_pipe_in_the_environment(shards, monkeypatch, capsys):
    monkeypatch.setenv(ALLOW_PIPE_ENV, "1")
    assert main(check(shards)) == 0, capsys.readouterr().err
