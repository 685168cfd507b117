from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from attestd.config import Config, default_config_text, load_config
from attestd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_shipped_example_is_what_init_writes_and_parses_to_the_defaults(tmp_path: Path) -> None:
    assert (ROOT / "config.example.toml").read_text() == default_config_text()
    # The live config.toml is the admin's, never tracked: `git pull` cannot fight it.
    assert "/config.toml" in (ROOT / ".gitignore").read_text().splitlines()
    from_file = load_config(ROOT / "config.example.toml", {})
    builtin = load_config(tmp_path / "missing.toml", {})
    # Same values, apart from paths resolved against each file's folder.
    a = from_file.model_dump(exclude={"source", "node", "database"})
    b = builtin.model_dump(exclude={"source", "node", "database"})
    assert a == b


def test_every_key_is_documented_in_config_toml() -> None:
    documented = tomllib.loads(default_config_text())

    def keys(model: type, prefix: str = "") -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            if model is Config and name == "source":
                continue  # where the file was read from, not a setting
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                out |= keys(ann, f"{prefix}{name}.")
            else:
                out.add(prefix + name)
        return out

    def flat(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
        return out

    assert keys(Config) == flat(documented)


def test_environment_overrides_parse_toml_values(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""), {
        "ATTESTD_SERVER__PORT": "9090",
        "ATTESTD_PICTRS__ALLOWED_CALLERS": '["alpha", "beta"]',
        "ATTESTD_NODE__BASE_URL": "https://attestd.example.org/",
        "ATTESTD_POLICY__ACTIONS__NSFW": "reject",
        "ATTESTD_CLASSIFIER__ENABLED": "false",
        "UNRELATED": "x",
    })
    assert cfg.server.port == 9090
    assert cfg.pictrs.allowed_callers == ("alpha", "beta")
    assert cfg.node.base_url == "https://attestd.example.org"
    assert cfg.policy.actions.nsfw == "reject"


def test_environment_beats_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nport = 1234\n")
    assert load_config(path, {}).server.port == 1234
    assert load_config(path, {"ATTESTD_SERVER__PORT": "4321"}).server.port == 4321


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, '[node]\ndata_dir = "d"\n[database]\nurl = "sqlite:///d/x.db"\n'), {})
    assert cfg.node.data_dir == tmp_path / "d"
    assert cfg.database.url == f"sqlite:///{tmp_path / 'd' / 'x.db'}"


@pytest.mark.parametrize("text,env,needle", [
    ("[server]\nprot = 1\n", {}, "server.prot: unknown key"),
    ("[nonsense]\na = 1\n", {}, "nonsense: unknown key"),
    ("", {"ATTESTD_SERVER__PORT": "eighty"}, "server.port"),
    ("", {"ATTESTD_SERVER__PORT": "70000"}, "server.port"),
    ("", {"ATTESTD_POLICY__ON_UNKNOWN": "maybe"}, "policy.on_unknown"),
    ("", {"ATTESTD_PICTRS__ALLOWED_IPS": '["not-a-net"]'}, "pictrs.allowed_ips"),
    ("", {"ATTESTD_DATABASE__URL": "mysql://x"}, "database.url"),
    ("", {"ATTESTD_PORT": "1"}, "ATTESTD_<SECTION>__<KEY>"),
    ("[server\n", {}, "not valid TOML"),
    ("", {"ATTESTD_BLOBS__BACKEND": '"s3"'}, "blobs.s3.bucket is not set"),
    ("", {"ATTESTD_BLOBS__BACKEND": '"nfs"'}, "blobs.backend"),
])
def test_bad_config_stops_with_the_key_named(tmp_path: Path, text: str, env: dict,
                                             needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text), env)
    assert needle in str(err.value)


def test_missing_file_is_an_error_only_when_required(tmp_path: Path) -> None:
    load_config(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match="attestd init"):
        load_config(tmp_path / "nope.toml", {}, require_file=True)


def test_defaults_do_not_collide_with_pictrs(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "missing.toml", {})
    assert cfg.server.port != 8080 and ":8080" not in cfg.node.base_url  # pict-rs's port
    assert cfg.sweep.pictrs.url == ""  # never a guess the API token would be sent to
    with pytest.raises(ConfigError, match="sweep.pictrs.url is not set"):
        load_config(_write(tmp_path, '[sweep]\nenabled = true\nsource = "pictrs"\n'), {})
    ok = load_config(tmp_path / "missing.toml", {"ATTESTD_SWEEP__ENABLED": "true",
                                                 "ATTESTD_SWEEP__SOURCE": "pictrs",
                                                 "ATTESTD_SWEEP__PICTRS__URL": "http://pictrs:8080"})
    assert ok.sweep.pictrs.url == "http://pictrs:8080"


def test_secrets_come_from_files_relative_to_the_config(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "callers").write_text("# pict-rs instances\ncaller-one-0123456789\n\n"
                                     "  caller-two-0123456789  \n")
    (secrets / "token").write_text("pictrs-api-key\n")
    (secrets / "s3").write_text("s3-secret\n")
    (secrets / "db").write_text(f"sqlite:///{tmp_path / 'other.db'}\n")
    path = _write(tmp_path, '[pictrs]\nallowed_callers_file = "secrets/callers"\n'
                            '[sweep.pictrs]\napi_token_file = "secrets/token"\n'
                            '[database]\nurl_file = "secrets/db"\n')
    cfg = load_config(path, {"ATTESTD_SWEEP__S3__SECRET_ACCESS_KEY_FILE": str(secrets / "s3")})
    assert cfg.pictrs.allowed_callers == ("caller-one-0123456789", "caller-two-0123456789")
    assert cfg.sweep.pictrs.api_token.get_secret_value() == "pictrs-api-key"
    assert cfg.sweep.s3.secret_access_key.get_secret_value() == "s3-secret"
    assert cfg.database.url == f"sqlite:///{tmp_path / 'other.db'}"
    for secret in ("pictrs-api-key", "s3-secret"):
        assert secret not in repr(cfg)  # kept as SecretStr, as when set inline


@pytest.mark.parametrize("text,env,needle", [
    ('[sweep.pictrs]\napi_token = "inline"\napi_token_file = "t"\n', {},
     "sweep.pictrs.api_token and sweep.pictrs.api_token_file are both set"),
    ("", {"ATTESTD_SWEEP__S3__SECRET_ACCESS_KEY": "x",
          "ATTESTD_SWEEP__S3__SECRET_ACCESS_KEY_FILE": "t"}, "are both set"),
    ('[pictrs]\nallowed_callers_file = "absent"\n', {}, "absent: No such file"),
    ('[pictrs]\nallowed_callers_file = "empty"\n', {}, "empty is empty"),
])
def test_secret_files_that_cannot_be_used_stop_with_the_key_named(
        tmp_path: Path, text: str, env: dict[str, str], needle: str) -> None:
    (tmp_path / "t").write_text("token")
    (tmp_path / "empty").write_text("# nobody yet\n")
    with pytest.raises(ConfigError, match=needle):
        load_config(_write(tmp_path, text), env)


def test_a_bad_secret_from_a_file_is_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("mysql://attestd:hunter2-secret@db/attestd")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, '[database]\nurl_file = "db"\n'), {})
    assert "database.url" in str(err.value) and "hunter2" not in str(err.value)


def test_version_is_the_project_version() -> None:
    import attestd

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert attestd.__version__ == project["version"]
