"""``backup`` and ``restore``: the node's keys and SQLite database in one file."""

from __future__ import annotations

from pathlib import Path

import click

from attestd.backup import create_backup, restore_backup
from attestd.cli_common import command_config


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup(file: Path) -> None:
    """Save the node's keys and (SQLite) a consistent copy of its database to FILE, a
    tar.gz readable only by you. Safe while the node runs. On PostgreSQL, back the
    database up with pg_dump; FILE then holds the keys."""
    cfg = command_config()
    done = create_backup(file, cfg.database.url, cfg.keys_dir)
    click.echo(f"wrote {done.path}: keys {', '.join(done.keys)}"
               + (" and the database" if done.database == "sqlite" else ""))
    if done.database == "postgresql":
        click.echo("the database is PostgreSQL and is not in this file: back it up with "
                   "`pg_dump --format=custom --file=attestd.pgdump DBNAME` (restore with "
                   "pg_restore into an empty database); keep both files together")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Replace the keys and database of a data folder that is not empty "
                   "(stop the node first).")
def restore(file: Path, force: bool) -> None:
    """Restore a backup from FILE into this configuration's (empty) data folder."""
    cfg = command_config(database=False)  # the database is what this brings back
    done = restore_backup(file, cfg.database.url, cfg.node.data_dir, cfg.keys_dir, force=force)
    click.echo(f"restored keys {', '.join(done.keys)} into {cfg.keys_dir}"
               + (" and the database" if done.database == "sqlite" else ""))
    if done.database == "postgresql":
        click.echo("the backup's database was PostgreSQL: pg_restore its pg_dump into an "
                   "empty database, then run `attestd db upgrade`")
    else:
        click.echo("run `attestd db upgrade` (a backup from an older version is migrated), "
                   "then start the node")
