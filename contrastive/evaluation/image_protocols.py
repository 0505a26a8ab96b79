"""Protocols that train on images rather than on precomputed features: the papers' linear
evaluation with augmentation (``linear_augmented``) and fine-tuning (``finetune``), registered
under the same ``protocols`` kind as ``knn`` and ``linear``, and `score_images`, which runs
the ones a recipe asks for.

The image-protocol contract (an entry of ``protocols`` with ``needs_images = True``)::

    protocol(backbone, train, test, *, transform, num_classes, config, seed, device, precision)
        -> {score_name: float}

``backbone``: the learned (or random-init) backbone, ``(B, C, H, W) -> (B, D)``, on ``device``;
a protocol must leave its weights and its train/eval mode as they were (train a copy).
``train`` / ``test``: the evaluation's labelled map-style datasets (``dataset[i] -> (uint8 (C, H, W),
label)``; only their labelled samples are used); ``transform``: the run's
[`EvalTransform`][contrastive.evaluation.features.EvalTransform] (view size, normalisation) that turns a
``(B, C, H, W)`` uint8 batch into backbone input; ``config``: the recipe's ``eval:`` section;
``seed``: the recipe's seed (the same run and seed give the same scores); ``precision``: the run's
mixed precision (``no``, ``bf16``, ``fp16``).  Image protocols need labels and a backbone: the
raw-pixel baseline has none and is not scored by them.  Scores land as ``<protocol>_<score>``.

Every process.  A protocol that sets ``distributed = True`` is also passed ``group`` (the
[`evaluation_group`][contrastive.distributed.evaluation_group]; None: this process alone), and every process
of it calls the protocol together; one without it runs whole on every process.  The built-ins split
each step's global batch of ``*_batch_size`` images into contiguous slices, one per process: every
process reads and augments the whole global batch (the same draws as one process: the CPU work is
repeated, the backbone's is not) and runs the backbone on its slice only.  The slices' features are
gathered and every process trains the head on the whole batch (its BatchNorm sees the whole batch);
``finetune`` also sums the backbone's gradients over the processes (what DDP does).  The head, the
update and the scores are one process's on the whole batch, except that BatchNorm layers *inside*
the fine-tuned backbone normalise each slice by its own statistics (as DDP without SyncBatchNorm;
their running statistics are averaged over the processes before scoring).  The test images are
scored in slices, the counts summed."""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from contrastive.components.augmentations.geometry import HorizontalFlip, RandomResizedCrop
from contrastive.evaluation.features import EvalTransform, _batches

if TYPE_CHECKING:
    from contrastive.registry import Registries

#: The crop scale of the papers' linear evaluation and fine-tuning (SimCLR, MoCo, BYOL: Inception crop).
CROP_SCALE = (0.08, 1.0)


def needs_images(protocol: Any) -> bool:
    """Whether ``protocol`` is an image protocol (its ``needs_images``; False when it does not say)."""
    return bool(getattr(protocol, "needs_images", False))


def autocast(device: torch.device, precision: str):
    """``torch.autocast`` for the run's ``precision`` (bf16, fp16) on ``device``; a no-op for ``no``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(precision))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def labelled_indices(dataset) -> list[int]:
    """Indices of the samples of ``dataset`` that have a label (>= 0)."""
    from contrastive.evaluation.data import all_labels

    return torch.nonzero(all_labels(dataset) >= 0).flatten().tolist()


class Augment:
    """The papers' training augmentation, batched: random resized crop (scale 0.08–1) to ``size``
    and a horizontal flip (p 0.5), ``(B, C, H, W)`` uint8 -> uint8 ``(B, C, *size)``, on the CPU;
    draws on the global CPU generator (callers fork and seed it)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.crop, self.flip = RandomResizedCrop(tuple(size), scale=CROP_SCALE), HorizontalFlip(0.5)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.flip(self.crop(images.cpu()))


def cosine_lr(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step cosine decay of every group's lr from its value to 0 over ``total_steps``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))


def _place(group) -> tuple[int, int]:
    """(rank, world size) of this process in ``group`` (None: (0, 1))."""
    if group is None:
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(group), dist.get_world_size(group)


def _slice(count: int, rank: int, world: int) -> slice:
    """Process ``rank``'s contiguous share of ``count`` rows (the first ``count % world`` get one more)."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def sum_over_processes(tensors: list[torch.Tensor], group) -> None:
    """Replace each tensor by its sum over the processes of ``group``, in place, in one collective:
    on the default NCCL group for CUDA tensors, else through the CPU on the (gloo) ``group``."""
    import torch.distributed as dist

    if not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    if flat.is_cuda and dist.get_backend() == "nccl":
        dist.all_reduce(flat)
    else:
        host = flat.cpu()
        dist.all_reduce(host, group=group)
        flat = host.to(flat.device)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def train_and_score(
    model: nn.Module, head: nn.Sequential, train, test, *, transform: EvalTransform, groups: list[dict[str, Any]],
    epochs: int, batch_size: int, seed: int, device: torch.device, precision: str, frozen: bool, group=None,
) -> dict[str, float]:
    """Train ``head`` on ``model``'s features (``frozen``: the model stays in eval mode and gets no
    gradient; else it is trained too) with SGD + Nesterov momentum 0.9 on the parameter ``groups``
    (each ``{"params", "lr", "weight_decay"}``), a per-step cosine schedule, ``epochs`` passes over
    the labelled train images in seeded order, each batch augmented (`Augment`); then score
    top-1 (and top-5 above 5 classes) on the un-augmented test images.  All randomness (head
    init is the caller's) comes from ``seed``; the global RNG is left as it was.  ``group``: the
    processes that train together (the module docstring says how the batch is split)."""
    rank, world = _place(group)
    indices = labelled_indices(train)
    if not indices:
        raise ValueError("the evaluation's train data has no labelled images")
    size = transform.size or tuple(train[0][0].shape[-2:])
    augment = Augment(size)
    steps_per_epoch = math.ceil(len(indices) / batch_size)
    optimizer = torch.optim.SGD(groups, momentum=0.9, nesterov=True)
    schedule = cosine_lr(optimizer, max(1, epochs * steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" and device.type == "cuda" else None
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model.train(not frozen)
        head.train()
        for _ in range(epochs):
            order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
            for images, labels in _batches(train, batch_size, order):
                # BatchNorm needs two samples in training mode: the head's over the whole batch, the
                # fine-tuned backbone's over each process's slice
                if len(labels) < 2 or (not frozen and len(labels) < 2 * world):
                    continue
                mine = _slice(len(labels), rank, world)
                x = transform(augment(images)[mine].to(device))
                with autocast(device, precision):
                    with torch.no_grad() if frozen else nullcontext():
                        features = model(x)
                    if world > 1:
                        features = _GatheredSlices.apply(features, group, mine)
                    logits = head(features.float())
                loss = F.cross_entropy(logits.float(), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler is not None else loss).backward()
                if not frozen and world > 1:  # each process holds its slice's share of the backbone's gradient
                    sum_over_processes([p.grad for p in model.parameters() if p.grad is not None], group)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                schedule.step()
    if not frozen and world > 1:  # each slice moved the running statistics its own way: one model again
        stats = [b for b in model.buffers() if b.is_floating_point()]
        sum_over_processes(stats, group)
        for b in stats:
            b.div_(world)
    return score_classifier(model, head, test, transform=transform, batch_size=batch_size, device=device,
                            precision=precision, group=group)


class _GatheredSlices(torch.autograd.Function):
    """The whole batch's features ``(B, D)`` float32 from every process's slice ``(b_r, D)`` (rank order),
    on the slice's device.  Every process then computes the same loss on the same whole batch, so the
    gradient arriving here is the same everywhere, and the slice's gradient is its own rows of it (not
    a sum over processes: that is what `sum_over_processes` does with the backbone's gradients)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, group, rows: slice) -> torch.Tensor:
        from contrastive.distributed import gather_rows

        ctx.rows, ctx.dtype = rows, local.dtype
        return gather_rows(local.detach().float().cpu(), group).to(local.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad[ctx.rows].to(ctx.dtype), None, None


@torch.no_grad()
def score_classifier(model: nn.Module, head: nn.Sequential, test, *, transform: EvalTransform, batch_size: int,
                     device: torch.device, precision: str, group=None) -> dict[str, float]:
    """Top-1 (and top-5 above 5 classes) of ``head(model(x))`` on the labelled test images, eval mode;
    with a ``group``, each process scores its shard of whole batches and the counts are summed."""
    from contrastive.evaluation.features import shard

    model.eval()
    head.eval()
    num_classes = head[-1].out_features
    indices = labelled_indices(test)
    rank, world = _place(group)
    mine = shard(len(indices), batch_size, world, rank)
    counts = torch.zeros(3, dtype=torch.float64)
    for images, labels in _batches(test, batch_size, indices[mine.start : mine.stop]):
        with autocast(device, precision):
            logits = head(model(transform(images.to(device))).float())
        ranked = logits.float().topk(min(5, num_classes), dim=1).indices.cpu()
        hits = ranked == labels[:, None]
        counts += torch.tensor([int(hits[:, 0].sum()), int(hits.any(1).sum()), len(labels)], dtype=torch.float64)
    if group is not None:
        import torch.distributed as dist

        dist.all_reduce(counts, group=group)
    correct1, correct5, total = (int(c) for c in counts.tolist())
    if total == 0:
        raise ValueError("the evaluation's test data has no labelled images")
    scores = {"top1": correct1 / total}
    if num_classes > 5:
        scores["top5"] = correct5 / total
    return scores


def new_head(backbone: nn.Module, transform: EvalTransform, sample: torch.Tensor, num_classes: int,
             device: torch.device) -> nn.Sequential:
    """``(B, D) -> (B, num_classes)``: ``BatchNorm1d(D, affine=False)`` then a zero-initialised
    ``nn.Linear`` (MoCo v3's and MAE's linear probe: the parameter-free normalisation makes one lr
    fit any backbone's feature scale, and folds into the linear map); ``D`` read off the backbone's
    output on ``sample`` (a ``(C, H, W)`` uint8 image)."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        dim = backbone(transform(sample[None].to(device))).shape[1]
    backbone.train(was_training)
    linear = nn.Linear(dim, num_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False), linear).to(device)


def linear_augmented(backbone: nn.Module, train, test, *, transform: EvalTransform, num_classes: int, config,
                     seed: int, device: torch.device, precision: str = "no", group=None) -> dict[str, float]:
    """The papers' linear evaluation: a linear head on the frozen backbone (eval mode: BatchNorm
    statistics frozen), trained on randomly cropped and flipped images (``eval.linear_augmented_*``):
    top1, top5."""
    was_training = backbone.training
    flags = [p.requires_grad for p in backbone.parameters()]
    try:
        for p in backbone.parameters():
            p.requires_grad_(False)
        head = new_head(backbone, transform, train[0][0], num_classes, device)
        groups = [{"params": list(head.parameters()), "lr": config.linear_augmented_lr,
                   "weight_decay": config.linear_augmented_weight_decay}]
        return train_and_score(backbone, head, train, test, transform=transform, groups=groups,
                               epochs=config.linear_augmented_epochs, batch_size=config.linear_augmented_batch_size,
                               seed=seed, device=device, precision=precision, frozen=True, group=group)
    finally:
        for p, flag in zip(backbone.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        backbone.train(was_training)


def finetune_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None) -> list[dict[str, Any]]:
    """The backbone's parameter groups: one at ``lr``, or (``layer_decay``) timm's layer-wise groups
    (`timm.optim.param_groups_layer_decay`: lr ``lr · layer_decay^(depth from the top)``, no
    weight decay on biases and norms) for a timm model with layer groups (``group_matcher``)."""
    if layer_decay is None:
        return [{"params": list(model.parameters()), "lr": lr, "weight_decay": weight_decay}]
    if not callable(getattr(model, "group_matcher", None)):
        raise ValueError(f"eval.finetune_layer_decay needs a timm backbone with layer groups (group_matcher); "
                         f"{type(model).__name__} has none: set eval.finetune_layer_decay null")
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay)
    return [{"params": g["params"], "lr": lr * g.get("lr_scale", 1.0), "weight_decay": g["weight_decay"]} for g in groups]


def finetune(backbone: nn.Module, train, test, *, transform: EvalTransform, num_classes: int, config, seed: int,
             device: torch.device, precision: str = "no", group=None) -> dict[str, float]:
    """Fine-tuning: a copy of the backbone and a linear head trained together with labels on randomly
    cropped and flipped images (``eval.finetune_*``, optional layer-wise lr decay); the run's
    backbone is not touched: top1, top5."""
    model = copy.deepcopy(backbone)
    for p in model.parameters():
        p.requires_grad_(True)
    head = new_head(model, transform, train[0][0], num_classes, device)
    groups = finetune_groups(model, config.finetune_lr, config.finetune_weight_decay, config.finetune_layer_decay)
    groups.append({"params": list(head.parameters()), "lr": config.finetune_lr, "weight_decay": config.finetune_weight_decay})
    return train_and_score(model, head, train, test, transform=transform, groups=groups, epochs=config.finetune_epochs,
                           batch_size=config.finetune_batch_size, seed=seed, device=device, precision=precision,
                           frozen=False, group=group)


linear_augmented.needs_images = True  # type: ignore[attr-defined]
finetune.needs_images = True  # type: ignore[attr-defined]
linear_augmented.distributed = True  # type: ignore[attr-defined]
finetune.distributed = True  # type: ignore[attr-defined]


def score_images(
    backbone: nn.Module, data, protocols: list[str], config, seed: int, registries: Registries, *, device: torch.device,
    precision: str = "no", group=None,
) -> dict[str, float]:
    """``{<protocol>_<score>: value}`` of the image protocols asked (``data``: the
    [`EvalData`][contrastive.evaluation.data.EvalData]), in order.  A protocol that fails is named with
    its plugin, as [`score_features`][contrastive.evaluation.protocols.score_features] names one."""
    from contrastive.errors import EvaluationError

    out: dict[str, float] = {}
    for name in protocols:
        protocol = registries.protocols.get(name)
        together = {"group": group} if getattr(protocol, "distributed", False) else {}
        try:
            scores = protocol(backbone, data.train, data.test, transform=data.transform, num_classes=data.num_classes,
                              config=config, seed=seed, device=torch.device(device), precision=precision, **together)
            if not isinstance(scores, dict):
                raise TypeError(f"returned {type(scores).__name__}, not a dict of score names to numbers")
            scores = {str(key): float(value) for key, value in scores.items()}
        except Exception as exc:
            message = " ".join(str(exc).split()) or "(no message)"
            raise EvaluationError(f"evaluation protocol '{name}' (from {registries.protocols.source(name)}) failed: "
                                  f"{type(exc).__name__}: {message}; fix it or leave it out of eval.protocols") from exc
        out.update({f"{name}_{key}": value for key, value in scores.items()})
    return out
