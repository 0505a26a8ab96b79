"""Every import is declared: a fresh machine has only what pyproject.toml names.

A package installed by hand on a developer's machine (or CI's) makes every test pass there and
the first ``import`` fail for a user. These tests read the source, not the environment:

- every third-party module imported anywhere under ``contrastive/``, ``tests/``,
  ``benchmarks/`` and ``plugins/`` — and every name given to ``pytest.importorskip`` — belongs to
  a distribution declared for that file's role (core dependencies, or the extras its role may use);
- ``contrastive`` and each of its modules import with the core dependencies alone (every
  optional package stays behind a lazy import).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Import names whose distribution is called otherwise. The environment's own mapping
# (importlib.metadata.packages_distributions) is not used: it knows only what is installed here,
# and the point is to judge a file without the packages it may be missing.
DISTRIBUTION_OF = {
    "PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn", "skimage": "scikit-image",
    "cv2": "opencv-python", "google": "protobuf", "tomli": "tomli", "attr": "attrs",
}
# Extras that only development and benchmarking use; every other extra is a user-facing one that
# the package may import lazily.
DEVELOPER_EXTRAS = {"dev", "bench"}
# What each role may import beyond the core dependencies: (extras imported directly, extras that
# only pytest.importorskip may name, so that the test skips where they are not installed).
ROLES = {
    "contrastive": ("users", ()),
    "tests": (("dev",), ("bench",)),
    "benchmarks": (("dev", "bench"), ()),
    "plugins": (("dev",), ("bench",)),
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[<>=!~ \[;@]", r.strip(), maxsplit=1)[0]) for r in requirements}


def _extras(names) -> set[str]:
    extras = PYPROJECT.get("optional-dependencies", {})
    if names == "users":
        names = [e for e in extras if e not in DEVELOPER_EXTRAS]
    return set().union(*(_requirement_names(extras[e]) for e in names))


CORE = _requirement_names(PYPROJECT["dependencies"])


def _plugin_declared(plugin_root: Path) -> set[str]:
    project = tomllib.loads((plugin_root / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        declared |= _requirement_names(extra)
    return declared


def _local_names(path: Path) -> set[str]:
    """Top-level names that are this repository's own: its packages, plugin packages and the
    scripts beside ``path`` (benchmarks import each other by file name)."""
    names = {p.name for p in ROOT.iterdir() if p.is_dir()} | {p.stem for p in path.parent.glob("*.py")}
    for plugin in (ROOT / "plugins").iterdir():
        names |= {p.name for p in plugin.iterdir() if p.is_dir()}
    return names


def imported_modules(source: str) -> list[tuple[int, str, bool]]:
    """``(line, top-level module, via importorskip)`` for every absolute import in ``source`` and
    every literal name passed to ``pytest.importorskip``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0], False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module.split(".")[0], False))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "importorskip" and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, str(node.args[0].value).split(".")[0], True))
    return found


def undeclared(path: Path, source: str | None = None) -> list[str]:
    """One message per import of ``path`` (its text, or ``source``) that its role's declarations
    do not cover."""
    relative = path.relative_to(ROOT)
    direct_extras, skip_extras = ROLES[relative.parts[0]]
    allowed = CORE | _extras(direct_extras)
    skippable = allowed | _extras(skip_extras)
    if relative.parts[0] == "plugins":
        allowed |= _plugin_declared(ROOT / "plugins" / relative.parts[1])
        skippable |= allowed
    local = _local_names(path)
    problems = []
    for line, module, via_skip in imported_modules(path.read_text() if source is None else source):
        if module in sys.stdlib_module_names or module in local or module.startswith("_"):
            continue
        distribution = _normalise(DISTRIBUTION_OF.get(module, module))
        if distribution not in (skippable if via_skip else allowed):
            where = ("its dependencies (or a user extra, imported lazily)" if relative.parts[0] == "contrastive"
                     else f"its {direct_extras[0]} extra")
            problems.append(f"{relative}:{line}: imports {module!r} (distribution {distribution!r}), declared "
                            f"nowhere this file may use; add it to pyproject.toml, {where}")
    return problems


def _sources() -> list[Path]:
    return sorted(p for role in ROLES for p in (ROOT / role).rglob("*.py") if "build" not in p.parts)


def test_every_import_is_declared_for_its_role():
    problems = [message for path in _sources() for message in undeclared(path)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_an_undeclared_import():
    source = "import left_pad\nimport pytest\nx = pytest.importorskip('lightly')\ny = pytest.importorskip('nope')\n"
    messages = undeclared(ROOT / "tests" / "probe.py", source)
    assert [m.split(": imports ")[1].split(" ")[0] for m in messages] == ["'left_pad'", "'nope'"], messages
    assert messages[0].startswith("tests/probe.py:1:") and "its dev extra" in messages[0]
    assert undeclared(ROOT / "contrastive" / "probe.py", "import datasets\nimport lightly\n") == [
        "contrastive/probe.py:2: imports 'lightly' (distribution 'lightly'), declared nowhere this file may use; "
        "add it to pyproject.toml, its dependencies (or a user extra, imported lazily)"]


def test_the_package_imports_with_its_core_dependencies_alone():
    """Every optional distribution's modules are made unimportable, then every module of the
    package is imported: a top-level import of an optional package fails here."""
    optional = _extras(list(PYPROJECT["optional-dependencies"])) - CORE
    blocked = {name for name, dist in DISTRIBUTION_OF.items() if _normalise(dist) in optional}
    blocked |= {d.replace("-", "_") for d in optional} | {"scipy", "tensorboardX", "lightly"}
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        for name in {sorted(blocked)!r}:
            sys.modules[name] = None  # importing it now raises ImportError
        import contrastive
        failed = []
        for info in pkgutil.walk_packages(contrastive.__path__, "contrastive."):
            if info.name.endswith(".__main__"):  # runs the command line when imported
                continue
            try:
                importlib.import_module(info.name)
            except ImportError as error:
                failed.append(f"{{info.name}}: {{error}}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_role_has_sources(role):
    assert list((ROOT / role).rglob("*.py")), role
