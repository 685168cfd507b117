"""The README's install lines, run in a fresh virtualenv: they install this project only.

PyPI's ``attestd`` is somebody else's package, so the distribution is ``attestd-node``; the
import packages and the command keep the name ``attestd``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = "attestd-node"


def _run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _tree_copy(dest: Path) -> Path:
    """The working tree as a clone would have it (tracked and new files, nothing ignored)."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_distribution_name_is_not_pypis_attestd() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["name"] == DIST
    assert project["scripts"]["attestd"] == "attestd.cli:main"


def test_readme_installs_name_this_project_only() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    docs = [readme] + [p.read_text("utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    lines = [ln for text in docs for ln in text.splitlines() if "pip install" in ln]
    assert lines, "the README documents an install line"
    for line in lines:
        # `pip install 'attestd[...]'` or `pip install attestd` would fetch PyPI's attestd.
        assert "'attestd[" not in line and not line.rstrip().endswith("pip install attestd"), line


@pytest.mark.timeout(900)
def test_clone_and_git_url_installs_give_a_working_attestd(tmp_path: Path) -> None:
    tree = _tree_copy(tmp_path / "clone")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    # From a clone, as the README says (`pip install .`), with dependencies.
    _run(py, "-m", "pip", "install", "-q", ".", cwd=tree)
    help_text = _run(venv / "bin" / "attestd", "--help")
    assert "federated image-hash attestation node" in help_text
    assert "serve" in help_text and "init" in help_text
    located = _run(py, "-c", "import attestd, scanner, activitypub; print(attestd.__file__)")
    assert located.startswith(str(venv)), located
    dists = _run(py, "-m", "pip", "list", "--format=freeze")
    names = {line.split("==")[0].lower() for line in dists.splitlines()}
    assert DIST in names
    assert "attestd" not in names, "PyPI's unrelated attestd was installed"

    # From a git URL (`pip install 'attestd-node[...] @ git+https://…'`): pip refuses a URL
    # whose name does not match the project's metadata, so this checks the documented name.
    _run("git", "init", "-q", cwd=tree)
    _run("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=tree)
    _run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot", cwd=tree)
    _run(py, "-m", "pip", "uninstall", "-y", "-q", DIST)
    _run(py, "-m", "pip", "install", "-q", "--no-deps", f"{DIST}[postgres] @ git+file://{tree}")
    assert "serve" in _run(venv / "bin" / "attestd", "--help")
