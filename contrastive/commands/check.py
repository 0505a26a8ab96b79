"""``contrastive check``: validate a recipe and its evaluation set-up without training."""

from __future__ import annotations

from contrastive.commands.command import RECIPE, Command, registries


def add_arguments(parser) -> None:
    parser.add_argument("--recipe", "--config", dest="recipe", default=None,
                        help="recipe YAML path or built-in name (default: quickstart); --config is the same")


def run(args, overrides: list[str]) -> int:
    from contrastive import recipe as recipes

    loaded = registries(args)
    recipe = recipes.load(args.check.recipe, overrides, loaded)
    parts = [f"method={recipe.method.name}", f"data={recipe.data.name}", f"backbone={recipe.backbone.name}",
             *[f"{key}={getattr(recipe, key).name}" for key in ("head", "loss", "predictor") if getattr(recipe, key)],
             f"optimizer={recipe.optimizer.name}", f"scheduler={recipe.scheduler.name}"]
    if recipe.views is None:
        parts.append("augmentation=" + ",".join(a.name for a in recipe.augmentation))
    else:
        parts += [f"views.{i}={g.count}x" + ",".join(a.name for a in g.augmentation) for i, g in enumerate(recipe.views)]
    if recipe.callbacks:
        parts.append("callbacks=" + ",".join(c.name for c in recipe.callbacks))
    print("recipe OK: " + " ".join(parts))
    from contrastive.recipe.scheduled import learned_args, scheduled_args

    for item in scheduled_args(recipe):
        print(f"schedule: {item.where}: {item.schedule.describe()} (logged as {item.metric})")
    for item in learned_args(recipe):
        print(f"learned: {item.where}: {item.spec.describe()} (logged as {item.metric})")
    from contrastive.evaluation.data import plan_eval  # reads file lists and labels only, decodes nothing

    plan = plan_eval(recipe, loaded)
    print(plan.summary)
    for note in plan.notes:
        print(f"note: {note}")
    return 0


COMMAND = Command(
    name="check",
    help="validate a recipe without building anything heavy",
    usage="[--recipe R] [overrides ...]",
    description="Validate a recipe's names and arguments and its evaluation set-up without training.",
    add_arguments=add_arguments,
    run=run,
    overrides=RECIPE,
)
