"""``contrastive plugins``: the loaded plugins and what each registered."""

from __future__ import annotations

from contrastive.commands.command import Command, registries


def add_arguments(parser) -> None:
    """No options of its own."""


def run(args, overrides: list[str]) -> int:
    for info in registries(args).plugins:
        origin = "built-in" if info.builtin else f"{info.distribution} {info.version}"
        what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registered.items()) or "-"
        print(f"{info.name:28s} {origin:28s} {what}")
    from contrastive.plugins import AUTOLOAD_ENV, autoload_enabled

    if not autoload_enabled():
        print(f"(entry-point plugins are not loaded: {AUTOLOAD_ENV} is set)")
    return 0


COMMAND = Command(
    name="plugins",
    help="list loaded plugins",
    usage="",
    description="List the loaded plugins, their distributions and what they registered.",
    add_arguments=add_arguments,
    run=run,
)
