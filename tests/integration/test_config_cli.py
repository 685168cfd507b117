"""Commands against a missing config or an unmigrated database stop (exit 3) and say which
file they looked for, and never make a second database; --config, --version, and the
one-line error when the classifier extras are missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from attestd import __version__
from attestd.cli import cli
from tests.conftest import run_cli
from tests.images import jpeg

# Commands that read or write the node's database, with the arguments they need.
DATABASE_COMMANDS = [
    ["serve"], ["db", "current"], ["override", "list"], ["override", "block", "--sha256", "a" * 64],
    ["workers", "list"], ["workers", "add", "gpu"], ["peers", "list"], ["followers", "list"],
    ["review", "list"], ["hashes", "list-sources"], ["admin", "token", "list"],
    ["admin", "set-password", "--password-stdin", "mod"], ["sweep", "report"],
    ["check", "photo.jpg"],
]


def invoke(args: list[str], **env: str | None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env={"ATTESTD_CONFIG": None, **env},
                                input="a long enough password\n")
    return result.exit_code, result.output


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder: nothing in it but an image to check."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.jpg").write_bytes(jpeg(1))
    return tmp_path


@pytest.mark.parametrize("args", [*DATABASE_COMMANDS, ["db", "upgrade"]],
                         ids=lambda a: " ".join(a[:2]))
def test_a_missing_config_stops_every_command_and_creates_nothing(
        empty_folder: Path, args: list[str]) -> None:
    before = files_under(empty_folder)
    typo = empty_folder / "etc" / "confg.toml"
    for how, env, pre in [("default", {}, []),
                          ("env", {"ATTESTD_CONFIG": str(typo)}, []),
                          ("flag", {}, ["--config", str(typo)])]:
        code, out = invoke([*pre, *args], **env)
        looked_at = empty_folder / "config.toml" if how == "default" else typo
        assert code == 3, (how, out)
        assert f"no configuration file at {looked_at}" in out and "attestd init" in out, out
        assert "Traceback" not in out
        assert files_under(empty_folder) == before, how  # no ./data/attestd.db, no folder


@pytest.mark.parametrize("args", DATABASE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_unmigrated_database_stops_every_command_and_is_not_created(
        empty_folder: Path, args: list[str]) -> None:
    config = empty_folder / "node" / "config.toml"
    assert invoke(["--config", str(config), "init"])[0] == 0
    before = files_under(empty_folder)
    code, out = invoke(["--config", str(config), *args])
    assert code == 3, out
    db = empty_folder / "node" / "data" / "attestd.db"
    assert f"no database at {db}" in out and str(config) in out
    assert "attestd db upgrade" in out
    assert files_under(empty_folder) == before


def test_config_flag_beats_the_environment_and_init_writes_there(empty_folder: Path) -> None:
    chosen, other = empty_folder / "a" / "config.toml", empty_folder / "b" / "config.toml"
    code, out = invoke(["--config", str(chosen), "init", "--base-url", "https://n.example"],
                       ATTESTD_CONFIG=str(other))
    assert code == 0 and f"wrote {chosen}" in out, out
    assert 'base_url = "https://n.example"' in chosen.read_text()
    assert chosen.read_text().replace('"https://n.example"', '"http://127.0.0.1:8470"') == \
        (Path(__file__).parents[2] / "config.example.toml").read_text()
    assert not other.exists()
    code, out = invoke(["--config", str(chosen), "db", "upgrade"], ATTESTD_CONFIG=str(other))
    assert code == 0, out
    assert (empty_folder / "a" / "data" / "attestd.db").exists()
    assert invoke(["--config", str(chosen), "override", "list"])[0] == 0
    assert not (empty_folder / "data").exists() and not (empty_folder / "b").exists()


def test_version(empty_folder: Path) -> None:
    for flag in ("--version", "-V"):
        code, out = invoke([flag])
        assert code == 0 and out.strip() == f"attestd {__version__}"


@pytest.fixture
def no_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a node installed without the classifier extra."""
    monkeypatch.setitem(sys.modules, "open_clip", None)
    monkeypatch.setitem(sys.modules, "horde_safety", None)


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_missing_classifier_extras_are_one_line_for_worker_and_serve(
        cli_env: dict[str, str], no_classifier: None, empty_folder: Path) -> None:
    code, out = run_cli(cli_env, "worker", "--node", "http://127.0.0.1:9", "--token", "x")
    assert code == 3, out
    assert "classifier extras" in out and "open_clip_torch, horde-safety" in out, out
    assert "Traceback" not in out and out.count("\n") == 1
    code, out = run_cli({**cli_env, "ATTESTD_CLASSIFIER__ENABLED": "true"}, "serve",
                        "--port", "9")
    assert code == 3 and "classifier extras" in out, out
    # Without the classifier enabled, serve does not need them (it stops here for the
    # keys, later than the check).
    code, out = run_cli({**cli_env, "ATTESTD_NODE__DATA_DIR": str(empty_folder / "nokeys")},
                        "serve")
    assert code == 3 and "rsa-2048.pem is missing" in out and "classifier extras" not in out, out


def test_worker_needs_no_config_file_unless_one_is_named(
        empty_folder: Path, no_classifier: None) -> None:
    # Nothing named and no ./config.toml: the defaults (it got as far as the extras).
    code, out = invoke(["worker", "--node", "http://127.0.0.1:9", "--token", "x"])
    assert code == 3 and "classifier extras" in out, out
    code, out = invoke(["--config", "typo.toml", "worker", "--node", "http://127.0.0.1:9",
                        "--token", "x"])
    assert code == 3 and "no configuration file at" in out, out


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_a_pictrs_sweep_without_a_url_says_so(cli_env: dict[str, str]) -> None:
    code, out = run_cli(cli_env, "sweep", "--all", "--source", "pictrs", "--api-token", "t")
    assert code != 0 and "sweep.pictrs.url is not set" in out, out


@pytest.mark.parametrize("args", [["override", "list"], ["workers", "list"], ["serve"]],
                         ids=lambda a: " ".join(a))
def test_a_database_that_is_down_is_one_line_without_the_password(
        empty_folder: Path, args: list[str]) -> None:
    from tests.conftest import free_port

    config = empty_folder / "config.toml"
    assert invoke(["--config", str(config), "init"])[0] == 0
    url = f"postgresql://attestd:pw-secret@127.0.0.1:{free_port()}/attestd"
    code, out = invoke(["--config", str(config), *args], ATTESTD_DATABASE__URL=url)
    assert code == 3 and "cannot reach the database" in out and str(config) in out, out
    assert "pw-secret" not in out and "Traceback" not in out and out.count("\n") == 1
