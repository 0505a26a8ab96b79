"""One optimisation step's forward and backward, with every view of the step as a negative.

Plain gradient accumulation (K small forward/backward passes) would give each chunk only its own
views as negatives.  Under ``trainer.accumulate: K`` the engine uses the *GradCache* scheme
(Gao et al., 2021, arXiv:2101.06983) instead:

1. embed the K chunks one after another **without** an autograd graph (memory of one chunk);
2. compute the loss over the whole step's embeddings and its gradient with respect to them
   (cheap: the embeddings are (B, D));
3. re-run each chunk **with** its graph and back-propagate the cached gradient of its slice,
   ``(z_k · dL/dz_k).sum().backward()``; parameter gradients add up over the chunks.

The result equals one backward pass over the whole batch, as long as the model computes each
sample independently of the others (no batch statistics).  Randomness inside the chunk (the
augmentations, dropout, drop-path) is replayed exactly: the RNG state is saved before each
chunk's first pass and restored before its re-run.  BatchNorm's running statistics are
restored after the first passes, so they are updated once per chunk, as with plain
accumulation; its *batch* statistics come from each chunk alone (as they come from each GPU
alone without SyncBatchNorm), so with BatchNorm the K = 1 and K > 1 gradients differ slightly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

Embed = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


class _RngState:
    """The CPU RNG state and, for a CUDA device, that device's RNG state."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


@contextlib.contextmanager
def _buffers_restored(model: nn.Module) -> Iterator[None]:
    """Leave the module's buffers (BatchNorm running statistics) as they were on entry."""
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def contrastive_step(
    embed: Embed,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    accumulate: int = 1,
    *,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    model: nn.Module | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Forward and backward of one step; returns the (detached) loss.

    Args:
        embed: ``embed(k) -> (z_a, z_b)`` embeds chunk ``k`` of the step's samples (both views,
            augmentation included); chunk k holds the samples ``k·c … (k+1)·c − 1``.  It is called
            once per chunk with ``accumulate == 1`` and twice (same RNG state) otherwise.
        loss_fn: ``(z_a, z_b) -> scalar`` over the whole step's embeddings.
        accumulate: K, the number of chunks.
        backward: back-propagates a scalar (``accelerator.backward``: loss scaling for fp16).
        no_sync: context manager that suspends DDP's gradient all-reduce
            (``lambda: accelerator.no_sync(model)``); used for all re-runs but the last.
        model: the module whose buffers are restored after the graph-free passes.
        device: the training device (whose RNG state is replayed).
    """
    if accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {accumulate}")
    if accumulate == 1:
        z_a, z_b = embed(0)
        loss = loss_fn(z_a, z_b)
        backward(loss)
        return loss.detach()

    device = torch.device(device)
    states: list[_RngState] = []
    parts_a: list[torch.Tensor] = []
    parts_b: list[torch.Tensor] = []
    buffers = _buffers_restored(model) if model is not None else contextlib.nullcontext()
    with buffers, torch.no_grad():
        for k in range(accumulate):
            states.append(_RngState(device))
            z_a, z_b = embed(k)
            parts_a.append(z_a)
            parts_b.append(z_b)
    after = _RngState(device)
    sizes = [p.shape[0] for p in parts_a]

    # Loss and dL/dz over the whole step (all views are negatives), in >= float32.
    dtype = torch.promote_types(parts_a[0].dtype, torch.float32)
    all_a = torch.cat(parts_a).to(dtype).requires_grad_()
    all_b = torch.cat(parts_b).to(dtype).requires_grad_()
    del parts_a, parts_b
    with torch.enable_grad():
        loss = loss_fn(all_a, all_b)
        grad_a, grad_b = torch.autograd.grad(loss, [all_a, all_b])
    grads = list(zip(grad_a.split(sizes), grad_b.split(sizes), strict=True))

    for k in range(accumulate):
        states[k].restore()
        last = k == accumulate - 1
        with contextlib.nullcontext() if last else no_sync():
            z_a, z_b = embed(k)
            g_a, g_b = grads[k]
            surrogate = (z_a.to(dtype) * g_a).sum() + (z_b.to(dtype) * g_b).sum()
            backward(surrogate)
    after.restore()
    return loss.detach()
