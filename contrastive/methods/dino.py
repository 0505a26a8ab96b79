"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
arXiv:2104.14294) as a method: self-distillation with no labels.

A student — backbone f and head g (the recipe's ``head:``, the ``dino`` head of
[`contrastive.components.heads.DINOHead`][contrastive.components.heads.DINOHead]: MLP, L2-normalised bottleneck, weight-normalised
layer of K prototypes), trained — and a teacher, an EMA copy of f + g that gets no gradient.
Every view goes through the student; the first G views (``global_views``, the global crops)
through the teacher too.  The student's distribution over the K outputs of each view is pulled
towards the teacher's of every *other* global view (eq. 3 of the paper)::

    P_t(x) = softmax((g_ξ(f_ξ(x)) − c) / τ_t)          teacher: centred and sharpened, no gradient
    P_s(x) = softmax(g(f(x)) / τ_s)                     student
    loss = 1/n Σ_{i<G} Σ_{v≠i} mean_b H(P_t(x_b,i), P_s(x_b,v)),     H(p, q) = −Σ_k p_k log q_k
    n = G·V − G pairs                                   (V views in all: 2 global + 10 local)

as the official code computes it (``facebookresearch/dino``, ``main_dino.py``, ``DINOLoss``).
τ_s = ``student_temperature`` (0.1); τ_t rises linearly from ``warmup_teacher_temperature``
(0.04) to ``teacher_temperature`` (0.07 for ViT-S) over ``warmup_teacher_temperature_epochs``
(30), per step here (the official code steps it once an epoch).

Centre.  ``c`` ``(K,)`` (the buffer ``center``) is an EMA of the teacher's mean output: after each
applied step ``c ← m_c·c + (1 − m_c)·mean(teacher outputs of the step)``, m_c =
``center_momentum`` (0.9), the mean over every global view of every image of the **global**
batch: each process sums its rows, one ``all_reduce`` adds the sums (and counts) of all
processes, as the official ``update_center`` does.  Without that all-reduce each process would
centre with its own shard's mean, and under DDP (whose buffer broadcast keeps process 0's) the
centre would depend on the number of processes (``tests/methods/test_dino_distributed.py``).
The loss reads ``c`` as the last ``after_step`` left it (the official code centres with the old
value too and updates it after the loss).

Teacher.  A copy of the student without dropout or stochastic depth (the official teacher is
built without ``drop_path_rate``).  After each applied step ``ξ ← m·ξ + (1 − m)·θ`` over backbone
and head, m on the cosine schedule of [`contrastive.methods.memory.momentum_schedule`][contrastive.methods.memory.momentum_schedule] from
``momentum`` (0.996) to ``final_momentum`` (1), at the step's 0-based index as the official
``cosine_scheduler``.

Last layer frozen.  For the first ``freeze_last_layer_epochs`` (1) epochs the head's last layer
does not move: [`DINO.before_optimizer_step`][contrastive.methods.dino.DINO.before_optimizer_step] drops its gradients (``grad = None``) after
backward, before clipping and the optimiser step — the official ``cancel_gradients_last_layer``.
Its gradient is still computed, so DDP sees every parameter used (a parameter detached in
``forward`` would make DDP fail at the next step).  "The last layer" is the head's ``last_layer``
(the ``dino`` head's prototypes) or, for another head, its last ``nn.Linear``.

Step counter.  ``last_step`` (a buffer, so a resumed run has it) is the loop's ``step`` of the last
applied step, 0 before the first: the teacher temperature of a step is read from it.  Settings
in epochs become steps in `DINO.set_training_length`.

Shapes.  ``forward(views, batch)`` -> ``{"student": (B, V, K), "teacher": (B, G, K)}``: the
student's logits of every view (with gradient) and the teacher's of the global views (no
gradient), before temperature and centring.  Each resolution group of views goes through the
networks in one pass ([`contrastive.methods.base.embed_views`][contrastive.methods.base.embed_views], as DINO's ``MultiCropWrapper``).

The global batch.  Apart from the centre nothing is shared between the samples: the loss is a
mean over this process's samples, so the mean over processes (DDP) is the global batch's loss.
The loss is computed in float32 (float64 kept) with autocast off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastive import diagnostics, hookimpl
from contrastive.bounds import check_arguments
from contrastive.distributed import is_distributed
from contrastive.errors import InvalidArgumentsError, RecipeError
from contrastive.methods.base import Batch, Method, Outputs, embed_views
from contrastive.methods.memory import MomentumEncoder, momentum_schedule

if TYPE_CHECKING:
    from contrastive.registry import Registries


def dino_loss(student: Tensor, teacher: Tensor, center: Tensor, teacher_temperature: float,
              student_temperature: float) -> Tensor:
    """DINO's cross-entropy (see the module docstring) of this process's samples.

    Args:
        student: ``(B, V, K)`` the student's logits of every view.
        teacher: ``(B, G, K)`` the teacher's logits of the first G views (G ≤ V), no gradient.
        center: ``(K,)`` subtracted from the teacher's logits before sharpening.
        teacher_temperature, student_temperature: τ_t, τ_s.

    Returns the mean over the ``G·V − G`` pairs (teacher view i, student view v ≠ i) of the mean
    over the B samples of ``H(P_t, P_s)``; computed in float32 (float64 kept), autocast off.

    Written here rather than taken from lightly's ``DINOLoss`` (which it equals:
    tests/methods/test_dino.py): that module updates its centre inside its forward, which the
    method contract forbids (``loss`` only reads state: it runs for a step the loop may then skip,
    and the centre moves once per *applied* step), and lightly is not a dependency of the package.
    """
    views, globals_ = student.shape[1], teacher.shape[1]
    dtype = torch.promote_types(student.dtype, torch.float32)
    with torch.autocast(device_type=student.device.type, enabled=False):
        targets = F.softmax((teacher.detach().to(dtype) - center.to(dtype)) / teacher_temperature, dim=-1)
        log_probs = F.log_softmax(student.to(dtype) / student_temperature, dim=-1)
        cross = -torch.einsum("bik,bvk->iv", targets, log_probs) / student.shape[0]  # (G, V)
        pairs = ~torch.eye(globals_, views, dtype=torch.bool, device=student.device)
        return cross[pairs].mean()


def without_dropout(module: nn.Module) -> nn.Module:
    """``module`` with every dropout and stochastic-depth rate set to 0 (in place): the teacher,
    which the official code builds without ``drop_path_rate``.  Modules with a ``drop_prob``
    (timm's ``DropPath``) and ``nn.Dropout*`` layers; nothing else changes (BatchNorm still
    normalises with the batch's statistics in training, as the official teacher's does)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.dropout._DropoutNd):
            layer.p = 0.0
        if isinstance(getattr(layer, "drop_prob", None), float):
            layer.drop_prob = 0.0
    return module


def last_layer_name(head: nn.Module) -> str | None:
    """The dotted name (under the head) of the layer DINO freezes first: the head's
    ``last_layer``, else its last ``nn.Linear``; None when it has neither."""
    if isinstance(getattr(head, "last_layer", None), nn.Module):
        return "last_layer"
    linears = [name for name, module in head.named_modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


class DINO(Method):
    """DINO: a student matches the centred, sharpened output of its momentum teacher on the
    other global views (see the module docstring).

    Args:
        backbone, head: the student's f and g (injected; the ``dino`` head in the paper's
            recipes).  The teacher is a copy of both.
        teacher_temperature: τ_t after the warm-up (0.04 in the official code's default, 0.07
            in the paper's ViT-S/16 setting).
        warmup_teacher_temperature: τ_t at the first step (0.04).
        warmup_teacher_temperature_epochs: epochs over which τ_t rises linearly (30; 0: none).
        student_temperature: τ_s (0.1).
        center_momentum: m_c of the centre's EMA (0.9).
        momentum, final_momentum: the teacher's EMA coefficient at the first and the last step,
            on a cosine schedule (0.996 → 1).
        freeze_last_layer_epochs: epochs during which the head's last layer does not move (1).
        global_views: G, how many leading views (the global crops) the teacher sees (2).

    ``forward`` -> ``{"student": (B, V, K), "teacher": (B, G, K)}``; ``loss`` -> the mean
    cross-entropy over the pairs; ``after_step`` moves the teacher and the centre.
    """

    views = 2
    arg_bounds: ClassVar[dict[str, dict[str, float]]] = {
        "teacher_temperature": {"gt": 0}, "warmup_teacher_temperature": {"gt": 0},
        "warmup_teacher_temperature_epochs": {"min": 0}, "student_temperature": {"gt": 0},
        "center_momentum": {"min": 0, "max": 1}, "momentum": {"min": 0, "max": 1},
        "final_momentum": {"min": 0, "max": 1}, "freeze_last_layer_epochs": {"min": 0}, "global_views": {"min": 1},
    }
    family = "self-distillation (momentum teacher, centring)"
    _name = "dino"

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: float = 30,
        student_temperature: float = 0.1,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        final_momentum: float = 1.0,
        freeze_last_layer_epochs: float = 1,
        global_views: int = 2,
    ) -> None:
        super().__init__()
        check_arguments(
            self._name, DINO, teacher_temperature=teacher_temperature,
            warmup_teacher_temperature=warmup_teacher_temperature,
            warmup_teacher_temperature_epochs=warmup_teacher_temperature_epochs,
            student_temperature=student_temperature, center_momentum=center_momentum, momentum=momentum,
            final_momentum=final_momentum, freeze_last_layer_epochs=freeze_last_layer_epochs, global_views=global_views,
        )
        if float(momentum) > float(final_momentum):  # a relation of two arguments, beyond each one's range
            raise InvalidArgumentsError(
                f"{self._name}: momentum must be at most final_momentum (m only grows towards it), got momentum "
                f"{momentum}, final_momentum {final_momentum}; set --method.args.final_momentum 1.0"
            )
        frozen = last_layer_name(head)
        if frozen is None and freeze_last_layer_epochs > 0:
            raise InvalidArgumentsError(
                f"{self._name}: freeze_last_layer_epochs {freeze_last_layer_epochs} freezes the head's last layer, but "
                f"{type(head).__name__} has no last_layer and no nn.Linear; use the dino head (head: {{name: dino}}) "
                f"or set --method.args.freeze_last_layer_epochs 0"
            )
        out_dim = getattr(head, "out_dim", None)
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise InvalidArgumentsError(f"{self._name} needs a head with an int attribute out_dim (the size of the "
                                        f"centre), {type(head).__name__} has out_dim={out_dim!r}")
        self.backbone = backbone  # checkpoints hold backbone.*, head.*, teacher.*, center, last_step
        self.head = head
        self.teacher = MomentumEncoder(nn.Sequential(backbone, head))
        without_dropout(self.teacher)
        self.register_buffer("center", torch.zeros(out_dim))
        self.register_buffer("last_step", torch.zeros((), dtype=torch.int64))
        self.teacher_temperature = float(teacher_temperature)
        self.warmup_teacher_temperature = float(warmup_teacher_temperature)
        self.warmup_teacher_temperature_epochs = float(warmup_teacher_temperature_epochs)
        self.student_temperature = float(student_temperature)
        self.center_momentum = float(center_momentum)
        self.momentum = float(momentum)
        self.final_momentum = float(final_momentum)
        self.freeze_last_layer_epochs = float(freeze_last_layer_epochs)
        self.global_views = int(global_views)
        self.frozen_layer = None if frozen is None else f"head.{frozen}"
        self.warmup_steps: int | None = None  # set_training_length converts the epochs into steps
        self.freeze_steps: int | None = None

    # -- schedules -------------------------------------------------------------------------------
    def set_training_length(self, steps_per_epoch: int, total_steps: int) -> None:
        super().set_training_length(steps_per_epoch, total_steps)
        self.warmup_steps = round(self.warmup_teacher_temperature_epochs * steps_per_epoch)
        self.freeze_steps = round(self.freeze_last_layer_epochs * steps_per_epoch)

    def teacher_temperature_at(self, steps_done: int) -> float:
        """τ_t of the step after ``steps_done`` steps: linear from the warm-up value to the final one
        over the warm-up's steps, then constant."""
        if self.warmup_teacher_temperature_epochs == 0:
            return self.teacher_temperature
        if steps_done == 0:  # the same whatever the warm-up's length
            return self.warmup_teacher_temperature
        if self.warmup_steps is None:
            raise RuntimeError("DINO.teacher_temperature_at: call set_training_length(steps_per_epoch, total_steps) "
                               "first (the loop does): the warm-up is given in epochs")
        if steps_done >= self.warmup_steps:
            return self.teacher_temperature
        start, end = self.warmup_teacher_temperature, self.teacher_temperature
        return start + (end - start) * steps_done / self.warmup_steps

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The teacher's EMA coefficient for applied step ``step`` (1-based) of ``total_steps``."""
        return momentum_schedule(step - 1, total_steps, self.momentum, self.final_momentum, schedule="cosine")

    def last_layer_frozen(self, step: int) -> bool:
        """Whether the head's last layer stays still at ``step`` (1-based)."""
        if self.frozen_layer is None or self.freeze_last_layer_epochs == 0:
            return False
        if self.freeze_steps is None:
            raise RuntimeError("DINO.last_layer_frozen: call set_training_length(steps_per_epoch, total_steps) first "
                               "(the loop does): the freeze is given in epochs")
        return step <= self.freeze_steps

    # -- the contract ----------------------------------------------------------------------------
    def check_views(self, counts: Sequence[int]) -> None:
        total, edges = sum(counts), [sum(counts[: i + 1]) for i in range(len(counts))]
        if total < 2:
            raise RecipeError(f"{self._name} needs at least 2 views per image (each student view is compared with "
                              f"the teacher's other global views), the recipe gives {total}")
        if self.global_views not in edges:
            raise RecipeError(
                f"{self._name}: the teacher sees the first global_views {self.global_views} views (the global crops), "
                f"which must be whole views: groups; the recipe's groups of {list(counts)} end after views {edges}: "
                f"set --method.args.global_views to one of {[e for e in edges if e < total] or edges}"
            )

    def student_encoder(self) -> nn.Module:
        """``g∘f`` as one module, parameter names matching the teacher's."""
        return nn.Sequential(self.backbone, self.head)

    def encode(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, K)``: the student's logits ``g(f(x))``."""
        return self.head(self.backbone(x))

    def forward(self, views: list[Tensor], batch: Batch) -> Outputs:
        student = embed_views(self.encode, views)
        with torch.no_grad():
            teacher = embed_views(self.teacher, views[: self.global_views])
        return {"student": student, "teacher": teacher}

    def loss(self, outputs: Outputs, batch: Batch) -> Tensor | tuple[Tensor, dict[str, float]]:
        student, teacher = outputs["student"], outputs["teacher"].detach()
        tau_t = self.teacher_temperature_at(int(self.last_step))
        loss = dino_loss(student, teacher, self.center, tau_t, self.student_temperature)
        if not diagnostics.requested():
            return loss
        logs = diagnostics.embedding_tally(student[:, : self.global_views]).result()
        logs.update(self.entropies(student, teacher, loss, tau_t))
        return loss, logs

    @torch.no_grad()
    def entropies(self, student: Tensor, teacher: Tensor, loss: Tensor, teacher_temperature: float) -> dict[str, float]:
        """DINO's collapse signals over the global batch (one all-reduce): ``teacher_entropy`` and
        ``student_entropy``, the mean entropy of P_t and P_s divided by log K (0: one-hot, the
        collapse sharpening alone gives; 1: uniform, the collapse centring alone gives), and
        ``teacher_student_kl``, the mean KL(P_t ‖ P_s) over the loss's pairs in nats (the loss
        minus the teacher's entropy)."""
        dtype = torch.promote_types(student.dtype, torch.float32)
        with torch.autocast(device_type=student.device.type, enabled=False):
            log_t = F.log_softmax((teacher.to(dtype) - self.center.to(dtype)) / teacher_temperature, dim=-1)
            log_s = F.log_softmax(student.detach().to(dtype) / self.student_temperature, dim=-1)
            h_t = -(log_t.exp() * log_t).sum(dim=-1)
            h_s = -(log_s.exp() * log_s).sum(dim=-1)
            rows = student.shape[0]
            sums = torch.stack([h_t.sum(), h_t.new_tensor(h_t.numel()), h_s.sum(), h_s.new_tensor(h_s.numel()),
                                loss.detach().to(dtype) * rows, h_t.new_tensor(rows)]).to(torch.float64)
        if is_distributed():
            torch.distributed.all_reduce(sums)
        h_teacher, h_student, mean_loss = (sums[0] / sums[1]).item(), (sums[2] / sums[3]).item(), (sums[4] / sums[5]).item()
        log_k = math.log(student.shape[-1]) if student.shape[-1] > 1 else 1.0
        return {"teacher_entropy": h_teacher / log_k, "student_entropy": h_student / log_k,
                "teacher_student_kl": mean_loss - h_teacher}

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        if self.last_layer_frozen(step):
            for parameter in self.get_submodule(self.frozen_layer).parameters():
                parameter.grad = None

    @torch.no_grad()
    def after_step(self, outputs: Outputs, batch: Batch, step: int, total_steps: int) -> None:
        self.teacher.update(self.student_encoder(), self.momentum_at(step, total_steps))
        self.update_center(outputs["teacher"])
        self.last_step.fill_(step)

    @torch.no_grad()
    def update_center(self, teacher: Tensor) -> None:
        """``c ← m_c·c + (1 − m_c)·mean`` of this step's teacher outputs ``(n, G, K)`` over every
        process (one all-reduce of the sums and the row count)."""
        rows = teacher.detach().to(self.center.dtype).flatten(0, -2)
        sums = torch.cat([rows.sum(dim=0), rows.new_tensor([rows.shape[0]])])
        if is_distributed():
            torch.distributed.all_reduce(sums)
        self.center.mul_(self.center_momentum).add_(sums[:-1] / sums[-1], alpha=1.0 - self.center_momentum)

    def trainable_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad and not name.startswith("teacher.")]


@hookimpl
def contrastive_register(registries: Registries):
    registries.methods.register("dino", DINO)
