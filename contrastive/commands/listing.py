"""``contrastive list``: the registered components (the module is not ``list``: that is a builtin)."""

from __future__ import annotations

from contrastive.commands.command import Command, registries


def add_arguments(parser) -> None:
    parser.add_argument("kind", nargs="?", default=None,
                        help="augmentations, backbones, heads, losses, methods, datasets, optimizers, schedulers, callbacks or protocols")
    parser.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. 'resnet*'")
    parser.add_argument("--describe", default=None, metavar="NAME", help="show a component's arguments and summary")


def run(args, overrides: list[str]) -> int:
    loaded = registries(args)
    kind = args.list.kind
    if kind is None:
        for name in loaded.kinds():
            registry = loaded[name]
            families = "".join(f" (+ {getattr(r, 'description', type(r).__name__)})" for r in registry.resolvers())
            print(f"{name}: {', '.join(registry.explicit_names()) or '-'}{families}")
        print("\nmore: contrastive list KIND [PATTERN] [--describe NAME]")
        return 0
    registry = loaded[kind]
    if args.list.describe:
        print(registry.describe(args.list.describe))
        from contrastive.recipe.scheduled import describe_values

        for line in describe_values(kind, registry.get(args.list.describe)):
            print(line)
        print(f"  registered by: {registry.source(args.list.describe)}")
        return 0
    names = registry.names(args.list.pattern)
    if registry.contract:
        print(f"# {kind}: {registry.contract}")
    width = max([24] + [len(n) + 1 for n in names if len(n) < 40])
    for name in names:  # with the first line of their docstring, or their resolver's summary
        family = getattr(registry.get(name), "family", None) if kind == "methods" else None
        tag = f" [family: {family}]" if isinstance(family, str) else ""
        print(f"{name:{width}s} {registry.summary(name)}{tag}".rstrip())
    if not names:
        print(f"(no {kind} match '{args.list.pattern}')")
    return 0


COMMAND = Command(
    name="list",
    help="list registered components",
    usage="[KIND] [PATTERN] [--describe NAME]",
    description="List registered components.",
    add_arguments=add_arguments,
    run=run,
)
