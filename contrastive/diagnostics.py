"""Training diagnostics of a contrastive step, from the embeddings its loss already holds.

Seven numbers say what the loss is doing (``metrics.jsonl`` and the tracker, every
``trainer.log_every`` steps):

- ``positive_cosine``: mean cosine similarity of the positive pairs (anchor, positive).
- ``hardest_negative_cosine``: mean over anchors of the largest cosine to any negative.
- ``contrastive_accuracy``: share of anchors (with a positive) whose most similar candidate is a
  positive, i.e. some positive outranks every negative (for SimCLR's two views: the other view
  is the top-1 of the row; google-research/simclr's "contrastive accuracy").
- ``logit_entropy``: entropy of the softmax over each anchor's candidates (its logits
  ``cos / τ``), divided by log of the number of candidates: 1 is a uniform row (τ too high, or a
  collapsed representation), near 0 a row that puts all its mass on one candidate.
- ``alignment``: Wang & Isola (2020, arXiv:2005.10242) with α = 2: mean ``‖a − p‖²`` of the
  L2-normalised positive pairs (``2 − 2·positive_cosine``; lower is better aligned).
- ``uniformity``: Wang & Isola with t = 2: ``log mean exp(−2 ‖x − y‖²)`` over the pairs of
  L2-normalised embeddings of *different images* of the step (lower is more uniform; never
  below −8).  Wang & Isola take the pairs within one view; here pairs across views count too.
- ``embedding_std``: the standard deviation over the step's rows of each dimension of the
  L2-normalised embeddings, averaged over the D dimensions (unbiased; lightly's
  ``std_of_l2_normalized``): about ``1/sqrt(D)`` for embeddings spread over the sphere, near 0
  when they collapse to one point — the collapse signal of the negative-free methods.

The first four are about contrast (a softmax over candidates) and are left out for the
negative-free methods (BYOL, SimSiam, Barlow Twins, VICReg: `embedding_tally`), which log
``alignment``, ``uniformity`` and ``embedding_std``; `NAMES` are the contrastive methods'
seven, `EMBEDDING_NAMES` the negative-free methods' three.

Everything is computed without gradient and with autocast off, in float32 (float64 kept), from
the embeddings the method's loss receives — no second forward pass.  Each process computes its
own anchor rows against the candidates of every process and the partial sums are added over
processes (one all-reduce), so the numbers are those of the global batch; under
``trainer.accumulate`` the loss, and so this, sees the whole step's embeddings.  A number whose
pairs do not exist in a step (a batch of one image has no negatives) is left out.
`contrastive.evaluation.label_free` has alignment and uniformity of whole feature matrices
on one process; these are kept as partial sums over masked pairs instead (views of one image are
not a uniformity pair, the sums are added over processes), so they do not call it.

The loop asks for diagnostics only on the steps it records (`collecting`); a method checks
`requested` and returns them from ``loss`` as ``(loss, {name: value})`` (the methods
contract), so the other steps pay nothing.  Because the sums are all-reduced, every process must
make the same decision — the loop's is a function of the step number.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from contrastive.distributed import all_gather_no_grad, is_distributed, rank

NAMES = ("positive_cosine", "hardest_negative_cosine", "contrastive_accuracy", "logit_entropy", "alignment", "uniformity",
         "embedding_std")
EMBEDDING_NAMES = ("alignment", "uniformity", "embedding_std")
CONTRASTIVE_ONLY = ("positive_cosine", "hardest_negative_cosine", "contrastive_accuracy", "logit_entropy")
UNIFORMITY_T = 2.0
# Rows of anchors compared at once: about 2**22 similarities (16 MiB in float32) per block.
BLOCK_ENTRIES = 1 << 22

_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("contrastive_diagnostics", default=False)


@contextlib.contextmanager
def collecting(wanted: bool = True) -> Iterator[None]:
    """Within the block, `requested` is ``wanted`` (the loop wraps a method's ``loss``)."""
    token = _requested.set(bool(wanted))
    try:
        yield
    finally:
        _requested.reset(token)


def requested() -> bool:
    """Whether the loop records this step's diagnostics (a method's ``loss`` then returns them)."""
    return _requested.get()


# The partial sums, in this order; added over processes before the means are taken.
_FIELDS = ("positive_sum", "positive_pairs", "hardest_sum", "rows_with_negative", "correct", "rows_with_positive",
           "entropy_sum", "entropy_rows", "uniform_sum", "uniform_pairs")


@dataclass
class Tally:
    """Partial sums of the diagnostics over some anchor rows (``sums``: ``(len(_FIELDS),)`` float64).

    Tallies of several anchor sets add up (``a + b``: a symmetric loss's two directions);
    `result` adds them over processes and returns the means.  ``moments`` ``(3, D)``
    float64: per dimension the count, sum and sum of squares of the L2-normalised embeddings
    (``embedding_std``); None where none were tallied.  ``contrastive`` False leaves the
    contrast-only numbers out of the result (`CONTRASTIVE_ONLY`)."""

    sums: torch.Tensor
    moments: torch.Tensor | None = None
    contrastive: bool = True

    def __add__(self, other: Tally) -> Tally:
        if self.moments is None or other.moments is None:
            moments = self.moments if other.moments is None else other.moments
        else:
            moments = self.moments + other.moments
        return Tally(self.sums + other.sums, moments, self.contrastive and other.contrastive)

    def result(self) -> dict[str, float]:
        """The diagnostics of the global batch: ``{name: value}`` for each of `NAMES` whose
        pairs exist.  Collective under torch.distributed: every process must call it."""
        sums = self.sums.clone()
        moments = self.moments.clone() if self.moments is not None else None
        if is_distributed():
            torch.distributed.all_reduce(sums)
            if moments is not None:
                torch.distributed.all_reduce(moments)
        s = dict(zip(_FIELDS, sums.tolist(), strict=True))
        out: dict[str, float] = {}
        if s["positive_pairs"]:
            out["positive_cosine"] = s["positive_sum"] / s["positive_pairs"]
            out["alignment"] = 2.0 - 2.0 * out["positive_cosine"]  # ‖a − p‖² = 2 − 2 cos for unit vectors
        if s["rows_with_negative"]:
            out["hardest_negative_cosine"] = s["hardest_sum"] / s["rows_with_negative"]
        if s["rows_with_positive"]:
            out["contrastive_accuracy"] = s["correct"] / s["rows_with_positive"]
        if s["entropy_rows"]:
            out["logit_entropy"] = s["entropy_sum"] / s["entropy_rows"]
        if s["uniform_pairs"] and s["uniform_sum"] > 0:
            out["uniformity"] = math.log(s["uniform_sum"] / s["uniform_pairs"])
        if moments is not None and float(moments[0, 0]) >= 2:
            count, total, squares = moments
            variance = (squares - total * total / count) / (count - 1)
            out["embedding_std"] = float(variance.clamp(min=0).sqrt().mean())
        if not self.contrastive:
            for name in CONTRASTIVE_ONLY:
                out.pop(name, None)
        return out


def _moments(z: torch.Tensor) -> torch.Tensor:
    """``(3, D)`` float64: the row count, per-dimension sum and sum of squares of ``_unit(z)`` ``(n, D)``."""
    unit = _unit(z).to(torch.float64)
    return torch.stack([torch.full_like(unit[0], unit.shape[0]), unit.sum(dim=0), unit.pow(2).sum(dim=0)])


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.detach().to(torch.promote_types(x.dtype, torch.float32)), dim=-1)


def _block_sums(cos: torch.Tensor, positive: torch.Tensor, candidate: torch.Tensor, temperature: float | None) -> torch.Tensor:
    """Positive, hardest-negative, accuracy and entropy sums of one block of anchor rows.

    ``cos`` ``(r, C)`` cosines of the rows to their candidates; ``positive`` and ``candidate``
    ``(r, C)`` bool (positives are candidates; the rest of the candidates are negatives)."""
    negative = candidate & ~positive
    has_positive, has_negative = positive.any(dim=1), negative.any(dim=1)
    lowest = torch.finfo(cos.dtype).min
    best_positive = cos.masked_fill(~positive, lowest).amax(dim=1)
    best_negative = cos.masked_fill(~negative, lowest).amax(dim=1)
    correct = has_positive & (~has_negative | (best_positive > best_negative))
    parts = [cos[positive].sum(), positive.sum(), torch.where(has_negative, best_negative, 0).sum(), has_negative.sum(),
             correct.sum(), has_positive.sum()]
    counts = candidate.sum(dim=1)
    rows = counts >= 2
    if temperature is not None and bool(rows.any()):
        logits = (cos / temperature).masked_fill(~candidate, -math.inf)
        log_p = torch.log_softmax(logits, dim=1)
        entropy = -(log_p.exp() * log_p.masked_fill(~candidate, 0)).sum(dim=1)
        parts += [(entropy[rows] / counts[rows].to(cos.dtype).log()).sum(), rows.sum()]
    else:
        parts += [cos.new_zeros(()), cos.new_zeros(())]
    return torch.stack([p.to(torch.float64) for p in parts])


def _uniform_sums(local: torch.Tensor, columns: torch.Tensor, different: torch.Tensor) -> torch.Tensor:
    """``Σ exp(−t ‖x − y‖²)`` and the pair count over the ``different`` ``(r, C)`` pairs."""
    sq = (2.0 - 2.0 * local @ columns.T).clamp_(min=0.0)
    terms = torch.exp(-UNIFORMITY_T * sq)
    return torch.stack([terms[different].sum().to(torch.float64), different.sum().to(torch.float64)])


def _rows_per_block(columns: int) -> int:
    return max(1, BLOCK_ENTRIES // max(1, columns))


def batch_tally(z: torch.Tensor, ids: torch.Tensor, temperature: float | None, samples: torch.Tensor | None = None) -> Tally:
    """Diagnostics of in-batch contrast (SimCLR, multi-crop, SupCon; the ``ntxent`` family).

    Args:
        z: ``(n, D)`` this process's embeddings, one row per view (any dtype; normalised here).
        ids: ``(n,)`` integer group of each row: rows with equal ids are positives (the sample
            index for SimCLR, the class label for SupCon).  Every row of every process (self
            excluded) is a candidate; those of another id are its negatives.
        temperature: τ of the logits (``logit_entropy``); None leaves that number out.
        samples: ``(n,)`` the image of each row, for ``uniformity``'s pairs of different images
            (default: ``ids``).
    """
    samples = ids if samples is None else samples
    with torch.no_grad(), torch.autocast(device_type=z.device.type, enabled=False):
        local = _unit(z)
        columns = all_gather_no_grad(local)
        column_ids = all_gather_no_grad(ids.to(z.device, torch.int64))
        column_samples = all_gather_no_grad(samples.to(z.device, torch.int64))
        ids, samples = ids.to(z.device, torch.int64), samples.to(z.device, torch.int64)
        n, offset = local.shape[0], rank() * local.shape[0]
        sums = local.new_zeros(len(_FIELDS), dtype=torch.float64)
        step = _rows_per_block(columns.shape[0])
        for start in range(0, n, step):
            rows = torch.arange(start, min(n, start + step), device=z.device)
            cos = local[rows] @ columns.T
            candidate = torch.ones_like(cos, dtype=torch.bool)
            candidate[torch.arange(len(rows), device=z.device), rows + offset] = False
            positive = (ids[rows, None] == column_ids[None]) & candidate
            different = (samples[rows, None] != column_samples[None]) & candidate
            sums[:8] += _block_sums(cos, positive, candidate, temperature)
            sums[8:] += _uniform_sums(local[rows], columns, different)
    return Tally(sums, _moments(z))


def key_tally(queries: torch.Tensor, keys: torch.Tensor, temperature: float | None,
              negatives: torch.Tensor | None = None, embeddings: torch.Tensor | None = None) -> Tally:
    """Diagnostics of query-key contrast (MoCo, MoCo v3, NNCLR): query i's positive is key i.

    Args:
        queries: ``(n, D)`` this process's anchors (the trained embeddings; normalised here).
        keys: ``(n, D)`` their positives, row for row (momentum keys, or NNCLR's predictions).
        temperature: τ of the logits; None leaves ``logit_entropy`` out.
        negatives: ``(M, D)`` shared negatives (MoCo's queue): each query's candidates are then
            its own key and these rows.  None (or empty): the keys of every process are the
            candidates, the others' being negatives (MoCo v3, NNCLR, MoCo before its first push).

        embeddings: ``(n, D)`` the rows whose ``uniformity`` is measured (default: the queries):
            every pair of rows of different images over all processes — the embeddings the
            trained encoder makes, not the keys (NNCLR passes its projections, its anchors
            being support-set neighbours).
    """
    with torch.no_grad(), torch.autocast(device_type=queries.device.type, enabled=False):
        q = _unit(queries)
        k = _unit(keys).to(q.dtype)
        n, device = q.shape[0], q.device
        sums = q.new_zeros(len(_FIELDS), dtype=torch.float64)
        shared = negatives is not None and negatives.shape[0] > 0
        columns = _unit(negatives).to(q.dtype) if shared else all_gather_no_grad(k)
        step = _rows_per_block(columns.shape[0] + 1)
        for start in range(0, n, step):
            rows = torch.arange(start, min(n, start + step), device=device)
            if shared:  # column 0: the row's own key; then the queue
                cos = torch.cat([(q[rows] * k[rows]).sum(dim=1, keepdim=True), q[rows] @ columns.T], dim=1)
                positive = torch.zeros_like(cos, dtype=torch.bool)
                positive[:, 0] = True
            else:
                cos = q[rows] @ columns.T
                positive = torch.zeros_like(cos, dtype=torch.bool)
                positive[torch.arange(len(rows), device=device), rows + rank() * n] = True
            sums[:8] += _block_sums(cos, positive, torch.ones_like(positive), temperature)
        own = q if embeddings is None else _unit(embeddings).to(q.dtype)
        every = all_gather_no_grad(own)
        step = _rows_per_block(every.shape[0])
        for start in range(0, n, step):
            rows = torch.arange(start, min(n, start + step), device=device)
            different = torch.ones(len(rows), every.shape[0], dtype=torch.bool, device=device)
            different[torch.arange(len(rows), device=device), rows + rank() * n] = False
            sums[8:] += _uniform_sums(own[rows], every, different)
        moments = _moments(own)
    return Tally(sums, moments)


def embedding_tally(z: torch.Tensor) -> Tally:
    """Diagnostics of a negative-free method (BYOL, SimSiam, Barlow Twins, VICReg):
    `EMBEDDING_NAMES` only — ``alignment`` of the views of each image, ``uniformity`` over
    pairs of different images of every process, ``embedding_std``.

    Args:
        z: ``(n, V, D)`` this process's embeddings of its n images, V views each (the
            projections the loss compares; normalised here).
    """
    n, views = z.shape[0], z.shape[1]
    ids = (torch.arange(n, device=z.device) + rank() * n).repeat_interleave(views)
    tally = batch_tally(z.detach().reshape(n * views, -1), ids, None)
    return Tally(tally.sums, tally.moments, contrastive=False)
