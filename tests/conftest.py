"""Shared fixtures: a node on SQLite and on a throwaway PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from attestd.config import Config, load_config
from attestd.keys import ensure_keys


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A throwaway cluster on a private socket dir and port, stopped at the end."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("initdb/pg_ctl not found (install Debian's postgresql)")
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="attestd-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        # PostgreSQL refuses to run as root: run it as the postgres user.
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-sync"])
        opts = (f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300")
        self._run([pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                   "-w", "start"])

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(self.prefix + cmd, check=True, capture_output=True, cwd=self.root)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        psql = _pg_bin("psql") or "psql"
        subprocess.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(self.prefix + [self.pg_ctl, "-D", str(self.data), "-m", "immediate",
                                      "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    # The whole suite runs on PostgreSQL too: `make test` installs it (.ci/install-services),
    # so a cluster that cannot start is a failure, never a reason to skip.
    try:
        cluster = PostgresCluster()
    except Exception as exc:
        pytest.fail(f"the throwaway PostgreSQL cluster could not start: {exc}")
    yield cluster
    cluster.stop()


def migrate(url: str) -> None:
    from alembic import command

    from attestd.db.engine import alembic_config

    command.upgrade(alembic_config(url), "head")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of each kind."""
    if db_backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'attestd.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    migrate(url)
    return url


def make_config(tmp_path: Path, db_url: str, **sections: dict[str, Any]) -> Config:
    """A node config for tests: loopback, two decoder workers, the given overrides."""
    return make_config_env(tmp_path, db_url, **sections)[0]


def make_config_env(tmp_path: Path, db_url: str, **sections: dict[str, Any]
                    ) -> tuple[Config, dict[str, str]]:
    """make_config, plus the environment that gives the CLI the same configuration."""
    text = [f'[node]\ndata_dir = "{tmp_path / "data"}"\n',
            f'[database]\nurl = "{db_url}"\n',
            '[scanner]\nworkers = 2\n',
            '[pictrs]\nallowed_callers = ["test-caller-0123456789"]\n']
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text("\n".join(text))
    env = {}
    for section, values in sections.items():
        for key, value in values.items():
            env[f"ATTESTD_{section.upper()}__{key.upper().replace('.', '__')}"] = _toml(value)
    env.setdefault("ATTESTD_FEDERATION__ALLOW_PRIVATE_ADDRESSES", "true")
    cfg = load_config(path, env)
    ensure_keys(cfg.keys_dir)
    return cfg, {"ATTESTD_CONFIG": str(path), **env}


def run_cli(env: dict[str, str], *args: str, input: str | None = None) -> tuple[int, str]:
    """Run an ``attestd`` command in-process with ``env``; (exit code, output)."""
    from click.testing import CliRunner

    from attestd.cli import cli

    result = CliRunner().invoke(cli, list(args), env=env, input=input)
    return result.exit_code, result.output


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    """The environment of a node on each database backend, for ``run_cli``."""
    return make_config_env(tmp_path, db_url)[1]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


CALLER = "test-caller-0123456789"


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Config:
    return make_config(tmp_path, db_url)


@pytest.fixture
async def node(aiohttp_client: Any, config: Config) -> AsyncIterator[Any]:
    """A test client for a node app on the parametrised database."""
    from attestd.http import create_app

    client = await aiohttp_client(create_app(config))
    yield client


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


async def async_wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(interval)
    return False


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 15) -> int | None:
    """SIGTERM a node and wait; returns its exit code, or None if it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server (the real S3 protocol, over HTTP on loopback)."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_settings(endpoint: str, bucket: str, prefix: str = "") -> dict[str, Any]:
    """The [sweep] keys that point a node at ``bucket`` on the test S3 server."""
    return {"source": "s3", "s3.endpoint_url": endpoint, "s3.bucket": bucket,
            "s3.prefix": prefix, "s3.access_key_id": "testing",
            "s3.secret_access_key": "testing", "s3.region": "us-east-1"}


def new_bucket(endpoint: str) -> tuple[Any, str]:
    """A boto3 client and a fresh, empty bucket on the test S3 server."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket
