"""One docstring style: Markdown with mkdocstrings cross-references, never Sphinx roles.

mkdocs.yml renders docstrings as Google-style Markdown; a Sphinx role (``:class:`X```) shows on
the API pages as raw text.  Write a cross-reference as ``[`X`][contrastive.module.X]`` (it links
when an API page renders ``X``; ``mkdocs build --strict`` fails on one that does not resolve) or
plain ```X```.  ``python /work/docstring_roles.py REPO`` converts roles (see its docstring).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "contrastive"
ROLE = re.compile(r":(?:py:)?(?:class|func|mod|meth|attr|data|exc|obj|const):`[^`]*`")


def _docstrings(tree: ast.Module):
    """(first line, text) of every string statement: module, class, function and attribute docstrings."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield node.lineno, node.value.value


def sphinx_roles(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    where = []
    for lineno, text in _docstrings(ast.parse(source)):
        for match in ROLE.finditer(text):
            where.append(f"{path.relative_to(PACKAGE.parent)}:{lineno + text.count(chr(10), 0, match.start())}: {match.group()}")
    for lineno, line in enumerate(source.splitlines(), 1):  # "#:" attribute comments are documentation too
        if line.lstrip().startswith("#:"):
            where += [f"{path.relative_to(PACKAGE.parent)}:{lineno}: {m.group()}" for m in ROLE.finditer(line)]
    return where


def test_no_sphinx_roles_in_docstrings():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in sphinx_roles(path)]
    assert not found, "Sphinx roles in docstrings (use [`X`][contrastive.module.X] or `X`):\n" + "\n".join(found)


def test_the_check_finds_a_role(tmp_path, monkeypatch):
    module = tmp_path / "contrastive" / "m.py"
    module.parent.mkdir()
    module.write_text('"""Top.\n\nSee :class:`Thing`."""\n\n#: a constant, see :func:`f`\nX = 1\n')
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "contrastive")
    assert sphinx_roles(module) == ["contrastive/m.py:3: :class:`Thing`", "contrastive/m.py:5: :func:`f`"]
