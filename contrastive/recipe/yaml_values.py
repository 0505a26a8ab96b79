"""The YAML every recipe, override and run ``config.yaml`` is read with: `load`.

PyYAML's ``safe_load`` with one change: a number in exponent notation without a dot (``1e-3``,
``5E4``, ``-2e-6``) is a float, as in YAML 1.2 and as anyone writing a learning rate expects.
PyYAML implements YAML 1.1, whose float pattern needs the dot (``1.0e-3``) and reads ``1e-3`` as
the *string* "1e-3", which a float argument then refuses.  Written here rather than moving to a
YAML 1.2 library (ruamel.yaml) because the rest of 1.1's safe schema is what recipes, jsonargparse
and our ``config.yaml`` files already use; only this one resolver is added, on a subclass, so
PyYAML's own ``SafeLoader`` is left as it is for other code in the process.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: Exponent notation without a dot; the forms with a dot are already SafeLoader floats.
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")


class ValueLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float (see the module docstring)."""


ValueLoader.yaml_implicit_resolvers = {key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ValueLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def load(text: str) -> Any:
    """Parse ``text`` as `yaml.safe_load` does, ``1e-3`` read as a float; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=ValueLoader)  # noqa: S506 - a SafeLoader subclass
