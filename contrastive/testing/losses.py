"""The loss contract, checked: [`check_loss`][contrastive.testing.losses.check_loss].

A loss (``registries.losses``) is an ``nn.Module`` called as ``loss(z_a, z_b)`` on two ``(B, D)``
float tensors, row i of each being two views of sample i, returning a scalar.  The rules:

1. **shape** — a 0-d float tensor, for several batch sizes and widths;
2. **finite** — on random embeddings, on perfect positives (``z_b == z_a``) and on collapsed
   ones (every row the same), the value is finite;
3. **differentiable** — gradients reach ``z_a`` and ``z_b``, finite and not all zero;
4. **2 processes equal 1** — the mean of the values two gloo processes compute on their halves of
   the batch equals the value of one process on the whole batch (negatives come from every
   process: gather them with ``contrastive.distributed``; a loss without negatives passes as is).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from contrastive.registry import Registries

BATCH, DIM = 8, 16  # even: two halves, two ranks


def _fail(name: str, rule: str, detail: str) -> None:
    raise AssertionError(f"loss '{name}' breaks the loss contract ({rule}): {detail}")


def _embeddings(batch: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z_a = torch.randn(batch, dim, generator=generator)
    return z_a, z_a + 0.5 * torch.randn(batch, dim, generator=generator)  # correlated views, as in training


def _value(name: str, loss, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    try:
        value = loss(z_a, z_b)
    except Exception as exc:  # noqa: BLE001  named, with the inputs' shapes
        _fail(name, "shape", f"raised {type(exc).__name__}: {exc} on inputs of shape {tuple(z_a.shape)}")
    if not isinstance(value, torch.Tensor) or value.ndim != 0 or not value.is_floating_point():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        _fail(name, "shape", f"returned {shape} for inputs {tuple(z_a.shape)}; a loss returns a 0-d float tensor")
    return value


def check_loss(name: str, *, registries: Registries | None=None, processes: bool = True, **args: Any) -> None:
    """Check the loss registered as ``name``, built with ``args``, against the rules of this module
    (``processes=False``: skip rule 4, which starts two processes)."""
    import contrastive

    registries = registries if registries is not None else contrastive.load_registries()
    factory = registries.losses.get(name)
    torch.manual_seed(0)
    loss = registries.losses.build(name, **args)
    for batch, dim in ((BATCH, DIM), (4, 3), (16, 128)):
        _value(name, loss, *_embeddings(batch, dim, seed=batch + dim))
    z_a, z_b = _embeddings(BATCH, DIM, seed=0)
    cases = {"random embeddings": (z_a, z_b), "perfect positives": (z_a, z_a.clone()),
             "collapsed embeddings": (torch.ones(BATCH, DIM), torch.ones(BATCH, DIM))}
    for case, (a, b) in cases.items():
        value = _value(name, loss, a, b)
        if not math.isfinite(value.item()):
            _fail(name, "finite", f"{value.item()} on {case}")
    a, b = z_a.clone().requires_grad_(True), z_b.clone().requires_grad_(True)
    value = _value(name, loss, a, b)
    if not value.requires_grad:
        _fail(name, "differentiable", "the value has no autograd graph to its inputs (detached?)")
    value.backward()
    for which, tensor in (("z_a", a), ("z_b", b)):
        if tensor.grad is None or not torch.isfinite(tensor.grad).all() or not tensor.grad.abs().sum() > 0:
            _fail(name, "differentiable", f"the gradient of {which} is missing, non-finite or zero")
    if processes:
        _check_two_processes(name, factory, args, z_a, z_b, _value(name, loss, z_a, z_b).item())


def _two_process_worker(rank: int, world: int, factory, args: dict, z_a, z_b, folder: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        n = z_a.shape[0] // world
        value = factory(**args)(z_a[rank * n:(rank + 1) * n], z_b[rank * n:(rank + 1) * n])
        torch.save(float(value), Path(folder) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _check_two_processes(name: str, factory, args: dict, z_a, z_b, whole: float, world: int = 2) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.multiprocessing.start_processes(_two_process_worker, args=(world, factory, args, z_a, z_b, folder),
                                              nprocs=world, start_method="spawn")
        values = [torch.load(Path(folder) / f"rank{r}.pt") for r in range(world)]
    mean = sum(values) / world
    if not math.isclose(mean, whole, rel_tol=1e-5, abs_tol=1e-5):
        _fail(name, "2 processes equal 1", f"two processes on half batches give {mean:.6f} (mean of {values}), one "
              f"process on the whole batch {whole:.6f}: gather the negatives of every process with gradient "
              f"(contrastive.components.losses.positive_pair_logits, contrastive.distributed)")
