"""The one safe way to read files that users or other programs hand us: nothing read here runs code.

Every weights file, checkpoint file and JSON state file that contrastive reads goes through
this module — ``backbone.args.checkpoint_path``, ``--trainer.resume`` (`contrastive.storage.checkpoint`),
and the run directory read by ``contrastive eval`` / ``contrastive embed``.

* `read_tensors` — a ``.safetensors`` file (a JSON header and raw bytes: no code at all).
* `read_state_dict` — weights in safetensors, or a ``torch.save`` file read with
  ``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which accepts tensors,
  plain containers and numbers and refuses every other Python object (the allow-list is
  PyTorch's default; we add nothing to it).  Only a mapping of names to tensors is returned.
* `read_json` — JSON only.
* `sniff` — what a file's first bytes say it is (``safetensors``, ``pickle``,
  ``torch-zip``, ``json``, ``empty`` or ``unknown``), without reading further.

Every failure raises `UnsafeFileError` (a file that holds a pickle where none may be,
or Python objects beyond tensors) or `UnreadableFileError` (missing, truncated, not the
expected format) — both [`contrastive.errors.DataError`][contrastive.errors.DataError], so the command line prints one
line and exits 2.  Messages name the file and what it was read for (``what``).
"""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contrastive.errors import DataError

__all__ = ["UnreadableFileError", "UnsafeFileError", "read_json", "read_state_dict", "read_tensors", "sniff"]

#: A safetensors header larger than this is refused (the format's own limit is 100 MB).
MAX_HEADER_BYTES = 100_000_000


class UnreadableFileError(DataError):
    """A file that is missing, damaged or not in the expected format."""


class UnsafeFileError(UnreadableFileError):
    """A file that would need unpickling arbitrary Python objects (code) to read: refused."""


def sniff(path: str | Path) -> str:
    """Classify ``path`` by its first bytes: ``safetensors``, ``pickle``, ``torch-zip``, ``json``,
    ``empty`` or ``unknown``.  Raises `UnreadableFileError` when it cannot be opened."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not head:
        return "empty"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:  # PROTO opcode + protocol 2..5
        return "pickle"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"  # torch.save's default format: a zip archive holding a pickle
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= MAX_HEADER_BYTES and head[8:9] == b"{":
            return "safetensors"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def _refuse_pickle(path: Path, kind: str, what: str, expected: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{what}: {path} is a {'Python pickle' if kind == 'pickle' else 'torch.save archive (a pickle)'}, "
        f"not {expected}; refusing to unpickle it (that could run arbitrary code; nothing was executed)"
    )


def read_tensors(path: str | Path, *, what: str = "tensors", device: str = "cpu") -> dict[str, Any]:
    """Read a safetensors file into ``{name: tensor}`` on ``device``; anything else is refused."""
    from safetensors.torch import load_file

    path = Path(path)
    kind = sniff(path)
    if kind in ("pickle", "torch-zip"):
        raise _refuse_pickle(path, kind, what, "a safetensors file")
    if kind != "safetensors":
        raise UnreadableFileError(f"{what}: {path} is not a safetensors file ({kind}: damaged or replaced?)")
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # SafetensorError, OSError, ...: the format holds no code, only damage
        raise UnreadableFileError(f"{what}: {path} is a damaged safetensors file: {exc}") from exc


def read_state_dict(path: str | Path, *, what: str = "weights") -> dict[str, Any]:
    """Read a weights file into ``{name: tensor}`` (CPU): safetensors, or a ``torch.save`` file
    through ``torch.load(weights_only=True)``.  A dict holding the state dict under
    ``state_dict`` or ``model`` is unwrapped; anything but string keys and tensor values is an
    error."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{what}: {path} does not exist or is not a file")
    kind = sniff(path)
    if kind == "safetensors" or path.suffix == ".safetensors":
        return read_tensors(path, what=what)
    if kind not in ("pickle", "torch-zip"):
        raise UnreadableFileError(
            f"{what}: {path} is neither a safetensors file nor a torch.save file ({kind}); "
            f"expected weights in .safetensors (preferred) or a torch.save'd state dict"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it does not expect
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if type(exc).__name__ == "UnpicklingError" or "weights_only" in str(exc).lower():
            raise UnsafeFileError(
                f"{what}: {path} holds Python objects other than tensors, which could run code when "
                f"unpickled; refused (nothing was executed). Re-save only the state dict, preferably "
                f"with safetensors: safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
            ) from exc
        raise UnreadableFileError(f"{what}: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    state = _state_dict_of(loaded)
    if state is None:
        raise UnreadableFileError(
            f"{what}: {path} holds no state dict (expected a dict of tensors, or a dict with a "
            f"'state_dict' or 'model' entry holding one)"
        )
    return state


def _state_dict_of(loaded: Any) -> dict[str, Any] | None:
    import torch

    if not isinstance(loaded, Mapping):
        return None
    for key in ("state_dict", "model"):
        inner = loaded.get(key)
        if isinstance(inner, Mapping):
            loaded = inner
            break
    if not loaded or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in loaded.items()):
        return None
    return dict(loaded)


def read_json(path: str | Path, *, what: str = "state") -> Any:
    """Parse a JSON file; a pickle (or anything else) in its place is refused."""
    path = Path(path)
    kind = sniff(path)
    if kind in ("pickle", "torch-zip"):
        raise _refuse_pickle(path, kind, what, "JSON")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableFileError(f"{what}: {path} is not valid JSON ({exc}); damaged or replaced?") from exc
