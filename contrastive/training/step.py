"""One optimisation step: views, the method's forward and loss (GradCache), the guard, the update.

Plain gradient accumulation (K small forward/backward passes) would give each chunk only its own
views as negatives.  Under ``trainer.accumulate: K`` the step uses the *GradCache* scheme
(Gao et al., 2021, arXiv:2101.06983) instead, for every method:

1. run the method's ``forward`` on the K chunks one after another **without** an autograd graph
   (memory of one chunk);
2. compute the method's ``loss`` over the whole step's outputs (each output concatenated over
   the chunks along dim 0) and its gradient with respect to them (cheap: embeddings are small);
3. re-run each chunk **with** its graph and back-propagate the cached gradient of its slice,
   ``Σ_name (out_k[name] · dL/d out_k[name]).sum().backward()``; parameter gradients add up.

Outputs that do not require grad on the re-run (momentum keys) get no backward.  Parameters the
loss uses itself, not through the outputs (a learned temperature), get their gradient from step 2,
added to the last chunk's backward so that DDP averages it with the others.  The result
equals one backward pass over the whole batch, as long as the model computes each sample
independently of the others (no batch statistics).  Randomness inside the chunk (the
augmentations, dropout, drop-path) is replayed exactly: the RNG state is saved before each
chunk's first pass and restored before its re-run.  The method's ``stats_buffers`` (BatchNorm
running statistics) are restored after the first passes, so they are updated once per chunk, as
with plain accumulation; BatchNorm's *batch* statistics come from each chunk alone (as they come
from each GPU alone without SyncBatchNorm), so with BatchNorm the K = 1 and K > 1 gradients differ
slightly.  Only ``after_step`` writes other state, so replays never touch queues.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from contrastive import diagnostics
from contrastive.errors import TrainingError
from contrastive.methods.base import Batch, Outputs, split_loss
from contrastive.storage import checkpoint
from contrastive.training.state import is_record_step

if TYPE_CHECKING:
    from contrastive.training.build import Run

Forward = Callable[[int], Outputs]
LossFn = Callable[[Outputs], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class StepResult:
    """What one step gives the callbacks and ``after_step``."""

    loss: float  # mean over processes; NaN/inf for a skipped non-finite step
    applied: bool  # the optimiser changed the weights (False: non-finite loss, or fp16 overflow)
    outputs: Outputs  # the whole step's outputs on this process, detached
    logs: dict[str, float] = field(default_factory=dict)  # the method's diagnostics, mean over processes
    seconds: float = 0.0  # wall time of the step, waiting for its batch included (set by the loop)


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
def restored(buffers: Sequence[torch.Tensor]) -> Iterator[None]:
    """Leave ``buffers`` (BatchNorm running statistics) as they were on entry."""
    saved = [(buffer, buffer.detach().clone()) for buffer in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _detached(outputs: Outputs) -> Outputs:
    return {name: tensor.detach() for name, tensor in outputs.items()}


def grad_cache_step(
    forward: Forward,
    loss_fn: LossFn,
    chunks: int = 1,
    *,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    restore: Sequence[torch.Tensor] = (),
    device: torch.device | str = "cpu",
    parameters: Sequence[torch.Tensor] = (),
) -> tuple[torch.Tensor, dict[str, float], Outputs]:
    """Forward and backward of one step; returns the detached loss, the diagnostics and the
    step's detached outputs (every chunk's, concatenated along dim 0).

    Args:
        forward: ``forward(k)`` -> outputs of chunk ``k`` (views drawn inside, so they replay);
            called once with ``chunks == 1`` and twice per chunk (same RNG state) otherwise.
        loss_fn: outputs of the whole step -> ``(scalar, diagnostics)``.
        chunks: K, the number of chunks (``trainer.accumulate``).
        backward: back-propagates a scalar (``accelerator.backward``: loss scaling for fp16).
        no_sync: suspends DDP's gradient all-reduce (``lambda: accelerator.no_sync(model)``);
            used for all re-runs but the last.
        restore: buffers restored after the graph-free passes (``Method.stats_buffers()``).
        device: the training device (whose RNG state is replayed).
        parameters: the trainable parameters: with ``chunks > 1``, those the loss uses directly
            (a learned temperature) receive the loss's gradient (the others are unreachable from
            the cached outputs and cost nothing).  With ``chunks == 1`` the one backward reaches them.
    """
    if chunks < 1:
        raise ValueError(f"accumulate must be >= 1, got {chunks}")
    if chunks == 1:
        outputs = forward(0)
        loss, logs = loss_fn(outputs)
        backward(loss)
        return loss.detach(), logs, _detached(outputs)

    device = torch.device(device)
    states: list[_RngState] = []
    parts: list[Outputs] = []
    with restored(restore), torch.no_grad():
        for k in range(chunks):
            states.append(_RngState(device))
            parts.append(forward(k))
    after = _RngState(device)
    names = list(parts[0])
    sizes = [p[names[0]].shape[0] for p in parts] if names else []

    # Loss and dL/d(output) over the whole step (all views are negatives), floats in >= float32.
    # Every floating output is a leaf here; those that do not require grad on the re-run are skipped there.
    full: Outputs = {}
    for name in names:
        joined = torch.cat([p[name] for p in parts])
        full[name] = joined.to(torch.promote_types(joined.dtype, torch.float32)).requires_grad_() if joined.is_floating_point() else joined
    del parts
    leaves = [name for name in names if full[name].requires_grad]
    params = [p for p in parameters if p.requires_grad]
    with torch.enable_grad():
        loss, logs = loss_fn(full)
        grads = torch.autograd.grad(loss, [full[n] for n in leaves] + params, allow_unused=True)
    cached = {n: g.split(sizes) for n, g in zip(leaves, grads[: len(leaves)], strict=True) if g is not None}
    direct = [(p, g) for p, g in zip(params, grads[len(leaves):], strict=True) if g is not None]

    for k in range(chunks):
        states[k].restore()
        last = k == chunks - 1
        with contextlib.nullcontext() if last else no_sync():
            outputs = forward(k)
            terms = [(outputs[n].to(cached[n][k].dtype) * cached[n][k]).sum()
                     for n in cached if outputs[n].requires_grad]
            if last:  # the loss's own parameters, once, in the backward DDP synchronises
                terms += [(p * g.to(p.dtype)).sum() for p, g in direct]
            if not terms:
                raise TrainingError("the method's forward returned no output that requires grad: nothing to train")
            backward(sum(terms[1:], terms[0]))
    after.restore()
    return loss.detach(), logs, _detached(full)


class NonFiniteGuard:
    """``trainer.skip_nonfinite``: a step whose loss is NaN/inf is skipped (weights unchanged,
    the method's statistics buffers restored) up to N times in a run; then the run stops, naming
    the last good checkpoint."""

    def __init__(self, allowed: int, checkpoint_dir) -> None:
        self.allowed = allowed
        self.checkpoint_dir = checkpoint_dir

    def saved(self, buffers: Sequence[torch.Tensor]) -> list[torch.Tensor] | None:
        """Copies of ``buffers`` to restore a skipped step with (None when nothing is skipped)."""
        return [b.detach().clone() for b in buffers] if self.allowed else None

    def skip(self, value: float, step: int, epoch: int, count: int, accelerator) -> None:
        """The ``count``-th non-finite loss, at ``step``: warn, or raise [`TrainingError`][contrastive.errors.TrainingError]."""
        if count <= self.allowed:
            accelerator.print(
                f"warning: the loss became {value} at step {step} (epoch {epoch}); step skipped, weights "
                f"unchanged ({count} of trainer.skip_nonfinite {self.allowed})"
            )
            return
        good = checkpoint.newest_valid(self.checkpoint_dir)[0]
        allowed = f" after skipping {count - 1} (trainer.skip_nonfinite {self.allowed})" if self.allowed else ""
        raise TrainingError(
            f"the loss became {value} at step {step} (epoch {epoch}){allowed}; "
            f"last good checkpoint: {good or 'none'}. Lower the learning rate "
            f"(--optimizer.args.lr) or raise the temperature, then resume with --trainer.resume true"
        )


def _mean_over_processes(logs: dict[str, float], accelerator) -> dict[str, float]:
    """The method's diagnostics averaged over processes (every process logs the same names)."""
    if not logs:
        return {}
    names = sorted(logs)
    values = torch.tensor([float(logs[n]) for n in names], dtype=torch.float64, device=accelerator.device)
    values = accelerator.reduce(values, reduction="mean")
    return {n: float(v) for n, v in zip(names, values.tolist(), strict=True)}


def train_step(run: Run, batch: Batch, guard: NonFiniteGuard) -> StepResult:
    """Views, forward, loss and backward (GradCache over ``trainer.accumulate`` chunks), then the
    non-finite guard, gradient clipping, the optimiser and LR-scheduler steps."""
    trainer, accelerator, method = run.trainer, run.accelerator, run.method
    chunk = trainer.batch_size
    stats = method.stats_buffers()
    saved = guard.saved(stats)

    def forward(k: int) -> Outputs:
        part = batch.slice(k * chunk, (k + 1) * chunk)
        views = run.views(part.images, part.source_aspect)
        with accelerator.autocast():
            return run.model(views, part)  # the prepared module: DDP sees every forward

    recorded = is_record_step(run.state.global_step + 1, run.state.total_steps, trainer.log_every)

    def loss_of(outputs: Outputs) -> tuple[torch.Tensor, dict[str, float]]:
        with accelerator.autocast(), diagnostics.collecting(recorded):  # the step's diagnostics, when logged
            return split_loss(method.loss(outputs, batch))

    loss, logs, outputs = grad_cache_step(
        forward, loss_of, trainer.accumulate, backward=accelerator.backward,
        no_sync=lambda: accelerator.no_sync(run.model), restore=stats, device=accelerator.device,
        parameters=[p for _, p in method.trainable_parameters()] if trainer.accumulate > 1 else (),
    )
    value = accelerator.reduce(loss.detach(), reduction="mean").item()
    applied = math.isfinite(value)
    if applied:
        method.before_optimizer_step(run.state.global_step + 1, run.state.total_steps)
        if trainer.grad_clip is not None:
            accelerator.clip_grad_norm_(run.model.parameters(), trainer.grad_clip)
        run.optimizer.step()
        if accelerator.optimizer_step_was_skipped:  # fp16 overflow: not a failure, but no update
            run.state.amp_skipped += 1
            applied = False
    else:
        run.state.nonfinite_skipped += 1
        guard.skip(value, run.state.global_step + 1, run.state.epoch, run.state.nonfinite_skipped, accelerator)
        with torch.no_grad():  # undo the statistics of the skipped forward pass
            for buffer, copy in zip(stats, saved, strict=True):
                buffer.copy_(copy)
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return StepResult(value, applied, outputs, _mean_over_processes(logs, accelerator) if math.isfinite(value) else {})
