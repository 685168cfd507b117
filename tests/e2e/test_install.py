"""The README's install lines, run in a fresh virtualenv: they install this project only.

PyPI's ``attestd`` is somebody else's package, so the distribution is ``attestd-node``; the
import packages and the command keep the name ``attestd``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = "attestd-node"


def _run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    # Nothing from the suite's own interpreter leaks in: the fresh venv imports what it installed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)
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


def _pip_installs(text: str) -> list[list[str]]:
    """The package arguments of every `pip install` in code (fenced blocks and `spans`)."""
    code = re.findall(r"```.*?```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    found = []
    for block in code:
        for line in block.splitlines():
            for cmd in re.findall(r"pip install (.*)", line):
                cmd = re.split(r"#|&&|;", cmd)[0]
                args = shlex.split(cmd.replace("…", ""))
                specs, skip = [], False
                for arg in args:
                    if skip:
                        skip = False
                    elif arg in ("--index-url", "-i", "-r", "-w", "--find-links"):
                        skip = True
                    elif not arg.startswith("-"):
                        specs.append(arg)
                found.append(specs)
    return found


def test_docs_install_this_project_or_its_own_dependencies_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    declared = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower()
                for deps in [project["dependencies"], *project["optional-dependencies"].values()]
                for d in deps}
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    installs = [specs for path in texts for specs in _pip_installs(path.read_text("utf-8"))]
    for specs in installs:
        for spec in specs:
            if spec.startswith((".", "/", "~")):
                continue  # a clone on disk
            name = re.split(r"[<>=\[ @]", spec, maxsplit=1)[0].lower()
            # Plain "attestd" would fetch PyPI's unrelated attestd.
            assert name == DIST or name in declared, f"installs another project: {spec!r}"
    assert any(s and s[0].startswith(".") for s in installs), "a from-clone install line"
    assert any(s and s[0].startswith(f"{DIST}[") for s in installs), "a git URL install line"


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
    assert _run(venv / "bin" / "attestd", "--version").strip().startswith("attestd ")
    located = _run(py, "-c", "import attestd, scanner, activitypub; print(attestd.__file__)",
                   cwd=tmp_path)
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
    # file://localhost/…: pip's URL check wants a host part, as https://… has.
    _run(py, "-m", "pip", "install", "-q", "--no-deps",
         f"{DIST}[postgres] @ git+file://localhost{tree}")
    assert "serve" in _run(venv / "bin" / "attestd", "--help")
    assert _run(venv / "bin" / "attestd", "--version").strip().startswith("attestd ")
