"""Test helpers shared across test modules (import them: ``from tests.helpers import tiny_recipe_dict``)."""

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from contrastive.testing.methods import method_grad_cache_step  # noqa: F401  (tests import it from here)


def tiny_recipe_dict(output_dir: str, **trainer) -> dict:
    """A recipe that trains in seconds on the CPU: digits at 16 px, resnet10t-sized model."""
    return {
        "seed": 0,
        "data": {"name": "digits", "args": {"image_size": 16}},
        "augmentation": [
            {"name": "random_resized_crop", "args": {"size": 16, "scale": [0.5, 1.0]}},
            {"name": "horizontal_flip", "args": {"p": 0.5}},
            {"name": "color_jitter", "args": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0, "p": 0.8}},
        ],
        "backbone": {"name": "resnet18", "args": {"cifar_stem": True}},
        "head": {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16, "num_layers": 2}},
        "loss": {"name": "ntxent", "args": {"temperature": 0.5}},
        "optimizer": {"name": "sgd", "args": {"lr": 0.05, "lr_scaling": "none", "weight_decay": 1e-4}},
        "scheduler": {"name": "warmup_cosine", "args": {"warmup_epochs": 0}},
        "trainer": {"max_epochs": 1, "max_steps": 4, "batch_size": 16, "output_dir": output_dir,
                    "progress": False, "log_every": 1, **trainer},
        "eval": {"protocols": []},  # evaluation has its own tests (tests/evaluation)
        "report": False,  # so has the report (tests/evaluation/test_report.py)
    }


def write_distribution(root: Path, source: str, *, dist: str, package: str, entry_point: str, version: str = "0.1.0"):
    """Fake an installed distribution in ``root`` (a folder on ``sys.path``): a package whose
    ``plugin`` module is ``source`` and a dist-info naming it as a plugin of contrastive."""
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "plugin.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[contrastive]\n{entry_point} = {package}.plugin\n")


class Pool(nn.Module):
    """(N, C, H, W) -> (N, C·2): mean and max over the pixels (no batch statistics); a backbone."""

    num_features = 6

    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class Head(nn.Linear):
    """A linear head with the ``out_dim`` attribute methods read."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, out_dim)
        self.out_dim = out_dim


def assert_resume_is_exact(out: Path, copy: Path, rerun: Callable[[Path], object], step: int = 4) -> None:
    """Copy the finished run ``out`` to ``copy``, delete its step-``step`` checkpoint and
    backbone.safetensors, ``rerun(copy)`` with resume on, and require that checkpoint's
    model.safetensors (the whole method state) and backbone.safetensors bit for bit."""
    checkpoint = f"checkpoints/step_{step:09d}"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / checkpoint)
    (copy / "backbone.safetensors").unlink()
    rerun(copy)
    for name in (f"{checkpoint}/model.safetensors", "backbone.safetensors"):
        left, right = load_file(str(out / name)), load_file(str(copy / name))
        assert left.keys() == right.keys(), name
        differ = [k for k in left if not torch.equal(left[k].reshape(-1).view(torch.uint8),
                                                        right[k].reshape(-1).view(torch.uint8))]
        assert not differ, (name, differ)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ranks(args: list[str], world: int = 2, logs: list[Path] | None = None, **popen) -> list[subprocess.Popen]:
    """``python -m contrastive ARGS`` in ``world`` processes, started as torchrun starts them
    (the environment variables of ``env://``), without torchrun's agent process; with ``logs``,
    rank r's stdout and stderr go to ``logs[r]``."""
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = {
            **os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port, "WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world),
        }
        if logs is not None:
            with open(logs[rank], "w") as log:  # the child keeps its own copy of the descriptor
                procs.append(subprocess.Popen([sys.executable, "-m", "contrastive", *args], env=env, stdout=log,
                                              stderr=subprocess.STDOUT))
        else:
            procs.append(subprocess.Popen([sys.executable, "-m", "contrastive", *args], env=env, **popen))
    return procs


def run_ranks(args: list[str], world: int = 2, timeout: float = 300) -> tuple[int, str]:
    """:func:`start_ranks` to the end: the largest exit status and every rank's output."""
    procs = start_ranks(args, world, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
    return max(abs(p.returncode) for p in procs), "\n".join(outputs)


def _gloo_worker(rank: int, fn: Callable, args: tuple, worlds: tuple[int, ...], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    for world in sorted(worlds, reverse=True):  # one spawn for every size: starting Python + torch is the slow part
        if rank >= world:
            return
        torch.distributed.init_process_group(
            "gloo", init_method=f"file://{tmp_path / f'init{world}'}", rank=rank, world_size=world
        )
        try:
            torch.save(fn(rank, world, *args), tmp_path / f"world{world}_rank{rank}.pt")
        finally:
            torch.distributed.destroy_process_group()


def run_gloo(fn: Callable, *args, worlds: tuple[int, ...] = (2,), tmp_path: Path) -> dict[int, list]:
    """``fn(rank, world, *args)`` in gloo process groups of each size of ``worlds``, from one spawn of
    ``max(worlds)`` CPU processes (ranks 0..w-1 form the group of w); ``{world: [rank 0's result, ...]}``.
    ``fn`` must be a module-level function (spawn pickles it) returning what ``torch.save`` writes."""
    torch.multiprocessing.start_processes(_gloo_worker, args=(fn, args, tuple(worlds), tmp_path),
                                          nprocs=max(worlds), start_method="spawn")
    return {w: [torch.load(tmp_path / f"world{w}_rank{r}.pt") for r in range(w)] for w in worlds}


def image_folder(root: Path, classes: tuple[str, ...] = ("a", "b", "c"), per_class: int = 16, seed: int = 0) -> Path:
    """A folder of small pictures, ``per_class`` in each class sub-folder (PNG and JPEG, 18-30 px,
    each class its own colour); ``classes=()``: ``per_class`` pictures directly in ``root`` (no labels)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes or ("",)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (18 + i % 7, 20 + (3 * i) % 11, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels).save(folder / f"{name or 'img'}_{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


def photo_folder(root: Path, count: int, height: int, width: int, seed: int = 0) -> Path:
    """A flat folder (no labels) of ``count`` random-noise RGB PNGs of ``height`` x ``width``, sorted by name."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / f"img{i:03d}.png")
    return root


def shard_folder(folder: Path, out: Path, **options) -> dict:
    """``contrastive shard FOLDER OUT`` (:func:`contrastive.tools.shard_writer.write_shards`)."""
    from contrastive.tools.shard_writer import write_shards

    return write_shards(str(folder), str(out), **options)


def load_benchmark(name: str):
    """The module ``benchmarks/NAME.py`` (not a package: loaded from its file), for tests of the scripts."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
