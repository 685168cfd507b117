"""The import contract (pyproject.toml's [tool.importlinter], run by `make lint`) holds, and
still breaks on a wrong-way import, so it cannot silently stop checking; and the module
graph has no import circle (import-linter checks siblings; this checks every module).

Run alone: `pytest tests/unit/test_import_contract.py` (the command README's development
section shows for "no import circle").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("attestd", "scanner", "activitypub")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the packages and pyproject.toml under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=240)


def import_cycles(*packages: str) -> list[list[str]]:
    """Every import circle among the packages' modules (strongly connected components
    of two or more modules, Tarjan's algorithm), each sorted."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the three packages and pyproject.toml, to plant a wrong import in."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(root: Path, module: str, line: str) -> None:
    path = root / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_repository_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("scanner/hashes.py", "import attestd.config",
     "scanner and activitypub are libraries: they never import the node"),
    ("attestd/pipeline.py", "from activitypub._documents import ActorSpec",
     "private modules (activitypub._x) are imported only inside their package"),
    ("attestd/db/engine.py", "import attestd.http.app",
     "attestd's layers point one way"),
    ("attestd/trust.py", "import attestd.decisions",
     "attestd's layers point one way"),
    ("scanner/pdq.py", "import activitypub",
     "scanner and activitypub know nothing of each other"),
], ids=["library-imports-node", "private-module", "db-imports-http", "trust-imports-up",
        "libraries-entangled"])
def test_a_wrong_way_import_breaks_the_contract(copy: Path, module: str, line: str,
                                                broken: str) -> None:
    assert lint_imports(copy).returncode == 0  # the copy itself is clean
    plant(copy, module, line)
    result = lint_imports(copy)
    assert result.returncode != 0
    report = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in " ".join(report.split()), result.stdout


def test_a_new_module_outside_every_layer_breaks_the_contract(copy: Path) -> None:
    (copy / "attestd" / "helpers.py").write_text('"""Unplaced."""\n')
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "attestd.helpers" in result.stdout + result.stderr


def test_the_architecture_document_names_every_layer() -> None:
    # docs/architecture.md draws the layers; it must not fall behind the contract.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    layers = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    named = {name for contract in layers for layer in contract["layers"]
             for name in re.split(r"[|:]", layer)}
    document = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    missing = sorted(n.strip() for n in named if f"`{n.strip()}`" not in document)
    assert missing == [], f"docs/architecture.md's layer table lacks {missing}"


def test_no_module_is_in_an_import_circle() -> None:
    assert import_cycles(*PACKAGES) == []


def test_an_import_circle_is_found(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI's old circle: a command module importing helpers back from attestd.cli.
    plant(copy, "attestd/cli_ops.py", "from attestd.cli import cli as _unused")
    monkeypatch.syspath_prepend(str(copy))
    for name in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        monkeypatch.delitem(sys.modules, name)
    assert ["attestd.cli", "attestd.cli_ops"] in import_cycles(*PACKAGES)
