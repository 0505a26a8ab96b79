"""Tar shards as a source of samples: which shards a ``urls`` setting names (`resolve_shards`),
how many samples each holds (the ``shards.json`` index ``contrastive shard`` writes, or a scan of
local tar headers), and the samples of one shard with their encoded image bytes (`read_shard`).

Reading goes through the ``webdataset`` package (optional: ``pip install webdataset``): brace
patterns and ``::`` lists (``expand_urls``), every URL scheme of its ``gopen`` (local paths,
``file:``, ``http(s)://`` and ``gs://`` through curl / gsutil without a shell, ``pipe:`` only when
the user allows it: `contrastive.recipe.trust`), and its tar-to-sample grouping (files sharing a
basename up to the first dot form one sample: ``000017.jpg`` + ``000017.cls``).  Nothing is
decoded here.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from contrastive.errors import DataError, InvalidArgumentsError
from contrastive.recipe.trust import refuse_pipes

INSTALL = "pip install webdataset (or pip install 'contrastive-ssl[wds]')"
#: The index ``contrastive shard`` writes beside its shards.
INDEX_NAME = "shards.json"
INDEX_FORMAT = "contrastive-shards"
#: Sample fields read as the image, in this order of preference (webdataset names fields by extension).
IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
#: Ids of samples of shards whose size is unknown: shard number × this + position in the shard.
UNKNOWN_SHARD_STRIDE = 2**32


def import_webdataset():
    """The ``webdataset`` module, or a one-line [`DataError`][contrastive.errors.DataError] saying how to install it."""
    try:
        import webdataset
    except ImportError as exc:
        raise DataError(f"the webdataset dataset needs the webdataset package, which is not installed: {INSTALL}") from exc
    return webdataset


@dataclass
class Shard:
    """One tar shard: its ``url``, its ``number`` (position in the expanded ``urls``), the number
    of ``samples`` (with an image) and of those ``labelled`` (with a ``cls`` field) when known, and
    ``offset``: the id of its first sample (the samples of the shards before it; None: unknown)."""

    url: str
    number: int
    samples: int | None = None
    labelled: int | None = None
    offset: int | None = None

    def sample_id(self, position: int) -> int:
        """The stable id of the shard's sample ``position`` (0-based, among its samples with an image):
        ``offset + position`` when sizes are known, else ``number × 2**32 + position``."""
        if self.offset is not None:
            return self.offset + position
        return self.number * UNKNOWN_SHARD_STRIDE + position


@dataclass
class ShardSet:
    """The shards a ``urls`` setting names, with what is known about them.

    ``classes``: class names from the index (None: unknown or no labels); ``index``: the index
    file the sizes came from (None: scanned or unknown); ``damaged``: ``"url: why"`` for shards
    found empty or unreadable while counting."""

    shards: list[Shard]
    classes: list[str] | None = None
    index: str | None = None
    damaged: list[str] | None = None

    @property
    def total(self) -> int | None:
        """Samples in all shards (None when a shard's size is unknown)."""
        if any(s.samples is None for s in self.shards):
            return None
        return sum(s.samples for s in self.shards)

    @property
    def labelled(self) -> int | None:
        if any(s.labelled is None for s in self.shards):
            return None
        return sum(s.labelled for s in self.shards)


def is_local(url: str) -> bool:
    """A path or ``file:`` URL (read with ``open``), as opposed to a URL webdataset fetches."""
    return url.startswith("file:") or "://" not in url and not url.startswith("pipe:")


def local_path(url: str) -> str:
    if url.startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return url2pathname(urlparse(url).path)
    return os.path.expanduser(url)


def shard_name(url: str) -> str:
    """The shard's file name in ``url`` (what ``shards.json`` lists): the basename of a local path,
    else the last ``NAME.tar`` (``.tar.gz`` ...) in it (``https://host/x/train-000001.tar?sig=...``,
    ``pipe:aws s3 cp s3://bucket/train-000001.tar -``)."""
    if is_local(url):
        return os.path.basename(local_path(url))
    found = re.findall(r"[^/\s'\"?=&]+\.tar(?:\.(?:gz|bz2|xz|zst))?", url)
    return found[-1] if found else url


def expand_urls(urls: str | list[str], what: str) -> list[str]:
    """Every shard URL of ``urls``: a string with brace patterns (``train-{0000..0099}.tar``) and
    ``::`` separators, or a list of such strings, expanded by webdataset in order; ``pipe:`` URLs
    refused unless allowed (`contrastive.recipe.trust.refuse_pipes`)."""
    wds = import_webdataset()
    items = [urls] if isinstance(urls, str) else list(urls) if isinstance(urls, (list, tuple)) else None
    if not items or not all(isinstance(u, str) and u.strip() for u in items):
        raise InvalidArgumentsError(f"{what} must be a shard path or URL pattern (or a list of them), got {urls!r}")
    expanded: list[str] = []
    for item in items:
        try:
            expanded.extend(wds.shardlists.expand_urls(item.strip()))
        except (AssertionError, ValueError) as exc:  # a ${VAR} without its WDS_VAR, a bad brace pattern
            raise DataError(f"{what}: cannot expand {item!r}: {exc}") from None
    refuse_pipes(expanded, what)
    return expanded


def find_index(shards: list[str], index: str | None) -> str | None:
    if index is not None:
        path = os.path.expanduser(index)
        if os.path.isdir(path):
            path = os.path.join(path, INDEX_NAME)
        if not os.path.isfile(path):
            raise DataError(f"webdataset: index {index} does not exist; pass --data.args.index the {INDEX_NAME} "
                            f"that `contrastive shard` wrote beside the shards, or leave it out")
        return path
    if shards and is_local(shards[0]):
        beside = os.path.join(os.path.dirname(local_path(shards[0])) or ".", INDEX_NAME)
        return beside if os.path.isfile(beside) else None
    return None


def read_index(path: str) -> dict[str, Any]:
    """The ``shards.json`` at ``path`` (`contrastive.tools.shard_writer.write_shards` writes it)."""
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"webdataset: cannot read the shard index {path}: {exc}; delete it or write the shards "
                        f"again with `contrastive shard`") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("splits"), dict):
        raise DataError(f"webdataset: {path} is not a shard index written by `contrastive shard` (format "
                        f"'{INDEX_FORMAT}'); delete it or pass --data.args.samples_per_epoch")
    return index


def index_entries(index: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Shard file name -> ``{"samples", "labelled", "split"}`` over every split of ``index``."""
    found = {}
    for split, entries in index["splits"].items():
        for entry in entries:
            found[entry["name"]] = {**entry, "split": split}
    return found


def index_split(index_path: str, split: str) -> list[str]:
    """The paths of the shards of ``split`` (``train`` / ``test``) in the index at ``index_path``."""
    folder = os.path.dirname(index_path)
    return [os.path.join(folder, e["name"]) for e in read_index(index_path)["splits"].get(split, [])]


def one_line(exc: object) -> str:
    """An error's text on one line (tarfile lists each compression it tried on a line of its own)."""
    text = " ".join(str(exc).split())
    tried = re.search(r"- method tar: (.*)$", text)  # tarfile.open(mode "r:*"): the plain-tar attempt says why
    return tried.group(1) if tried else text


def count_samples(path: str) -> tuple[int, int, str | None]:
    """``(samples, labelled, problem)`` of the local tar at ``path``, from its member headers
    (nothing decoded): samples with an image field, those with a ``cls`` field too, and why the
    file is empty or unreadable (None: it is fine; the counts then hold what came before the damage)."""
    from webdataset.tariterators import base_plus_ext

    samples = labelled = 0
    current, fields = None, set()

    def close_sample():
        nonlocal samples, labelled
        if current is not None and fields & set(IMAGE_FIELDS):
            samples += 1
            labelled += "cls" in fields

    if os.path.getsize(path) == 0:
        return 0, 0, "an empty (zero-byte) file"
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isreg():
                    continue
                key, ext = base_plus_ext(member.name)
                if key is None:
                    continue
                if key != current:
                    close_sample()
                    current, fields = key, set()
                fields.add(ext.lower())
    except (tarfile.TarError, OSError, EOFError) as exc:
        close_sample()
        return samples, labelled, f"not a readable tar file ({type(exc).__name__}: {one_line(exc)})"
    close_sample()
    return samples, labelled, None if samples else "a tar file with no image samples"


def resolve_shards(urls: str | list[str], what: str = "webdataset: urls", index: str | None = None,
                   strict: bool = False) -> ShardSet:
    """The shards of ``urls`` with their sizes: from the index (``index``, or ``shards.json`` beside
    local shards, when it lists every shard), else by scanning local tars' headers; remote shards
    without an index have unknown sizes.  Local shards must exist ([`DataError`][contrastive.errors.DataError] naming the
    missing ones); empty or unreadable local shards are reported in ``damaged`` (an error with
    ``strict``)."""
    expanded = expand_urls(urls, what)
    local = [u for u in expanded if is_local(u)]
    missing = [u for u in local if not os.path.isfile(local_path(u))]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        matched = f"none of the {len(expanded)}" if len(missing) == len(expanded) else f"{len(missing)} of the {len(expanded)}"
        raise DataError(
            f"{what}: {matched} shard(s) of {_show(urls)} exist ({shown} missing); check the path and the brace "
            f"pattern (e.g. 'shards/train-{{000000..000009}}.tar'), or write shards with `contrastive shard FOLDER OUT/`"
        )
    shards = [Shard(url, number) for number, url in enumerate(expanded)]
    result = ShardSet(shards, damaged=[])
    path = find_index(expanded, index)
    entries = index_entries(idx := read_index(path)) if path else {}
    names = [shard_name(u) for u in expanded]
    if path and all(n in entries for n in names):
        for shard, name in zip(shards, names, strict=True):
            shard.samples, shard.labelled = int(entries[name]["samples"]), int(entries[name]["labelled"])
        result.classes, result.index = idx.get("classes"), path
    elif len(local) == len(expanded):
        for shard in shards:
            shard.samples, shard.labelled, problem = count_samples(local_path(shard.url))
            if problem:
                if strict:
                    raise DataError(f"{what}: shard {shard.url} is {problem} [data.args.strict is true; set it false "
                                    f"to skip such shards]")
                result.damaged.append(f"{shard.url}: {problem}")
    if result.total is not None:
        offset = 0
        for shard in shards:
            shard.offset, offset = offset, offset + shard.samples
        if result.total == 0:
            raise DataError(f"{what}: the {len(shards)} shard(s) of {_show(urls)} hold no image samples "
                            f"({'; '.join(result.damaged[:3])}); write shards with `contrastive shard FOLDER OUT/`")
    return result


def _show(urls: str | list[str]) -> str:
    return repr(urls) if isinstance(urls, str) else f"{len(urls)} URLs ({urls[0]!r} ...)"


@dataclass
class RawSample:
    """One sample of a shard, not decoded: ``image`` the encoded bytes of its image field ``field``,
    ``label`` its ``cls`` (−1: none), ``name`` its ``path.txt`` field when it has one (the file it was
    written from), else ``url#key``; ``id`` its stable id (`Shard.sample_id`)."""

    id: int
    image: bytes
    field: str
    label: int
    name: str
    shard: int


def _label(value: bytes | None) -> int:
    if value is None:
        return -1
    try:
        return int(value.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return -1


def read_shard(shard: Shard, on_error: Callable[[str], None]) -> Iterator[RawSample]:
    """The samples of ``shard`` that have an image field, in the order they are stored.  A shard
    that cannot be opened or is damaged part-way calls ``on_error("url: why")`` once and ends
    there (the samples before the damage are kept)."""
    from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener

    reported = False

    def handler(exc: Exception) -> bool:
        nonlocal reported
        if not reported:
            reported = True
            cause = exc.args[0] if exc.args else exc
            on_error(f"{shard.url}: {type(exc).__name__}: {one_line(cause)}")
        return True  # go on (with what the stream still yields)

    streams = url_opener([{"url": shard.url}], handler=handler)
    files = tar_file_expander(streams, handler=handler)
    position = 0
    for sample in group_by_keys(files, handler=handler):
        field = next((f for f in IMAGE_FIELDS if isinstance(sample.get(f), bytes)), None)
        if field is None:
            continue
        path = sample.get("path.txt")
        name = path.decode("utf-8", "replace") if isinstance(path, bytes) else f"{shard.url}#{sample['__key__']}"
        yield RawSample(shard.sample_id(position), sample[field], field, _label(sample.get("cls")), name, shard.number)
        position += 1
