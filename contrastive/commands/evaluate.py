"""``contrastive eval``: score a finished run's frozen backbone (the module is not ``eval``: a builtin)."""

from __future__ import annotations

from contrastive.commands.command import Command, registries

RUN_DIR_HELP = "the run's trainer.output_dir (holds config.yaml and backbone.safetensors)"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help=RUN_DIR_HELP)
    parser.add_argument(
        "--protocol", default="auto", choices=["auto", "knn", "linear", "linear_augmented", "finetune", "label_free", "all"],
        help="which protocol(s) to run: auto (knn + linear on labelled data, label_free otherwise), all (knn + linear); "
        "linear_augmented and finetune train on images (docs/evaluation.md)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def run(args, overrides: list[str]) -> int:
    """Under a launcher (``torchrun``, ``accelerate launch``) every process extracts its shard of the
    features on its own device and scores them; the main process alone prints."""
    from contrastive.distributed import evaluation_group, join_launch
    from contrastive.evaluation import evaluate, format_table
    from contrastive.evaluation.runs import open_run

    main, device = join_launch()
    loaded = registries(args)
    recipe, backbone, plan = open_run(args.eval.run_dir, loaded, overrides)
    protocol = args.eval.protocol
    protocols = "auto" if protocol == "auto" else ["knn", "linear"] if protocol == "all" else [protocol]
    group = evaluation_group(recipe.eval.collective_timeout)
    results = evaluate(backbone.to(device), recipe, loaded, protocols=protocols, device=device, plan=plan, group=group)
    if not main:
        return 0
    if args.eval.json:
        import json

        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    return 0


COMMAND = Command(
    name="eval",
    help="evaluate a finished run (kNN, linear probe, baselines)",
    usage="RUN_DIR [--protocol auto|knn|linear|linear_augmented|finetune|label_free|all] [--json] [--eval.* overrides]",
    description="Score a finished run's frozen backbone (kNN and linear probe) beside random-init and raw-pixel "
    "baselines. Eval settings can be overridden: --eval.knn_k 20, --eval.baselines '[]', --eval.test_data.name ...",
    add_arguments=add_arguments,
    run=run,
    overrides=("--eval.",),
)
