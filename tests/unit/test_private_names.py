"""No ``_private`` name is imported across modules of attestd, scanner or activitypub:
a helper another module needs is public (named without the underscore, or in a public
module). Tests may still import privates to test them; this covers the packages only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("attestd", "scanner", "activitypub")


def private_imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``path:line: from module import _name`` for each private name a module of
    ``packages`` imports from another module of them."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            parts = relative.with_suffix("").parts
            here = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                    continue
                if node.module.split(".")[0] not in packages or node.module == here:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{relative}:{node.lineno}: from {node.module} "
                                     f"import {alias.name}")
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    assert private_imports(ROOT) == []


def test_a_private_name_imported_across_modules_is_found(tmp_path: Path) -> None:
    (tmp_path / "attestd" / "db").mkdir(parents=True)
    (tmp_path / "attestd" / "db" / "store.py").write_text(
        "def _insert_ignore(): ...\nfrom attestd.db.store import _insert_ignore as again\n")
    (tmp_path / "attestd" / "review.py").write_text(
        "from attestd.db.store import __doc__, _insert_ignore, public\n"
        "from os import _exit\n")
    assert private_imports(tmp_path, ("attestd",)) == [
        "attestd/review.py:1: from attestd.db.store import _insert_ignore"]
