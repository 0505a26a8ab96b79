"""The loop hands a method what the contract promises, logs its diagnostics, and keeps its
side concerns in their written-down order."""

from __future__ import annotations

import json

import pytest
import torch

import contrastive
from contrastive import diagnostics
from contrastive import recipe as recipes
from contrastive.methods.base import split_loss
from contrastive.methods.simclr import SimCLR
from contrastive.training import fit
from contrastive.training.callbacks import Callback, CallbackList
from tests.helpers import tiny_recipe_dict


class Recording(SimCLR):
    """SimCLR that records what the loop gives it and returns a diagnostic from its loss."""

    seen: list = []

    def forward(self, views, batch):
        type(self).seen.append(("forward", len(views), tuple(views[0].shape), batch.images.dtype,
                                batch.index.clone(), batch.labels.clone()))
        return super().forward(views, batch)

    def loss(self, outputs, batch):
        loss, logs = split_loss(super().loss(outputs, batch))  # SimCLR's diagnostics on recorded steps
        z = torch.nn.functional.normalize(outputs["z"].float(), dim=-1)
        return loss, {**logs, "own_positive_cosine": (z[:, 0] * z[:, 1]).sum(-1).mean().item()}

    def after_step(self, outputs, batch, step, total_steps):
        type(self).seen.append(("after_step", step, total_steps, tuple(outputs["z"].shape), len(batch)))


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    registries = contrastive.load_registries(autoload=False)
    registries.methods.register("recording", Recording)
    out = tmp_path_factory.mktemp("run")
    raw = tiny_recipe_dict(str(out), max_steps=3, batch_size=8, accumulate=2)
    raw["method"] = {"name": "recording"}
    raw["backbone"] = {"name": "test_resnet", "args": {"cifar_stem": True}}
    Recording.seen = []
    results = fit(recipes.validate(raw, registries), registries)
    dataset = registries.datasets.build("digits", image_size=16)
    return out, results, list(Recording.seen), dataset


def test_the_method_gets_batches_with_labels_and_identity(recorded_run):
    _, _, seen, dataset = recorded_run
    forwards = [s for s in seen if s[0] == "forward"]
    assert len(forwards) == 3 * 2 * 2  # 3 steps x 2 chunks x (graph-free pass + replay)
    for _, views, shape, dtype, index, labels in forwards:
        assert views == 2 and shape == (8, 3, 16, 16) and dtype == torch.uint8  # grayscale digits expanded to 3
        assert torch.equal(labels, torch.as_tensor(dataset.labels)[index])
    first_step = torch.cat([forwards[0][4], forwards[1][4]])
    assert len(set(first_step.tolist())) == 16  # the step's two chunks are distinct samples
    assert torch.equal(forwards[2][4], forwards[0][4]) and torch.equal(forwards[3][4], forwards[1][4])  # replays


def test_after_step_sees_the_whole_step_once(recorded_run):
    _, _, seen, _ = recorded_run
    assert [s for s in seen if s[0] == "after_step"] == [("after_step", k, 3, (16, 2, 16), 16) for k in (1, 2, 3)]


def test_diagnostics_reach_metrics_and_results_name_the_method(recorded_run):
    out, results, _, _ = recorded_run
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:  # the six diagnostics of the whole step (2 chunks), beside the method's own
        assert set(diagnostics.NAMES) <= set(r), r
        assert r["positive_cosine"] == pytest.approx(r["own_positive_cosine"], abs=1e-5)
        assert 0 <= r["contrastive_accuracy"] <= 1 and 0 <= r["logit_entropy"] <= 1 and -8 <= r["uniformity"] <= 0
    assert results["method"] == "recording" and results["views_per_image"] == 2
    assert results["global_batch_size"] == 16
    assert "recording" in (out / "config.yaml").read_text()


def test_callbacks_run_in_order_and_all_tear_down():
    calls = []

    class Named(Callback):
        def __init__(self, name, fail_teardown=False):
            self.name, self.fail_teardown = name, fail_teardown

        def on_step_end(self, run, result):
            calls.append(("step", self.name))

        def teardown(self, run):
            calls.append(("teardown", self.name))
            if self.fail_teardown:
                raise RuntimeError(f"{self.name} failed")

    callbacks = CallbackList([Named("a"), Named("b", fail_teardown=True), Named("c")])
    callbacks.on_step_end(None, None)
    with pytest.raises(RuntimeError, match="b failed"):
        callbacks.teardown(None)
    assert calls == [("step", "a"), ("step", "b"), ("step", "c"), ("teardown", "c"), ("teardown", "b"), ("teardown", "a")]


def test_default_order_is_the_documented_one():
    from contrastive.training import callbacks as cb

    class FakeRun:
        class trainer:  # noqa: N801
            checkpoint_every, checkpoint_every_steps, keep_last, log_every, progress, speed_warmup_steps = 1, None, 2, 10, False, 5

        class recipe:  # noqa: N801
            class eval:  # noqa: N801
                monitor_every, online_linear, online_linear_lr = 0, True, 1e-3

    order = [type(c) for c in cb.default_callbacks(FakeRun).callbacks]
    assert order == [cb.OnlineLinear, cb.Logging, cb.Checkpointing, cb.OnlineKNN, cb.RunRecord, cb.Report]
    doc = cb.__doc__
    assert (doc.index("online_linear.OnlineLinear") < doc.index("logging.Logging") < doc.index("checkpointing.Checkpointing")
            < doc.index("OnlineKNN") < doc.index("RunRecord"))
