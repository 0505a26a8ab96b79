"""Evaluation of a learned representation: weighted kNN and a linear probe on frozen features.

Features are extracted once per backbone by :func:`extract_features` (the one "images ->
features" path, shared by ``fit``'s final evaluation and online monitor, ``contrastive eval`` and
``contrastive embed``): the backbone in eval mode under ``torch.no_grad()``, no augmentation —
uint8 / 255, grayscale repeated to 3 channels when the backbone wants 3, a resize to the
training view size when the images differ from it, and the recipe's ``normalize`` step if it has
one (:class:`EvalTransform`).  Then

- :func:`knn_classify`: weighted kNN of Wu et al. (2018), as in solo-learn and lightly: cosine
  similarity, the ``k`` = 200 nearest training features vote for their class with weight
  ``exp(sim / T)``, T = 0.1; the similarity matrix is computed in chunks of bounded memory;
- :func:`linear_probe`: multinomial logistic regression on standardised features (mean/std
  fitted on the training features), full-batch L-BFGS with an L2 penalty — the protocol of the
  SimCLR paper's transfer experiments (appendix B.8) — with the penalty picked from a small grid
  on a held-out 10% of the training features unless the recipe fixes it.  Only the classifier's
  own weights are optimised; the backbone is never in the optimiser's reach.

Data without labels (a flat folder of photos) cannot be scored by either; there the ``label_free``
protocol reports the alignment and uniformity of Wang & Isola (2020) and the effective rank
(RankMe, Garrido et al. 2023) of the frozen features (:mod:`~contrastive.evaluation.label_free`).
``eval.protocols: auto`` (the default) picks kNN + linear or label-free by the data.

:func:`evaluate` scores a backbone with the protocols beside the baselines (the same
architecture freshly initialised with the recipe's seed, and raw pixels) and returns the
``eval`` entry of ``results.json``.

One job per module:

- :mod:`~contrastive.evaluation.data`: which data an evaluation reads (:class:`EvalData`), which
  protocols run on it, the pre-training data without the held-out images, the checks before fit
  (:func:`plan_eval`);
- :mod:`~contrastive.evaluation.holdout`: the seeded, stratified held-out split of data without
  a test split (an image folder), and dataset subsets;
- :mod:`~contrastive.evaluation.features`: images -> features (:class:`EvalTransform`,
  :func:`extract_features`);
- :mod:`~contrastive.evaluation.protocols`: the protocol contract, the ``knn`` and ``linear``
  protocols and :func:`score_features`, on tensors only (no recipes, registries or datasets), over
  :mod:`~contrastive.evaluation.knn` (blocked, shardable kNN),
  :mod:`~contrastive.evaluation.retrieval` (recall@k, mAP@R) and
  :mod:`~contrastive.evaluation.logistic` (the linear probe, L-BFGS or mini-batch by size);
- :mod:`~contrastive.evaluation.label_free`: alignment, uniformity, effective rank, on tensors only;
- :mod:`~contrastive.evaluation.scoring`: whole evaluations of a backbone (:func:`evaluate`,
  :func:`format_table`, :class:`KNNMonitor`);
- :mod:`~contrastive.evaluation.runs`: finished runs (:func:`load_run`, :func:`embed`);
- :mod:`~contrastive.evaluation.report`: ``contrastive report``, one HTML page of a run (imported
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
