"""What every CLI command module shares: exit codes, the command's configuration (checked
before use), running a coroutine, and who is acting. Imports nothing of the CLI itself, so
``cli`` and ``cli_*`` import it and never each other's helpers (no import circle)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from attestd.config import Config, load_config
from attestd.errors import ConfigError, DatabaseNotReady
from attestd.logs import setup_logging

T = TypeVar("T")

# Exit codes: 0 ok / all accepted, 1 rejected or failed, 2 usage, 3 configuration or database.
EXIT_REJECTED, EXIT_USAGE, EXIT_SETUP = 1, 2, 3


def config_path() -> tuple[Path, bool]:
    """The config file this command uses, and whether it was named (--config or env)."""
    meta = click.get_current_context().meta
    return meta["attestd.config"], meta["attestd.config_named"]


def command_config(*, database: bool = True, optional: bool = False) -> Config:
    """The configuration, after checking that its file exists (unless ``optional`` and not
    named) and, when ``database``, that its database is migrated, so that no command
    works on a database the node never uses (nor creates one as a side effect)."""
    path, named = config_path()
    if not path.exists() and (named or not optional):
        how = "named by --config or $ATTESTD_CONFIG" if named else "the default, ./config.toml"
        raise ConfigError(f"no configuration file at {path} ({how}): run `attestd init` to "
                          "write one there, or give the node's with --config PATH")
    cfg = load_config(path)
    setup_logging(cfg.logging.level, cfg.logging.repeat_interval_s, cfg.logging.format)
    if database:
        check_schema(cfg)
    return cfg


def run_async(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``coro_fn()`` makes to completion, on a fresh event loop."""
    return asyncio.run(coro_fn())


def command_actor() -> str:
    """Who the audit log says acted: ``cli:<login name>``, else ``cli``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def check_schema(cfg: Config) -> None:
    """Raise DatabaseNotReady (naming the command to run and the config file it came
    from) unless the schema is current; a missing SQLite file is not created."""
    from attestd.db.engine import check_schema_current, create_engine, sqlite_path

    where = f"database.url of {cfg.source}"
    db_file = sqlite_path(cfg.database.url)
    if db_file is not None and not db_file.exists():
        raise DatabaseNotReady(f"no database at {db_file} ({where}): run `attestd db upgrade` "
                               "to create it, or fix database.url if the node's is elsewhere")

    async def go() -> None:
        engine = create_engine(cfg.database.url)
        try:
            await check_schema_current(engine, cfg.database.url)
        finally:
            await engine.dispose()

    try:
        run_async(go)
    except DatabaseNotReady as exc:
        raise DatabaseNotReady(f"{exc} ({where})") from exc
