"""docs/architecture.md is true to the code.

- every path it names exists (relative to ``contrastive/``; ``tests/`` and ``plugins/`` to the root);
- every package and every module of ``contrastive/`` is named in it (a new module needs its line);
- the layering table holds: every import (inside functions too) of a package's modules is of the
  core modules, the package itself or a package its row lets it import;
- what it says imports no torch imports no torch;
- the callback order it states is ``default_callbacks``' order, and resume happens in ``build_run``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "contrastive"
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
CORE = "core"


def named_paths() -> set[str]:
    """The backticked paths the page names: ``x/`` (a folder) or ``x.py``."""
    return set(re.findall(r"`([\w./-]*(?:\.py|/))`", DOC))


def _exists(path: str) -> bool:
    base = ROOT if path.split("/")[0] in ("contrastive", "tests", "plugins", "docs") else PACKAGE
    return (base / path).exists()


def test_every_named_path_exists():
    missing = sorted(p for p in named_paths() if not _exists(p))
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_package_and_module_is_named():
    named = named_paths()
    wanted = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and path.parent != PACKAGE:
            wanted.add(relative[: -len("__init__.py")])  # a package is named by its folder
        else:
            wanted.add(relative)
    missing = sorted(wanted - named)
    assert not missing, f"docs/architecture.md does not name these parts of contrastive/: {missing}"


def layering_table() -> dict[str, set[str]]:
    """``{unit: the units it may import}`` from the table under "## Layers"."""
    section = DOC.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("package", "---"):
            continue
        unit = cells[0].strip("`")
        rows[unit] = {c.strip().strip("`") for c in cells[2].split(",") if c.strip() not in ("", "–")}
    return rows


def unit_of(module: str, units: set[str]) -> str | None:
    """The layer a dotted module name belongs to (None: not of this package)."""
    parts = module.split(".")
    if parts[0] != "contrastive":
        return None
    if len(parts) == 1:
        return CORE
    if (PACKAGE / parts[1]).is_dir():
        return parts[1] + "/"
    name = parts[1] + ".py"
    if name == "__main__.py":
        return "cli.py"
    return name if name in units else CORE


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import a file makes at run time, relative ones resolved
    (imports under ``if TYPE_CHECKING:`` are annotations only and left out)."""
    relative = path.relative_to(ROOT).with_suffix("").parts
    package = relative[:-1] if path.name != "__init__.py" else relative[:-1]
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(inner) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                 for child in node.body for inner in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = list(package[: len(package) - (node.level - 1)])
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # "from contrastive import bounds" imports the module bounds
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT / candidate.replace(".", "/")).is_dir() or (ROOT / (candidate.replace(".", "/") + ".py")).exists()
                found.append((node.lineno, candidate if is_module else base))
    return found


def test_the_layering_table_holds():
    table = layering_table()
    units = set(table)
    assert {CORE, "recipe/", "methods/", "components/", "evaluation/", "training/", "cli.py"} <= units, units
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = unit_of(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), units)
        allowed = table[own] | {own, CORE}
        for line, module in imports_of(path):
            unit = unit_of(module, units)
            if unit is not None and unit not in allowed:
                broken.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {module} ({unit})")
    assert not broken, "imports the layering table of docs/architecture.md does not allow:\n" + "\n".join(broken)


def test_the_light_modules_import_no_torch():
    assert "`contrastive --help` starts without it" in DOC
    code = ("import sys, contrastive, contrastive.registry, contrastive.plugins, contrastive.recipe, "
            "contrastive.commands, contrastive.cli; print(sorted(m for m in ('torch', 'timm', 'kornia') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_callback_order_is_the_code_s():
    from contrastive.training import callbacks as cb

    class FakeRun:  # what default_callbacks reads (as tests/training/test_loop.py builds it)
        class trainer:  # noqa: N801
            checkpoint_every, checkpoint_every_steps, keep_last, log_every, progress, speed_warmup_steps = 1, None, 2, 10, False, 5

        class recipe:  # noqa: N801
            class eval:  # noqa: N801
                monitor_every, online_linear, online_linear_lr = 0, True, 1e-3

    section = DOC.split("**The callbacks**", 1)[1]
    stated = re.findall(r"^\d+\. `(\w+)`", section, re.M)
    assert stated == [type(c).__name__ for c in cb.default_callbacks(FakeRun).callbacks]


def test_resume_happens_in_build_run():
    assert "`build_run` (`training/build.py`) restores" in DOC
    tree = ast.parse((PACKAGE / "training" / "build.py").read_text(encoding="utf-8"))
    build_run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_run")
    calls = {n.func.id for n in ast.walk(build_run) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "restore" in calls
