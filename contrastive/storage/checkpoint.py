"""Resumable training state on disk: atomic, verified, and free of pickles.

A checkpoint is a directory ``checkpoints/step_000001234/`` holding

* ``model.safetensors``     the (unwrapped) model's state dict;
* ``optimizer.safetensors`` the optimizer's tensors, ``optimizer.json`` the rest of its state;
* ``state.json``            epoch, step, scheduler/scaler state, Python and NumPy RNG states, the
  recipe's callbacks' states (``callbacks``, JSON; `callback_states`);
* ``manifest.json``         size and SHA-256 of every file above — written last.

It is written under a temporary name, fsynced, then renamed, so a kill never leaves a
directory that looks complete; loading verifies the manifest first.  Nothing here unpickles:
every file is read through `contrastive.storage.safeload` (safetensors and JSON only), so a
pickle planted in a checkpoint is refused without running.  A failure to restore any part
(model, optimizer, scheduler, AMP scaler, any process's RNG) raises [`TrainingError`][contrastive.errors.TrainingError].

Test hook (fault injection, ``tests/reliability``): with ``CONTRASTIVE_TEST_PAUSE_IN_SAVE=STEP:FILE``
in the environment, `save` for step ``STEP`` stops half-way — the model is written into
the temporary directory, nothing else — creates ``FILE`` and sleeps, so that a test can
SIGKILL the process in the middle of a checkpoint write.  Unset, it costs one dict lookup.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file, save_model

from contrastive.errors import DataError, TrainingError
from contrastive.storage import safeload

PREFIX = "step_"
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
#: Every checkpoint holds these files; the manifest must list each of them.
REQUIRED = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "state.json")
PAUSE_ENV = "CONTRASTIVE_TEST_PAUSE_IN_SAVE"


def _test_pause(step: int) -> None:
    """The fault-injection hook described in the module docstring."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    at, _, marker = spec.partition(":")
    if int(at) == step:
        Path(marker).write_text(str(os.getpid()))
        while True:  # until killed
            time.sleep(1)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- optimizer state <-> (tensors, JSON) ----------------------------------------------------
def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for param_id, entry in state_dict["state"].items():
        plain_state[str(param_id)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain_state[str(param_id)][key] = value
    return tensors, {"state": plain_state, "param_groups": state_dict["param_groups"]}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in plain["state"].items()}
    for name, tensor in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = tensor
    return {"state": state, "param_groups": plain["param_groups"]}


# -- RNG ------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), Python and NumPy RNG states as JSON-able data."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch_cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "torch_cuda": [],
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng`."""

    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()

    torch.set_rng_state(tensor(state["torch_cpu"]))
    if state["torch_cuda"]:
        if not torch.cuda.is_available():
            raise TrainingError("the checkpoint holds CUDA RNG states but no GPU is available to restore them")
        torch.cuda.set_rng_state_all([tensor(t) for t in state["torch_cuda"]])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# -- save / find / load ---------------------------------------------------------------------
def save(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    scheduler: Any = None,
    scaler: Any = None,
    rng_states: list[dict[str, Any]] | None = None,
    keep_last: int = 2,
    callbacks: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint for ``progress["global_step"]`` atomically; prune to ``keep_last``.

    ``rng_states`` holds `capture_rng` of every process, in rank order (default: this one's);
    ``callbacks`` the recipe's callbacks' ``state_dict`` by name (JSON values).
    """
    directory = Path(directory)
    final = directory / f"{PREFIX}{progress['global_step']:09d}"
    tmp = directory / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    old = directory / f"{TMP_PREFIX}old-{final.name}-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Leftovers of a killed writer (only one process ever writes a run's checkpoints).
        for stale in directory.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"))
        _test_pause(int(progress["global_step"]))
        tensors, plain = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(plain))
        state = {
            "progress": progress,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_states if rng_states is not None else [capture_rng()],
            "callbacks": callbacks or {},
        }
        (tmp / "state.json").write_text(json.dumps(state))
        files = sorted(p for p in tmp.iterdir() if p.is_file())
        for path in files:
            _fsync(path)
        manifest = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _fsync(tmp / MANIFEST)
        _fsync(tmp)
        if final.exists():  # the same step saved again: move the old copy aside, never delete first
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync(directory)
    except (OSError, SafetensorError) as exc:  # a full disk, a quota, a read-only file system
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        previous = [p.name for p in complete(directory)] if directory.is_dir() else []
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        raise TrainingError(
            f"could not write checkpoint {final}: {reason}; {kept} "
            f"(free disk space or change trainer.output_dir, then rerun with --trainer.resume true)"
        ) from exc
    shutil.rmtree(old, ignore_errors=True)
    for stale in complete(directory)[:-keep_last]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def complete(directory: str | Path) -> list[Path]:
    """Checkpoint directories with a manifest, oldest first (by step number, not mtime)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def verify(path: Path) -> str | None:
    """Return ``None`` when every file matches the manifest, else what is wrong.

    The manifest is read as JSON only, must list every file of `REQUIRED` by plain name
    (no paths), and each listed file must have the recorded size and SHA-256."""
    try:
        manifest = safeload.read_json(path / MANIFEST, what="checkpoint manifest")
    except DataError as exc:
        return f"unreadable manifest ({exc})"
    if not isinstance(manifest, dict):
        return "unreadable manifest (not a JSON object)"
    absent = [name for name in REQUIRED if name not in manifest]
    if absent:
        return f"the manifest does not list {', '.join(absent)}"
    for name, expected in manifest.items():
        if not isinstance(name, str) or name != Path(name).name or name.startswith("."):
            return f"the manifest names {name!r}, which is not a file of the checkpoint"
        if not isinstance(expected, dict) or not {"bytes", "sha256"} <= set(expected):
            return f"the manifest entry of {name} lacks its size or checksum"
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["bytes"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['bytes']}"
        if _sha256(file) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def newest_valid(directory: str | Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that verifies, and a note for each newer one that did not."""
    problems = []
    for path in reversed(complete(directory)):
        problem = verify(path)
        if problem is None:
            return path, problems
        problems.append(f"{path.name}: {problem}")
    return None, problems


def load(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any = None,
    scaler: Any = None,
    rank: int = 0,
    world_size: int | None = None,
) -> dict[str, Any]:
    """Restore everything `save` wrote (RNG: process ``rank``'s); returns ``progress``.

    Every file is read through `contrastive.storage.safeload` (no unpickling).  Any part that
    cannot be restored — a file refused or damaged, a model or optimizer that does not fit, a
    scheduler or AMP scaler present on one side only, a different number of processes
    (``world_size``) — raises [`TrainingError`][contrastive.errors.TrainingError]; nothing is skipped with a log line.
    """
    path = Path(path)
    try:
        tensors = safeload.read_tensors(path / "model.safetensors", what=f"checkpoint {path.name}")
        own = model.state_dict()
        missing = _missing(model, set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise TrainingError(
                f"checkpoint {path} does not fit this model (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}): was it written by a different recipe? Use a new trainer.output_dir"
            )
        model.load_state_dict(tensors, strict=False)
        state = safeload.read_json(path / "state.json", what=f"checkpoint {path.name}")
        if not isinstance(state, dict) or not {"progress", "scheduler", "scaler", "rng"} <= set(state):
            raise TrainingError(f"checkpoint {path}: state.json lacks progress, scheduler, scaler or rng")
        optimizer.load_state_dict(
            _join_optimizer_state(
                safeload.read_tensors(path / "optimizer.safetensors", what=f"checkpoint {path.name}"),
                safeload.read_json(path / "optimizer.json", what=f"checkpoint {path.name}"),
            )
        )
        if (scheduler is None) != (state["scheduler"] is None):
            raise TrainingError(
                f"checkpoint {path} {'has no' if scheduler is not None else 'has a'} learning-rate scheduler "
                f"state but this run {'has one' if scheduler is not None else 'has none'}: resume with the same recipe"
            )
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if (scaler is None) != (state["scaler"] is None):
            saved = "with" if state["scaler"] is not None else "without"
            raise TrainingError(
                f"checkpoint {path} was saved {saved} an fp16 AMP gradient scaler, this run is "
                f"{'' if scaler is not None else 'not '}using one: resume with the same trainer.mixed_precision"
            )
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        rng_states = state["rng"]
        if not isinstance(rng_states, list) or rank >= len(rng_states) or (
            world_size is not None and world_size != len(rng_states)
        ):
            count = len(rng_states) if isinstance(rng_states, list) else 0
            raise TrainingError(
                f"checkpoint {path} holds the random state of {count} process(es); this run has "
                f"{world_size if world_size is not None else f'more than {rank}'}: resume with {count} process(es)"
            )
        restore_rng(rng_states[rank])
        progress = state["progress"]
        if not isinstance(progress, dict) or not isinstance(progress.get("global_step"), int):
            raise TrainingError(f"checkpoint {path}: state.json has no valid progress record")
    except TrainingError:
        raise
    except DataError as exc:  # refused (a pickle) or damaged: safeload's message names the file
        raise TrainingError(f"could not restore checkpoint {path}: {exc}") from exc
    except (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError, AttributeError) as exc:
        raise TrainingError(f"could not restore checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return progress


def callback_states(path: str | Path) -> dict[str, Any]:
    """The callbacks' states a (verified) checkpoint holds, ``{}`` for one written without them."""
    path = Path(path)
    try:
        state = safeload.read_json(path / "state.json", what=f"checkpoint {path.name}")
    except DataError as exc:
        raise TrainingError(f"could not restore checkpoint {path}: {exc}") from exc
    found = state.get("callbacks") if isinstance(state, dict) else None
    if found is not None and not isinstance(found, dict):
        raise TrainingError(f"checkpoint {path}: state.json's callbacks is not a mapping of names to states")
    return found or {}


def _missing(model: torch.nn.Module, names: set[str]) -> list[str]:
    """State-dict names of ``model`` absent from ``names``; a name that shares storage with a
    present one (tied weights, which ``save_model`` writes once) is not missing."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.numel() else (id(tensor), 0)
        groups.setdefault(key, []).append(name)
    return sorted(n for group in groups.values() if not set(group) & names for n in group)
