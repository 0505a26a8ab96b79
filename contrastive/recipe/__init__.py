"""Recipes: YAML files that assemble a method from named registry parts.

Every component is ``{name: <registry name>, args: {...}}``.  ``method`` (default ``simclr``)
names the method, which gets the built ``backbone``, ``head``, ``loss`` and ``predictor`` its
signature names.  ``augmentation`` is a list of components: one view pipeline from which the
method's views (2 for SimCLR) are drawn independently; ``views`` replaces it with groups
``[{count, augmentation}, ...]`` (multi-crop: 2 global + 6 local views).  ``trainer`` holds
the loop settings below.  Command line overrides address any key with dots
(``--loss.args.temperature 0.2``, ``--augmentation.2.args.p 0.5``, ``--method.name supcon``,
``--trainer.max_epochs 1``); values are parsed as YAML.  ``callbacks`` lists components of the
``callbacks`` kind run beside the loop (``--callbacks '[{name: early_stopping, args: {monitor: loss}}]'``).

Validation ([`validate`][contrastive.recipe.validation.validate]) checks every name against the registries and every argument
against the component's signature — without building anything heavy.  The package imports no
torch.  Its modules, one job each (every name below is importable from ``contrastive.recipe``):

* [`schema`][contrastive.recipe.schema] — the dataclasses and the constants naming the recipe's keys;
* [`loading`][contrastive.recipe.loading] — reading ([`read_recipe`][contrastive.recipe.loading.read_recipe], [`load`][contrastive.recipe.loading.load]) and [`dump`][contrastive.recipe.loading.dump];
* [`overrides`][contrastive.recipe.overrides] — the dotted override grammar and [`flatten`][contrastive.recipe.overrides.flatten];
* [`validation`][contrastive.recipe.validation] — [`validate`][contrastive.recipe.validation.validate]: structure, sections, bounds;
* [`checks`][contrastive.recipe.checks] — names and arguments against the registries;
* [`batch`][contrastive.recipe.batch] — the global batch per process ([`resolve_batch`][contrastive.recipe.batch.resolve_batch]);
* [`help`][contrastive.recipe.help] — the settings as ``contrastive fit --help`` lists them;
* `yaml_values`, `signals`,
  `trust` — the YAML reader, signal names, trusted run files.
"""

from contrastive.errors import RecipeError
from contrastive.recipe import yaml_values
from contrastive.recipe.batch import batch_resolution, resolve_batch
from contrastive.recipe.checks import check_components, check_protocols, method_parts
from contrastive.recipe.help import settings_help
from contrastive.recipe.loading import builtin_recipes, dump, load, read_recipe
from contrastive.recipe.overrides import apply_overrides, flatten, parse_overrides
from contrastive.recipe.schema import (
    COMPONENT_KINDS,
    DEFAULT_METHOD,
    EVAL_BASELINES,
    EVAL_PROTOCOLS,
    IGNORED_KEYS,
    INJECTED_ARGS,
    LABEL_FREE,
    METHOD_PARTS,
    OPTIONAL_COMPONENTS,
    SUPERVISED_PROTOCOLS,
    TOP_LEVEL_KEYS,
    TOP_LEVEL_SETTINGS,
    TRACKERS,
    Component,
    EvalConfig,
    Recipe,
    TrainerConfig,
    ViewGroup,
)
from contrastive.recipe.validation import validate

__all__ = [
    "COMPONENT_KINDS",
    "DEFAULT_METHOD",
    "EVAL_BASELINES",
    "EVAL_PROTOCOLS",
    "IGNORED_KEYS",
    "INJECTED_ARGS",
    "LABEL_FREE",
    "METHOD_PARTS",
    "OPTIONAL_COMPONENTS",
    "SUPERVISED_PROTOCOLS",
    "TOP_LEVEL_KEYS",
    "TOP_LEVEL_SETTINGS",
    "TRACKERS",
    "Component",
    "EvalConfig",
    "Recipe",
    "RecipeError",
    "TrainerConfig",
    "ViewGroup",
    "apply_overrides",
    "batch_resolution",
    "builtin_recipes",
    "check_components",
    "check_protocols",
    "dump",
    "flatten",
    "load",
    "method_parts",
    "parse_overrides",
    "read_recipe",
    "resolve_batch",
    "settings_help",
    "validate",
    "yaml_values",
]
