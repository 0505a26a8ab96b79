"""Resumable training state on disk: atomic, verified, and free of pickles.

A checkpoint is a directory ``checkpoints/step_000001234/`` holding

* ``model.safetensors``     the (unwrapped) model's state dict;
* ``optimizer.safetensors`` the optimizer's tensors, ``optimizer.json`` the rest of its state;
* ``state.json``            epoch, step, scheduler/scaler state, Python and NumPy RNG states;
* ``manifest.json``         size and SHA-256 of every file above — written last.

It is written under a temporary name, fsynced, then renamed, so a kill never leaves a
directory that looks complete; loading verifies the manifest first.  Nothing here unpickles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from contrastive.errors import TrainingError

PREFIX = "step_"
MANIFEST = "manifest.json"


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
    """Inverse of :func:`capture_rng`."""

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
) -> Path:
    """Write a checkpoint for ``progress["global_step"]`` atomically; prune to ``keep_last``.

    ``rng_states`` holds :func:`capture_rng` of every process, in rank order (default: this one's).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{progress['global_step']:09d}"
    tmp = directory / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, plain = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(plain))
        state = {
            "progress": progress,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_states if rng_states is not None else [capture_rng()],
        }
        (tmp / "state.json").write_text(json.dumps(state))
        files = sorted(p for p in tmp.iterdir() if p.is_file())
        for path in files:
            _fsync(path)
        manifest = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _fsync(tmp / MANIFEST)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(directory)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TrainingError(
            f"could not write checkpoint {final}: {exc.strerror or exc}; the previous checkpoint is intact "
            f"(free disk space or change trainer.output_dir, then rerun with --trainer.resume true)"
        ) from exc
    for old in complete(directory)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(directory: str | Path) -> list[Path]:
    """Checkpoint directories with a manifest, oldest first (by step number, not mtime)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def verify(path: Path) -> str | None:
    """Return ``None`` when every file matches the manifest, else what is wrong."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    for name, expected in manifest.items():
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
) -> dict[str, Any]:
    """Restore everything :func:`save` wrote (RNG: process ``rank``'s); returns ``progress``."""
    path = Path(path)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise TrainingError(
                f"checkpoint {path} does not fit this model (missing {sorted(missing)[:3]}, unexpected "
                f"{sorted(unexpected)[:3]}): was it written by a different recipe? Use a new trainer.output_dir"
            )
        state = json.loads((path / "state.json").read_text())
        optimizer.load_state_dict(
            _join_optimizer_state(
                load_file(str(path / "optimizer.safetensors")), json.loads((path / "optimizer.json").read_text())
            )
        )
        if scheduler is not None:
            if state["scheduler"] is None:
                raise TrainingError(f"checkpoint {path} has no scheduler state")
            scheduler.load_state_dict(state["scheduler"])
        if scaler is not None:
            if state["scaler"] is None:
                raise TrainingError(f"checkpoint {path} has no AMP scaler state (it was saved without fp16)")
            scaler.load_state_dict(state["scaler"])
        rng_states = state["rng"]
        if rank >= len(rng_states):
            raise TrainingError(
                f"checkpoint {path} was written by {len(rng_states)} process(es); resuming it with more "
                f"cannot restore the random state of process {rank}: resume with {len(rng_states)} process(es)"
            )
        restore_rng(rng_states[rank])
    except TrainingError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise TrainingError(f"could not restore checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return state["progress"]
