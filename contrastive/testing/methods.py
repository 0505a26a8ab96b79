"""The method contract, checked: [`check_method`][contrastive.testing.methods.check_method] (the framework runs it on every registered
method, built-ins and installed plugins: tests/methods/test_conformance.py; a plugin runs it on its own).

A method is built the way training builds it — the parts its signature names, injected by
parameter name — from a tiny backbone, an ``mlp`` head (and predictor) and ``ntxent``, with
default recipe args, and must pass:

1. ``forward`` is pure: same RNG state, same outputs; it writes no state outside
   ``stats_buffers()``; with those restored a replay equals the first call.
2. Outputs carry the batch along dim 0: the two halves of a batch (eval mode) give the rows of
   the whole batch.
3. ``loss`` is a finite 0-d tensor (diagnostics finite floats, on a recorded step too, where
   the loss is the same) with finite, non-zero gradients for the ``trainable_parameters()``, and
   writes no state.
4. GradCache (``trainer.accumulate: 2``) gives the one-chunk loss and gradients.
5. In a real ``fit``, ``after_step`` runs once per applied step and not for a skipped non-finite one.
6. The whole method state (weights and buffers) survives checkpoint, resume, bit for bit.
7. Two gloo processes on half batches are one process on the whole batch (loss and the
   DDP-averaged gradients).

[`check_method`][contrastive.testing.methods.check_method] runs all seven for one method; the ``check_*`` functions take a registries
factory (a module-level function: rule 7 calls it in two spawned processes) and a method name;
every ``AssertionError`` names the method and the rule it broke.  Nothing here needs pytest.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import nn

import contrastive
from contrastive import diagnostics
from contrastive import recipe as recipes
from contrastive.errors import ContrastiveError
from contrastive.methods.base import Batch, Method
from contrastive.methods.base import check_method as check_method_object
from contrastive.recipe import method_parts
from contrastive.storage.run_dir import RunDir
from contrastive.testing.callbacks import tiny_recipe
from contrastive.training import fit
from contrastive.training.step import split_loss

if TYPE_CHECKING:
    from contrastive.registry import Registries

BATCH = 8  # even: two halves, two ranks
CLOSE = {"rtol": 0, "atol": 1e-6}  # float64 comparisons of differently ordered sums
ROWS = {"rtol": 0, "atol": 1e-10}  # float64 comparisons of the same sums on fewer rows
WORLD = 2


def default_registries():
    """Built-ins and every installed plugin (autoload on, whatever the environment says)."""
    return contrastive.load_registries(autoload=True)


# -- building a method the way training does ------------------------------------------------
class TinyBackbone(nn.Module):
    """conv 3→6 (+ BatchNorm) + ReLU + global average pool: ``(B, 3, H, W) -> (B, 6)``."""

    num_features = 6

    def __init__(self, batch_norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, self.num_features, 3, padding=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(self.num_features) if batch_norm else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.norm(self.conv(x)))).flatten(1)


def _fail(name: str, rule: str, detail: str = "") -> None:
    raise AssertionError(f"method '{name}': {rule}" + (f"\n{detail}" if detail else ""))


def method_grad_cache_step(method, views: list[torch.Tensor], batch, chunks: int):
    """One GradCache step of ``method`` over ``chunks`` equal chunks of ``views``/``batch``, as
    ``train_step`` runs it: ``(loss, outputs, {name: grad or None})`` of its trainable parameters."""
    from contrastive.training.step import grad_cache_step

    size = len(batch) // chunks
    method.zero_grad(set_to_none=True)
    loss, _, outputs = grad_cache_step(
        lambda k: method([v[k * size:(k + 1) * size] for v in views], batch.slice(k * size, (k + 1) * size)),
        lambda out: split_loss(method.loss(out, batch)), chunks, restore=method.stats_buffers(),
        parameters=[p for _, p in method.trainable_parameters()],
    )
    return loss, outputs, {name: None if p.grad is None else p.grad.clone() for name, p in method.trainable_parameters()}


def build_method(registries: Registries, name: str, *, batch_norm: bool, seed: int = 0) -> Method:
    """``name`` built with the parts its signature names (as training injects them), float64."""
    factory = registries.methods.get(name)
    wanted = method_parts(factory)
    if "backbone" not in wanted:
        _fail(name, "its __init__ must take a `backbone` argument (the method contract: parts are injected by name)")
    torch.manual_seed(seed)
    backbone = TinyBackbone(batch_norm)
    parts: dict[str, nn.Module] = {"backbone": backbone}
    head = None
    if "head" in wanted:
        head = parts["head"] = registries.heads.build(
            "mlp", in_dim=backbone.num_features, hidden_dim=16, out_dim=8, batch_norm=batch_norm
        )
    if "loss" in wanted:
        parts["loss"] = registries.losses.build("ntxent")
    if "predictor" in wanted:
        in_dim = head.out_dim if head is not None else backbone.num_features
        parts["predictor"] = registries.heads.build("mlp", in_dim=in_dim, hidden_dim=16, out_dim=8, batch_norm=batch_norm)
    method = check_method_object(registries.methods.build(name, **parts), name)
    try:
        method.check_views([method.views])
    except ContrastiveError as exc:
        _fail(name, f"check_views refuses its own default of views = {method.views} views", str(exc))
    return method.double()


def make_inputs(method: Method, seed: int = 0) -> tuple[list[torch.Tensor], Batch]:
    """``method.views`` deterministic float64 views of ``BATCH`` uint8 images and their Batch.

    View 0 is the images, view 1 their mirror image, view k ≥ 2 the images rolled by k − 1
    pixels: per-sample transforms, so slicing the batch commutes with making the views.
    Labels repeat within each half (and across the halves) for methods that need labels, else -1.
    """
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (BATCH, 3, 8, 8), dtype=torch.uint8, generator=g)
    x = images.double() / 255
    views = [x, x.flip(-1)] + [x.roll(k - 1, dims=-1) for k in range(2, method.views)]
    labels = torch.arange(BATCH) % 3 if method.requires_labels else torch.full((BATCH,), -1)
    return views[: method.views], Batch(images=images, labels=labels, index=torch.arange(BATCH) + 100)


def _part(views: list[torch.Tensor], batch: Batch, start: int, stop: int) -> tuple[list[torch.Tensor], Batch]:
    return [v[start:stop] for v in views], batch.slice(start, stop)


def _state(method: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (persistent or not), by name, as tensors (not copies)."""
    return {**dict(method.named_parameters()), **dict(method.named_buffers())}


def _copies(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: t.detach().clone() for key, t in tensors.items()}


def _changed(method: nn.Module, before: dict[str, torch.Tensor], skip: set[int] = frozenset()) -> list[str]:
    return [key for key, t in _state(method).items() if id(t) not in skip and not torch.equal(t.detach(), before[key])]


def _close(name: str, got: torch.Tensor, want: torch.Tensor, tolerance: dict, rule: str) -> None:
    try:
        torch.testing.assert_close(got, want, **tolerance)
    except AssertionError as exc:
        _fail(name, rule, str(exc))


def _check_outputs(name: str, outputs, rows: int) -> dict[str, torch.Tensor]:
    if not isinstance(outputs, dict) or not outputs or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in outputs.items()
    ):
        _fail(name, f"forward must return a non-empty dict[str, Tensor] (the method contract), got {type(outputs).__name__}"
              + (f" with {[(k, type(v).__name__) for k, v in outputs.items()]}" if isinstance(outputs, dict) else ""))
    wrong = {k: tuple(v.shape) for k, v in outputs.items() if v.ndim == 0 or v.shape[0] != rows}
    if wrong:
        _fail(name, f"every output of forward must have the batch's {rows} samples along dim 0 (the loop splits and "
                    f"concatenates chunks and processes along dim 0), got shapes {wrong}")
    return outputs


# -- 1. forward is pure -------------------------------------------------------------------------
def check_forward_is_pure(make_registries: Callable, name: str) -> None:
    method = build_method(make_registries(), name, batch_norm=True).train()
    views, batch = make_inputs(method)
    stats = method.stats_buffers()
    stat_ids = {id(b) for b in stats}
    before = _copies(_state(method))
    stats_before = [b.detach().clone() for b in stats]
    rng = torch.get_rng_state()
    with torch.no_grad():  # GradCache's first pass is graph-free, its replay is not
        first = _check_outputs(name, method(views, batch), BATCH)
    written = _changed(method, before, stat_ids)
    if written:
        _fail(name, f"forward must be pure (it runs twice per chunk under trainer.accumulate), but it wrote {written}, "
                    f"which stats_buffers() does not return: move the update to after_step, or return the buffer "
                    f"from stats_buffers() if it is a running statistic the loop may restore")
    stats_after = [b.detach().clone() for b in stats]
    with torch.no_grad():  # what the loop does between GradCache's passes
        for buffer, saved in zip(stats, stats_before, strict=True):
            buffer.copy_(saved)
    torch.set_rng_state(rng)
    second = method(views, batch)
    if set(second) != set(first):
        _fail(name, f"forward returned the outputs {sorted(first)}, then {sorted(second)} on a replay")
    differ = [k for k in first if not torch.equal(first[k], second[k].detach())]
    if differ:
        _fail(name, f"forward from the same RNG state (stats_buffers() restored) gave different {differ}: forward must "
                    f"depend only on its inputs, the state and the torch RNG (GradCache replays it; draw randomness "
                    f"from torch, not from Python's random or NumPy)")
    if not all(torch.equal(a, b) for a, b in zip(stats_after, stats, strict=True)):
        _fail(name, "stats_buffers() were written differently by a replay of forward from the same state")


# -- 2. batch along dim 0 ----------------------------------------------------------------------------
def check_batch_along_dim0(make_registries: Callable, name: str) -> None:
    method = build_method(make_registries(), name, batch_norm=True).train()
    views, batch = make_inputs(method)
    with torch.no_grad():
        _check_outputs(name, method(views, batch), BATCH)
        method.eval()  # running statistics: each sample computed on its own
        whole = _check_outputs(name, method(views, batch), BATCH)
        halves = [_check_outputs(name, method(*_part(views, batch, a, a + BATCH // 2)), BATCH // 2)
                  for a in (0, BATCH // 2)]
    for key in whole:
        _close(name, torch.cat([h[key] for h in halves]), whole[key], ROWS,
               f"in eval mode, output '{key}' of the two halves of a batch must be the rows of the whole batch's "
               f"(samples along dim 0, each computed on its own)")


# -- 3. loss ------------------------------------------------------------------------------------------------
def check_loss_is_finite_and_differentiable(make_registries: Callable, name: str) -> None:
    method = build_method(make_registries(), name, batch_norm=True).train()
    views, batch = make_inputs(method)
    outputs = method(views, batch)
    before = _copies(_state(method))
    with diagnostics.collecting():  # a recorded step: the method's diagnostics are checked too
        value = method.loss(outputs, batch)
    plain = split_loss(method.loss(outputs, batch))[0]
    written = _changed(method, before)
    if written:
        _fail(name, f"loss must read state, never write it (queues are pushed in after_step), but it wrote {written}")
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[1], dict | type(None)):
            _fail(name, f"loss must return a tensor or (tensor, dict of floats), got a tuple of {len(value)}")
    loss, logs = split_loss(value)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        _fail(name, f"loss must be a 0-d tensor, got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}")
    if not torch.isfinite(loss):
        _fail(name, f"loss must be finite on a well-behaved batch, got {loss.item()}")
    if not torch.equal(plain.detach(), loss.detach()):
        _fail(name, f"loss must not depend on whether diagnostics are recorded: {plain.item()} without, {loss.item()} with")
    for key, v in logs.items():
        if isinstance(v, torch.Tensor) and v.ndim == 0:
            v = v.item()
        if not isinstance(key, str) or not isinstance(v, float | int) or isinstance(v, bool) or not math.isfinite(v):
            _fail(name, f"loss diagnostics must be finite floats (or 0-d tensors) by name, got {key!r}: {v!r}")
    trainable = list(method.trainable_parameters())
    owned = {id(p) for p in method.parameters()}
    if not trainable:
        _fail(name, "trainable_parameters() is empty: the optimiser would update nothing")
    for key, p in trainable:
        if not p.requires_grad:
            _fail(name, f"trainable_parameters() yields '{key}', which does not require grad")
        if id(p) not in owned:
            _fail(name, f"trainable_parameters() yields '{key}', which is not a parameter of the method (a method owns "
                        f"what it trains, so that state_dict, DDP and checkpoints see it)")
    if not loss.requires_grad:
        _fail(name, "loss has no gradient path to the parameters (computed under no_grad or detached?)")
    loss.backward()
    bad = [key for key, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        _fail(name, f"backward of the loss gave non-finite gradients to {bad}")
    if not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for _, p in trainable):
        _fail(name, "backward of the loss gave no trainable parameter a non-zero gradient")


# -- 4. GradCache ------------------------------------------------------------------------------------
def check_grad_cache(make_registries: Callable, name: str) -> None:
    method = build_method(make_registries(), name, batch_norm=False).train()
    views, batch = make_inputs(method)
    loss_1, outputs_1, grads_1 = method_grad_cache_step(method, views, batch, 1)
    loss_2, outputs_2, grads_2 = method_grad_cache_step(method, views, batch, 2)

    def rule(what: str) -> str:
        return (f"GradCache (trainer.accumulate: 2) must give the one-chunk {what} (forward must compute each sample "
                f"on its own and be replayable; loss sees all chunks' outputs)")

    _close(name, loss_2, loss_1, CLOSE, rule("loss"))
    for key in outputs_1:
        _close(name, outputs_2[key], outputs_1[key], CLOSE, rule(f"output '{key}'"))
    for key, grad in grads_1.items():
        if (grad is None) != (grads_2[key] is None):
            _fail(name, f"GradCache (accumulate 2) and one chunk disagree on whether '{key}' gets a gradient")
        if grad is not None:
            _close(name, grads_2[key], grad, CLOSE, rule(f"gradient of '{key}'"))


# -- 5 and 6. a real fit: after_step, checkpoint and resume ---------------------------------
def conformance_wrapper(parent: type, name: str, nan_on_call: int | None) -> type:
    """A subclass of ``parent`` whose ``loss`` is NaN on its ``nan_on_call``-th call and whose
    ``after_step`` records ``step``; everything else (and what these two return) is the parent's."""
    record: dict[str, list] = {"after_step": [], "losses": []}

    class Conformance(parent):
        conformance_record = record

        def loss(self, outputs, batch):
            value = super().loss(outputs, batch)
            loss, logs = split_loss(value)
            record["losses"].append(float(loss.detach()))
            if len(record["losses"]) == nan_on_call:
                loss = loss * float("nan")
            return (loss, logs) if isinstance(value, tuple) else loss

        def after_step(self, outputs, batch, step, total_steps):
            record["after_step"].append(step)
            return super().after_step(outputs, batch, step, total_steps)

    Conformance.__name__ = Conformance.__qualname__ = f"Conformance{parent.__name__}"
    return Conformance


def _fit(make_registries: Callable, name: str, out: Path, *, nan_on_call: int | None, resume: bool = False) -> dict:
    registries = make_registries()
    parent = registries.methods.get(name)
    if not isinstance(parent, type):
        _fail(name, f"is registered as {parent!r}; the conformance suite subclasses a method's class to watch the loop "
                    f"call it, so register the class itself")
    wrapper = conformance_wrapper(parent, name, nan_on_call)
    registries.methods.register(f"conformance_{name}", wrapper)
    raw = tiny_recipe(out, max_steps=4)
    raw["trainer"].update(skip_nonfinite=1, checkpoint_every_steps=2, keep_last=5, resume=resume)
    raw["data"] = {"name": "digits", "args": {"train": False, "test_fraction": 0.05, "image_size": 16}}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    raw["method"] = {"name": f"conformance_{name}", "args": dict(getattr(parent, "conformance_args", {}))}
    if "predictor" in method_parts(parent):
        raw["predictor"] = {"name": "mlp", "args": {"hidden_dim": 32, "out_dim": 16}}
    try:
        results = fit(recipes.validate(raw, registries), registries)
    except ContrastiveError as exc:
        _fail(name, f"a 4-step fit (loss NaN at step {nan_on_call}, trainer.skip_nonfinite: 1) stopped: {exc}")
    return {"results": results, **wrapper.conformance_record}


@dataclass
class FitRuns:
    """One uninterrupted fit per method (NaN loss at step 2, skipped), shared by checks 5 and 6."""

    make_registries: Callable
    root: Path
    done: dict[str, tuple[Path, dict]] = field(default_factory=dict)

    def uninterrupted(self, name: str) -> tuple[Path, dict]:
        if name not in self.done:
            out = self.root / name / "run"
            self.done[name] = (out, _fit(self.make_registries, name, out, nan_on_call=2))
        return self.done[name]


def check_after_step(runs: FitRuns, name: str) -> None:
    out, record = runs.uninterrupted(name)
    if record["after_step"] != [1, 3, 4]:
        _fail(name, f"after_step must run once per applied optimiser step and not for the skipped non-finite step 2 "
                    f"(4 steps, loss NaN at step 2): expected steps [1, 3, 4], got {record['after_step']} (does the "
                    f"method call after_step itself, or update state from forward/loss?)")
    if len(record["losses"]) != 4:
        _fail(name, f"the loop must call loss once per step (4 steps), it called it {len(record['losses'])} times")
    logged = {r["step"]: r["loss"] for r in map(json.loads, RunDir(out).metrics.read_text().splitlines())}
    expected = {1: record["losses"][0], 3: record["losses"][2], 4: record["losses"][3]}
    if {s: logged.get(s) for s in expected} != expected or not math.isnan(logged.get(2, 0.0)):
        _fail(name, f"the run must log the method's own loss at the applied steps and NaN at the skipped one: "
                    f"logged {logged}, the method returned {record['losses']} (NaN at call 2)")
    if record["results"]["nonfinite_steps_skipped"] != 1:
        _fail(name, f"expected 1 skipped step, results.json says {record['results']['nonfinite_steps_skipped']}")


def _bit_identical(a: Path, b: Path) -> list[str]:
    left, right = load_file(str(a)), load_file(str(b))
    if left.keys() != right.keys():
        return [f"keys differ: only in the first {sorted(left.keys() - right.keys())}, "
                f"only in the resumed {sorted(right.keys() - left.keys())}"]
    return [key for key in sorted(left) if left[key].dtype != right[key].dtype or left[key].shape != right[key].shape
            or not torch.equal(left[key].reshape(-1).view(torch.uint8), right[key].reshape(-1).view(torch.uint8))]


def check_resume(runs: FitRuns, name: str) -> None:
    out, _ = runs.uninterrupted(name)
    copy = out.parent / "resumed"
    shutil.copytree(out, copy)
    shutil.rmtree(RunDir(copy).checkpoints / "step_000000004")
    RunDir(copy).backbone.unlink()
    record = _fit(runs.make_registries, name, copy, nan_on_call=None, resume=True)
    if record["after_step"] != [3, 4]:
        _fail(name, f"resumed from the step-2 checkpoint, after_step must run for steps [3, 4], got {record['after_step']}")
    for path in (f"{RunDir.CHECKPOINTS}/step_000000004/model.safetensors", RunDir.BACKBONE):
        differ = _bit_identical(out / path, copy / path)
        if differ:
            _fail(name, f"{path} after resuming from step 2 is not bit-identical to the uninterrupted run's, at "
                        f"{differ[:8]}: everything the method trains or keeps must be a parameter or buffer (not a "
                        f"Python attribute), and forward/after_step may depend only on that state, the batch, the "
                        f"torch RNG and `step`")


# -- 7. two processes ----------------------------------------------------------------------------
def _one_process(method: Method, views: list[torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict]:
    method.zero_grad(set_to_none=True)
    loss, _ = split_loss(method.loss(method(views, batch), batch))
    loss.backward()
    grads = {key: None if p.grad is None else p.grad.clone() for key, p in method.trainable_parameters()}
    return loss.detach(), grads


def _distributed_worker(rank: int, tmp_path: Path, names: list[str], make_registries: Callable) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=rank,
                                         world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        registries = make_registries()
        out: dict[str, object] = {}
        n = BATCH // WORLD
        for name in names:
            try:
                method = build_method(registries, name, batch_norm=False).train()
                views, batch = make_inputs(method)
                out[name] = _one_process(method, *_part(views, batch, rank * n, (rank + 1) * n))
            except BaseException:  # noqa: BLE001  reported by the test of this method
                out[name] = traceback.format_exc()
        torch.save(out, tmp_path / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def run_two_processes(tmp_path: Path, names: list[str], make_registries: Callable = default_registries) -> list[dict]:
    """One spawn of 2 gloo processes for all ``names``: each rank's loss and gradients on its half batch."""
    torch.multiprocessing.start_processes(_distributed_worker, args=(tmp_path, list(names), make_registries),
                                          nprocs=WORLD, start_method="spawn")
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def check_two_processes(make_registries: Callable, name: str, ranks: list[dict]) -> None:
    for rank, result in enumerate(ranks):
        if isinstance(result[name], str):
            _fail(name, f"forward/loss failed on rank {rank} of 2 gloo processes", result[name])
    method = build_method(make_registries(), name, batch_norm=False).train()
    loss, grads = _one_process(method, *make_inputs(method))
    _close(name, torch.stack([r[name][0] for r in ranks]).mean(), loss, CLOSE,
           "the mean of the losses of 2 processes on half batches must be the loss of one process on the whole "
           "batch (take negatives from every process, gathered with gradient: contrastive.distributed.gather_with_grad)")
    for key, grad in grads.items():
        got = [r[name][1][key] for r in ranks]
        if any((g is None) != (grad is None) for g in got):
            _fail(name, f"2 processes and 1 process disagree on whether '{key}' gets a gradient")
        if grad is not None:
            _close(name, torch.stack(got).mean(0), grad, CLOSE,
                   f"the DDP average over 2 processes of the gradient of '{key}' must be the gradient of one process "
                   f"on the whole batch (gather with gradient; no statistics across the samples of a batch)")




def check_method(name: str, make_registries: Callable = default_registries) -> None:
    """Every rule of this module for the method registered as ``name`` in ``make_registries()``
    (a module-level function: it is called again in two spawned processes)."""
    import tempfile

    check_forward_is_pure(make_registries, name)
    check_batch_along_dim0(make_registries, name)
    check_loss_is_finite_and_differentiable(make_registries, name)
    check_grad_cache(make_registries, name)
    with tempfile.TemporaryDirectory() as folder:
        runs = FitRuns(make_registries, Path(folder))
        check_after_step(runs, name)
        check_resume(runs, name)
        (Path(folder) / "gloo").mkdir()
        check_two_processes(make_registries, name, run_two_processes(Path(folder) / "gloo", [name], make_registries))
