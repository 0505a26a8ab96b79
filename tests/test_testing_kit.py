"""``contrastive.testing``, the plugin authors' kit: a plugin's deliberately broken loss and
augmentations (installed as a fake dist-info, no pip) are caught, each naming the rule broken;
the built-in parts pass.  (The example plugin runs the kit on its own parts in its own suite:
plugins/contrastive-hardneg/tests/test_conformance.py.)"""

from __future__ import annotations

import importlib
import sys

import pytest

import contrastive
from contrastive.testing import check_augmentation, check_callback, check_dataset, check_loss
from tests.helpers import write_distribution

BROKEN = """
    import torch
    from torch import nn

    from contrastive import hookimpl


    class PerSampleLoss(nn.Module):
        \"\"\"Forgets to reduce: one value per sample.\"\"\"

        def forward(self, z_a, z_b):
            return (z_a - z_b).pow(2).sum(1)


    class CosineLogLoss(nn.Module):
        \"\"\"log(1 - cos): -inf for perfect positives.\"\"\"

        def forward(self, z_a, z_b):
            return torch.log(1 - nn.functional.cosine_similarity(z_a, z_b)).mean()


    class DetachedLoss(nn.Module):
        def forward(self, z_a, z_b):
            return (z_a - z_b).detach().pow(2).mean()


    class BatchFlip(nn.Module):
        \"\"\"One coin for the whole batch.\"\"\"

        def forward(self, images):
            return images.flip(-1) if torch.rand(()) < 0.5 else images


    class Brighten(nn.Module):
        \"\"\"Forgets to clamp.\"\"\"

        def forward(self, images):
            return images * (1 + torch.rand(images.shape[0], 1, 1, 1))


    class Ragged(torch.utils.data.Dataset):
        \"\"\"Images of two sizes, labels as tensors.\"\"\"

        num_channels = 3

        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.zeros(3, 8 + i % 2, 8, dtype=torch.uint8), torch.tensor(i % 2)


    class Quantise(nn.Module):
        \"\"\"Returns uint8.\"\"\"

        def forward(self, images):
            return (images * 255).to(torch.uint8)


    @hookimpl
    def contrastive_register(registries):
        registries.losses.register("per_sample", PerSampleLoss)
        registries.losses.register("cosine_log", CosineLogLoss)
        registries.losses.register("detached", DetachedLoss)
        registries.augmentations.register("batch_flip", BatchFlip)
        registries.augmentations.register("brighten", Brighten)
        registries.augmentations.register("quantise", Quantise)
        registries.datasets.register("ragged", Ragged)
"""


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    write_distribution(site, BROKEN, dist="acme-broken", package="acme_broken", entry_point="acme_broken")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield contrastive.load_registries()
    sys.path.remove(str(site))
    for name in list(sys.modules):
        if name.split(".")[0] == "acme_broken":
            del sys.modules[name]


@pytest.mark.parametrize(("name", "rule"), [
    ("per_sample", r"\(shape\): returned \(8,\) for inputs \(8, 16\)"),
    ("cosine_log", r"\(finite\): (nan|-inf) on perfect positives"),
    ("detached", r"\(differentiable\): the value has no autograd graph"),
])
def test_a_broken_loss_is_caught_naming_the_rule(broken, name, rule):
    with pytest.raises(AssertionError, match=rf"loss '{name}' breaks the loss contract {rule}"):
        check_loss(name, registries=broken, processes=False)


@pytest.mark.parametrize(("name", "rule"), [
    ("batch_flip", r"\(per-sample independence\): 16 identical images came back identical"),
    ("brighten", r"\(range\): values from 0\.\S+ to 1\.\S+; images stay in \[0, 1\]"),
    ("quantise", r"\(dtype\): torch.float32 in, torch.uint8 out"),
])
def test_a_broken_augmentation_is_caught_naming_the_rule(broken, name, rule):
    with pytest.raises(AssertionError, match=rf"augmentation '{name}' breaks the augmentation contract {rule}"):
        check_augmentation(name, registries=broken)


def test_a_broken_dataset_is_caught_naming_the_rule(broken):
    with pytest.raises(AssertionError, match=r"dataset 'ragged' breaks the dataset contract \(items\): dataset\[0\]'s "
                                             r"label is tensor\(0\) \(Tensor\), not an int"):
        check_dataset("ragged", registries=broken)


def test_built_in_parts_pass(registries):
    check_dataset("digits", registries=registries, image_size=16)
    check_loss("ntxent", registries=registries, processes=False, temperature=0.2)
    check_augmentation("random_resized_crop", registries=registries, size=16)
    check_augmentation("grayscale", registries=registries, p=0.5)
    check_callback("early_stopping", registries=registries, monitor="loss", mode="min", patience=2)


class Forgetful:
    """Counts steps and logs the count, but keeps no state_dict: a resumed run counts from 0."""

    def __init__(self) -> None:
        self.count = 0

    def on_step_end(self, run, result):
        self.count += 1
        run.metrics.log({"count": self.count})


class Remembering(Forgetful):
    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_a_callback_that_forgets_its_state_is_caught_and_one_that_keeps_it_passes():
    mine = contrastive.load_registries(autoload=False)
    mine.callbacks.register("forgetful", Forgetful)
    mine.callbacks.register("remembering", Remembering)
    with pytest.raises(AssertionError, match=r"callback 'forgetful' breaks the callback contract \(resume is exact\): "
                                             r"metrics.jsonl of the resumed run differs"):
        check_callback("forgetful", registries=mine, max_steps=3)
    check_callback("remembering", registries=mine, max_steps=3)


PLUGIN_TESTS = """
    from contrastive.testing import check_augmentation, check_loss


    def test_my_loss():
        check_loss("per_sample")


    def test_my_augmentation():
        check_augmentation("batch_flip")
"""


def test_a_plugins_own_suite_catches_its_broken_loss_and_augmentation(tmp_path):
    import os
    import subprocess
    import textwrap
    from pathlib import Path

    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, BROKEN, dist="acme-broken", package="acme_broken", entry_point="acme_broken")
    (tmp_path / "plugin_tests").mkdir()
    (tmp_path / "plugin_tests" / "test_acme.py").write_text(textwrap.dedent(PLUGIN_TESTS))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), root, os.environ.get("PYTHONPATH", "")])}
    env.pop("CONTRASTIVE_DISABLE_PLUGIN_AUTOLOAD", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "plugin_tests")], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "2 failed" in done.stdout
    assert "loss 'per_sample' breaks the loss contract (shape)" in done.stdout
    assert "augmentation 'batch_flip' breaks the augmentation contract (per-sample independence)" in done.stdout
