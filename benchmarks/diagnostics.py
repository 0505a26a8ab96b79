"""What the training diagnostics cost: the quickstart's optimiser step with and without them.

    python benchmarks/diagnostics.py                 # the quickstart recipe, CPU (~2 min on 2 cores)
    python benchmarks/diagnostics.py --recipe simclr_fmnist_cpu --rounds 6
    python benchmarks/diagnostics.py --method.name moco   # any method: recipe overrides pass through

Builds the recipe's run (``contrastive.training.build.build_run``: its data, views, model,
optimiser) and times ``train_step`` — views, forward, loss, backward, update — in alternating
blocks of ``--block`` steps: diagnostics on every step (``trainer.log_every: 1``) and never
(``log_every`` larger than the run).  Alternating blocks share the machine's noise; the median
step of each side gives ``per_record`` (how much slower a recorded step is) and
``at_log_every`` = ``per_record / log_every``, the overhead of a run that records every
``log_every`` steps (the recipe's, 10 for the quickstart).  On a busy machine whole steps vary
more than the diagnostics cost, so the method's ``loss`` alone is also timed on one step's
outputs with and without them, alternating (``diagnostics_s``): ``per_record_direct`` is that
extra time over the median step.  Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch


def measure(recipe_name: str, overrides: list[str], rounds: int, block: int, warmup: int) -> dict:
    import contrastive
    from contrastive import recipe as recipes
    from contrastive.training.build import build_run
    from contrastive.training.step import NonFiniteGuard, train_step

    registries = contrastive.load_registries()
    steps = warmup + 2 * rounds * block
    with tempfile.TemporaryDirectory() as out:
        recipe = recipes.load(recipe_name, [*overrides, "--trainer.output_dir", out, "--trainer.max_steps", str(steps + 1),
                                            "--trainer.max_epochs", "1000000", "--trainer.progress", "false",
                                            "--trainer.log_with", "[]"], registries)
        log_every = recipe.trainer.log_every
        run = build_run(recipe, registries)
        guard = NonFiniteGuard(0, run.checkpoint_dir)
        times: dict[str, list[float]] = {"with": [], "without": []}
        batches = iter(())
        run.model.train()

        def next_batch():
            nonlocal batches
            for batch in batches:
                return batch
            run.state.next_epoch()
            batches = run.batches()
            return next(batches)

        def one(record: bool) -> float:
            run.recipe.trainer.log_every = 1 if record else steps * 10
            batch = next_batch()
            tick = time.perf_counter()
            result = train_step(run, batch, guard)
            elapsed = time.perf_counter() - tick
            if record and "positive_cosine" not in result.logs:
                raise SystemExit(f"no diagnostics from method {recipe.method.name}: logs {sorted(result.logs)}")
            run.state.advance()
            return elapsed

        for _ in range(warmup):
            one(False)
        for r in range(rounds):
            for side in (("with", "without") if r % 2 == 0 else ("without", "with")):
                times[side] += [one(side == "with") for _ in range(block)]
        loss_times = time_loss(run, next_batch(), repeats=10 * rounds)
        run.accelerator.end_training()
        if run.lock is not None:
            run.lock.release()
    with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
    per_record = with_s / without_s - 1.0
    extra = statistics.median(loss_times["with"]) - statistics.median(loss_times["without"])
    direct = extra / without_s
    return {
        "recipe": recipe_name, "overrides": overrides, "method": recipe.method.name,
        "global_batch": run.global_batch, "device": str(run.device), "threads": torch.get_num_threads(),
        "steps_each": len(times["with"]), "median_step_s": {"with": with_s, "without": without_s},
        "per_record": per_record, "log_every": log_every, "at_log_every": per_record / log_every,
        "median_loss_s": {side: statistics.median(v) for side, v in loss_times.items()},
        "diagnostics_s": extra, "per_record_direct": direct, "at_log_every_direct": direct / log_every,
    }


def time_loss(run, batch, repeats: int) -> dict[str, list[float]]:
    """The method's ``loss`` on one step's outputs, with and without diagnostics, alternating:
    the diagnostics' own cost, far below the step-to-step noise of whole steps."""
    from contrastive import diagnostics

    with torch.no_grad():
        outputs = run.model(run.views(batch.images, batch.source_aspect), batch)
    times: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(repeats):
        for side in ("with", "without"):
            tick = time.perf_counter()
            with diagnostics.collecting(side == "with"):
                run.method.loss(outputs, batch)
            times[side].append(time.perf_counter() - tick)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--rounds", type=int, default=8, help="alternations of the two sides")
    parser.add_argument("--block", type=int, default=5, help="steps per side per round")
    parser.add_argument("--warmup", type=int, default=5)
    args, overrides = parser.parse_known_args(argv)
    print(json.dumps(measure(args.recipe, overrides, args.rounds, args.block, args.warmup), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
