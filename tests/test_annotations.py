"""The objects that cross package lines are typed where they are taken.

``run`` (the training :class:`~contrastive.training.build.Run`, or a callback's ``RunView``) and
``registries`` (:class:`~contrastive.registry.Registries`) travel through most of the package; a
parameter of either name without an annotation hides what a function needs.  Read from the
source (ast), so the check costs no import; the types themselves are imported under
``typing.TYPE_CHECKING`` where a module must stay torch-free.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "contrastive"
TYPED = ("run", "registries")


def _unannotated(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        args = node.args
        for arg in args.posonlyargs + args.args + args.kwonlyargs:
            if arg.arg in TYPED and arg.annotation is None:
                where = f"{path.relative_to(ROOT)}:{arg.lineno}"
                found.append(f"{where}: parameter '{arg.arg}' of {getattr(node, 'name', 'lambda')}() has no annotation")
    return found


def test_run_and_registries_parameters_are_annotated():
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _unannotated(path)]
    assert not found, "annotate them (registries: Registries, run: Run):\n" + "\n".join(found)


def test_every_module_postpones_annotations():
    """Annotations naming TYPE_CHECKING-only imports must never be evaluated at import time."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        if not any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for node in tree.body):
            continue
        future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                     and any(a.name == "annotations" for a in node.names) for node in tree.body)
        if not future:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, "add `from __future__ import annotations` to: " + ", ".join(missing)
