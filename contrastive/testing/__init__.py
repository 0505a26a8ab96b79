"""Conformance checks for plugin authors: run the framework's contract checks on your own parts,
from your own test suite, with contrastive installed (no checkout of this repository needed).

One line per part in a plugin's tests::

    from contrastive.testing import check_augmentation, check_loss

    def test_hard_negative_loss_conforms():
        check_loss("hard_negative", temperature=0.5)

    def test_gaussian_noise_conforms():
        check_augmentation("gaussian_noise", std=0.1, p=1.0)

    def test_loss_threshold_conforms():
        check_callback("loss_threshold", threshold=0.0)

Each ``check_*`` builds the part by its registered name (from ``contrastive.load_registries()``:
the built-ins and every installed plugin; pass ``registries=`` for another set) with the given
recipe args, and raises ``AssertionError`` naming the part and the rule it broke.  Nothing here
needs pytest.  [`contrastive.testing.losses`][contrastive.testing.losses], [`contrastive.testing.augmentations`][contrastive.testing.augmentations],
[`contrastive.testing.datasets`][contrastive.testing.datasets] and [`contrastive.testing.callbacks`][contrastive.testing.callbacks] list the rules.
The method conformance suite is [`contrastive.testing.methods.check_method`][contrastive.testing.methods.check_method] (imported from
there: it builds and trains methods, so it is not loaded with this package).
"""

from __future__ import annotations

from contrastive.testing.augmentations import check_augmentation
from contrastive.testing.callbacks import check_callback
from contrastive.testing.datasets import check_dataset
from contrastive.testing.losses import check_loss

__all__ = ["check_augmentation", "check_callback", "check_dataset", "check_loss"]
