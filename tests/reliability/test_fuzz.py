"""Property-based fuzzing (hypothesis) of what users hand to contrastive: recipe files,
command-line overrides, image files, and webdataset shards (fuzzed samples, fuzzed shard files).  Every case ends in exit 0 or in exit 2 with one line on
stderr — never a traceback, a hang (each case runs under an alarm) or a file written outside
the run directory.  Bounded (a few dozen cases each, in-process) so the suite stays fast.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from contrastive.cli import main
from contrastive.components import datasets as ds
from contrastive.errors import ContrastiveError
from tests.helpers import tiny_recipe_dict

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
KEYS = ["seed", "data", "data.name", "data.args", "data.args.image_size", "method", "method.name", "method.args",
        "augmentation", "augmentation.0", "augmentation.0.args.size", "augmentation.1.args.p", "views",
        "backbone.name", "backbone.args", "backbone.args.checkpoint_path", "head.args.out_dim", "loss",
        "loss.args.temperature", "optimizer.args.lr", "scheduler.args.warmup_epochs", "predictor",
        "trainer", "trainer.batch_size", "trainer.max_epochs", "trainer.resume", "trainer.output_dir",
        "trainer.preempt_signals", "trainer.collective_timeout", "trainer.accumulate", "eval", "eval.protocols",
        "eval.knn_k", "eval.test_data", "nonsense", "trainer.nonsense", "ünïcødé.ключ"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["auto", "", "../../etc/passwd", "/dev/zero", "ntxent", "resnet18", "1e999", "-0", "nan", "🙂" * 5]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


@contextlib.contextmanager
def alarm(seconds: int = 60):
    """A hang becomes a failure."""
    def timeout(signum, frame):
        raise AssertionError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with alarm(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_clean_exit(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def set_path(recipe: dict, dotted: str, value) -> None:
    node = recipe
    parts = dotted.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            index = int(part) if part.isdigit() else 0
            if index >= len(node):
                return
            node = node[index]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        else:
            return
    if isinstance(node, dict):
        node[parts[-1]] = value
    elif isinstance(node, list) and parts[-1].isdigit() and int(parts[-1]) < len(node):
        node[int(parts[-1])] = value


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory whose contents are compared before and after each case."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD", "1")
    return tmp_path


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4),
       command=st.sampled_from(["check", "fit-print"]))
def test_fuzzed_recipe_files(sandbox, edits, command):
    recipe = tiny_recipe_dict(str(sandbox / "run"))
    for key, value in edits:
        set_path(recipe, key, value)
    path = sandbox / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    before = files_under(sandbox)
    argv = ["check", "--recipe", str(path)] if command == "check" else ["fit", "--recipe", str(path), "--print_config"]
    code, _, err = run_cli(argv)
    assert_clean_exit(code, err)
    assert files_under(sandbox) == before  # check and --print_config write nothing


@FUZZ
@given(text=st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.sampled_from([
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ntrainer: {batch_size: *d}\n",
        "trainer: &t {batch_size: 8}\neval: *t\n", "x: !!python/object/apply:os.system ['echo hacked']\n",
        "seed: 0\n" * 3, "[1, 2", "{", "---\n---\n", "\t: :", "seed: 99999999999999999999999999999999\n",
    ]),
))
def test_fuzzed_recipe_text(sandbox, text):
    path = sandbox / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = files_under(sandbox)
    code, _, err = run_cli(["check", "--recipe", str(path)])
    assert_clean_exit(code, err)
    assert files_under(sandbox) == before


TOKENS = st.one_of(st.sampled_from(KEYS).map(lambda k: f"--{k}"), st.text(max_size=12),
                   st.sampled_from(["--", "-", "--=", "--a.b=c", "--trainer.resume=auto", "--recipe", "--debug=no"]))


@FUZZ
@given(tokens=st.lists(TOKENS, max_size=6))
def test_fuzzed_command_line_overrides(sandbox, tokens):
    before = files_under(sandbox)
    code, _, err = run_cli(["check", *tokens])
    assert_clean_exit(code, err)
    assert files_under(sandbox) == before


def png(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG that declares ``width`` x ``height`` (a decompression bomb when large) with ``body`` as its data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


def valid_image_bytes(kind: str) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=kind)
    return buffer.getvalue()


IMAGE_BYTES = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"]), st.floats(0, 1)).map(
        lambda t: valid_image_bytes(t[0])[: max(1, int(len(valid_image_bytes(t[0])) * t[1]))]),  # truncated
    st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1), st.binary(max_size=64)).map(lambda t: png(*t)),
)


@FUZZ
@given(blob=IMAGE_BYTES, suffix=st.sampled_from([".png", ".jpg", ".jpeg", ".bmp", ".tif", ".webp", ".gif"]),
       strict=st.booleans())
def test_fuzzed_image_files(tmp_path_factory, blob, suffix, strict):
    root = tmp_path_factory.mktemp("images")
    (root / "good.png").write_bytes(valid_image_bytes("PNG"))
    (root / f"fuzzed{suffix}").write_bytes(blob)
    before = files_under(root)
    with alarm(), contextlib.redirect_stderr(io.StringIO()):
        try:
            data = ds.ImageFolderDataset(root=str(root), image_size=8, strict=strict)
            for index in range(len(data)):
                image, _ = data[index]
                assert tuple(image.shape) == (3, 8, 8)
        except ContrastiveError as exc:  # the CLI's one-line exit 2
            assert "\n" not in str(exc).strip() and str(exc)
    assert files_under(root) == before
    assert not any(p.name.startswith("fuzzed") and p.suffix != suffix for p in root.iterdir())


def write_shard(path: Path, samples: list[dict]) -> Path:
    import webdataset as wds

    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def read_stream(urls: str, strict: bool) -> None:
    """Build the webdataset stream and read one epoch: every item (3, 8, 8) uint8, or a one-line error."""
    try:
        data = ds.webdataset(urls, image_size=8, strict=strict)
        for image, label, index, _ in data:
            assert tuple(image.shape) == (3, 8, 8) and isinstance(label, int) and index >= 0
    except ContrastiveError as exc:  # the CLI's one-line exit 2
        assert "\n" not in str(exc).strip() and str(exc)


@FUZZ
@given(blob=IMAGE_BYTES, field=st.sampled_from(["png", "jpg", "jpeg", "bmp", "tif", "webp", "gif"]),
       cls=st.one_of(st.none(), st.binary(max_size=8)), strict=st.booleans())
def test_fuzzed_samples_in_a_shard(tmp_path_factory, blob, field, cls, strict):
    root = tmp_path_factory.mktemp("shards")
    fuzzed = {"__key__": "000001", field: blob, **({"cls": cls} if cls is not None else {})}
    write_shard(root / "s-0.tar", [{"__key__": "000000", "png": valid_image_bytes("PNG"), "cls": b"1"}, fuzzed])
    before = files_under(root)
    with alarm(), contextlib.redirect_stderr(io.StringIO()):
        read_stream(str(root / "s-0.tar"), strict)
    assert files_under(root) == before


@FUZZ
@given(blob=st.one_of(st.binary(max_size=2000), st.floats(0, 1)), strict=st.booleans())
def test_fuzzed_shard_files(tmp_path_factory, blob, strict):
    """A shard file of random bytes, or a valid shard cut anywhere, beside a good one."""
    root = tmp_path_factory.mktemp("shards")
    write_shard(root / "s-0.tar", [{"__key__": "000000", "png": valid_image_bytes("PNG")}])
    if isinstance(blob, float):
        whole = write_shard(root / "s-1.tar", [{"__key__": f"{i:06d}", "png": valid_image_bytes("PNG")}
                                               for i in range(3)]).read_bytes()
        blob = whole[: int(len(whole) * blob)]
    (root / "s-1.tar").write_bytes(blob)
    before = files_under(root)
    with alarm(), contextlib.redirect_stderr(io.StringIO()):
        read_stream(str(root / "s-{0..1}.tar"), strict)
    assert files_under(root) == before


def test_the_fuzz_suite_covers_decompression_bombs():
    """(A fixed case beside the random ones:) a PNG declaring 2^31 x 2^31 pixels is refused, not decoded."""
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"bomb-{os.getpid()}"
    root.mkdir(exist_ok=True)
    (root / "good.png").write_bytes(valid_image_bytes("PNG"))
    (root / "bomb.png").write_bytes(png(2**31 - 1, 2**31 - 1))
    with alarm(), contextlib.redirect_stderr(io.StringIO()):
        data = ds.ImageFolderDataset(root=str(root), image_size=8)
        images = [data[i][0] for i in range(len(data))]
    assert data.skipped_files["count"] == 1 and all(tuple(i.shape) == (3, 8, 8) for i in images)
