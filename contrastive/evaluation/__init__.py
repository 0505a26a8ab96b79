"""Evaluation of a learned representation: weighted kNN and a linear probe on frozen features.

Features are extracted once per backbone by [`extract_features`][contrastive.evaluation.features.extract_features] (the one "images ->
features" path, shared by ``fit``'s final evaluation and online monitor, ``contrastive eval`` and
``contrastive embed``): the backbone in eval mode under ``torch.no_grad()``, no augmentation —
uint8 / 255, grayscale repeated to 3 channels when the backbone wants 3, a resize to the
training view size when the images differ from it, and the recipe's ``normalize`` step if it has
one ([`EvalTransform`][contrastive.evaluation.features.EvalTransform]).  Then

- [`knn_classify`][contrastive.evaluation.knn.knn_classify]: weighted kNN of Wu et al. (2018), as in solo-learn and lightly: cosine
  similarity, the ``k`` = 200 nearest training features vote for their class with weight
  ``exp(sim / T)``, T = 0.1; the similarity matrix is computed in chunks of bounded memory;
- [`linear_probe`][contrastive.evaluation.logistic.linear_probe]: multinomial logistic regression on standardised features (mean/std
  fitted on the training features), full-batch L-BFGS with an L2 penalty — the protocol of the
  SimCLR paper's transfer experiments (appendix B.8) — with the penalty picked from a small grid
  on a held-out 10% of the training features unless the recipe fixes it.  Only the classifier's
  own weights are optimised; the backbone is never in the optimiser's reach.

Data without labels (a flat folder of photos) cannot be scored by either; there the ``label_free``
protocol reports the alignment and uniformity of Wang & Isola (2020) and the effective rank
(RankMe, Garrido et al. 2023) of the frozen features (`label_free`).
``eval.protocols: auto`` (the default) picks kNN + linear or label-free by the data.

[`evaluate`][contrastive.evaluation.scoring.evaluate] scores a backbone with the protocols beside the baselines (the same
architecture freshly initialised with the recipe's seed, and raw pixels) and returns the
``eval`` entry of ``results.json``.

One job per module:

- `data`: which data an evaluation reads ([`EvalData`][contrastive.evaluation.data.EvalData]), which
  protocols run on it, the pre-training data without the held-out images, the checks before fit
  ([`plan_eval`][contrastive.evaluation.data.plan_eval]);
- `holdout`: the seeded, stratified held-out split of data without
  a test split (an image folder), and dataset subsets;
- `features`: images -> features ([`EvalTransform`][contrastive.evaluation.features.EvalTransform],
  [`extract_features`][contrastive.evaluation.features.extract_features]);
- `protocols`: the protocol contract, the ``knn`` and ``linear``
  protocols and [`score_features`][contrastive.evaluation.protocols.score_features], on tensors only (no recipes, registries or datasets), over
  `knn` (blocked, shardable kNN),
  `retrieval` (recall@k, mAP@R) and
  `logistic` (the linear probe, L-BFGS or mini-batch by size);
- `label_free`: alignment, uniformity, effective rank, on tensors only;
- `scoring`: whole evaluations of a backbone ([`evaluate`][contrastive.evaluation.scoring.evaluate],
  [`format_table`][contrastive.evaluation.scoring.format_table], [`KNNMonitor`][contrastive.evaluation.scoring.KNNMonitor]);
- `runs`: finished runs ([`load_run`][contrastive.evaluation.runs.load_run], [`embed`][contrastive.evaluation.runs.embed]);
- `report`: ``contrastive report``, one HTML page of a run (imported
  on its own: it brings matplotlib).
"""

from __future__ import annotations

from contrastive.evaluation.data import (
    EvalData,
    EvalPlan,
    eval_crop,
    eval_data_components,
    plan_eval,
    resolve_protocols,
    training_dataset,
)
from contrastive.evaluation.features import EvalTransform, ViewTransform, extract_features
from contrastive.evaluation.label_free import alignment, effective_rank, uniformity
from contrastive.evaluation.protocols import knn_classify, knn_predict, linear_probe, score_features
from contrastive.evaluation.runs import default_device, embed, embed_component, load_run
from contrastive.evaluation.scoring import KNNMonitor, evaluate, format_table, label_free_scores, random_init_backbone

__all__ = [
    "EvalData",
    "EvalPlan",
    "EvalTransform",
    "KNNMonitor",
    "ViewTransform",
    "alignment",
    "default_device",
    "effective_rank",
    "embed",
    "embed_component",
    "eval_crop",
    "eval_data_components",
    "evaluate",
    "extract_features",
    "format_table",
    "knn_classify",
    "knn_predict",
    "label_free_scores",
    "linear_probe",
    "load_run",
    "plan_eval",
    "random_init_backbone",
    "resolve_protocols",
    "score_features",
    "training_dataset",
    "uniformity",
]
