"""The ``hashes`` commands: import, export, list and remove hash lists."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import click

from attestd.cli_common import EXIT_REJECTED, command_actor, command_config, run_async
from attestd.config import Config
from attestd.db.store import ListChange
from attestd.hash_list_urls import (
    ListFetchError,
    UrlSource,
    forget,
    import_url,
    is_url,
    list_rows,
    shown,
    url_sources,
)
from attestd.hash_lists import CSV_HEADER, HashListError, ParseReport
from attestd.model import LABELS, AuditEntry
from attestd.services import open_services

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LIST_BYTES = 2 * 1024 * 1024 * 1024


@click.group()
def hashes() -> None:
    """Hash lists (CSV, ThreatExchange/HMA signal files) that mark matching images."""


def _source(name: str) -> str:
    if not _NAME.match(name):
        raise click.BadParameter("use 1-64 letters, digits, '.', '_' or '-'", param_hint="--source")
    return f"list:{name}"


@hashes.command("import")
@click.argument("file")
@click.option("--label", type=click.Choice([x for x in LABELS if x not in ("ok", "unreadable")]),
              help="What a match means (a CSV 'label' column overrides it); without it, "
                   "every row needs its own label.")
@click.option("--source", "name", required=True, help="A name for the list, e.g. ncmec.")
@click.option("--refresh-hours", type=click.FloatRange(min=0, min_open=True),
              help="For a URL: `attestd serve` fetches it again this often.")
def hashes_import(file: str, label: str | None, name: str, refresh_hours: float | None) -> None:
    """Import FILE (a path, or an https:// URL fetched through the node's address guard):
    a CSV whose header names any of pdq, sha256, phash, md5 (or signal_type and signal),
    or a ThreatExchange/HMA signal file ("pdq HEX" or "video_md5 HEX" per line; md5 and
    video_md5 match the exact file bytes). Nothing is imported if any line is malformed
    or the fetch fails. Importing a list again replaces it, in one transaction: hashes
    gone from the file stop matching, and none is stored twice."""
    source = _source(name)
    cfg = command_config()
    if is_url(file):
        change, report = _import_url(cfg, source, file, label, refresh_hours)
        where = shown(file)
    else:
        if refresh_hours is not None:
            raise click.BadParameter("only a URL is refreshed", param_hint="--refresh-hours")
        change, report = _import_file(cfg, source, Path(file), label)
        where = file
    skipped = ", ".join(f"{k}: {v}" for k, v in report.skipped.items())
    click.echo(f"imported {change.added + change.kept} hashes into {source} from {where} as "
               f"{label or 'labelled in the file'}: {change.added} added, {change.kept} kept, "
               f"{change.dropped} dropped"
               + (f" (skipped signals of other kinds: {skipped})" if skipped else ""))


def _import_url(cfg: Config, source: str, url: str, label: str | None,
                refresh_hours: float | None) -> tuple[ListChange, ParseReport]:
    async def go() -> tuple[ListChange, ParseReport]:
        async with open_services(cfg, follow_index=False) as svc:
            return await import_url(svc.store, cfg, source, url, label, actor=command_actor(),
                                    refresh_hours=refresh_hours)

    try:
        return run_async(go)
    except (ListFetchError, HashListError) as exc:
        raise click.ClickException(f"{shown(url)}: {exc}; nothing was imported") from None


def _import_file(cfg: Config, source: str, file: Path, label: str | None
                 ) -> tuple[ListChange, ParseReport]:
    if not file.is_file():
        raise click.ClickException(f"{file} is not a file (or an https:// URL)")
    if file.stat().st_size > MAX_LIST_BYTES:
        raise click.ClickException(f"{file} is over {MAX_LIST_BYTES} bytes")
    try:
        text = file.read_text("utf-8-sig")
    except UnicodeDecodeError:
        raise click.ClickException(f"{file} is not UTF-8 text") from None
    try:
        # Parsed whole before any write: a bad line leaves the database unchanged.
        rows, report = list_rows(text, label)
    except HashListError as exc:
        raise click.ClickException(f"{file}: {exc}; nothing was imported") from None

    async def go() -> ListChange:
        async with open_services(cfg, follow_index=False) as svc:
            change = await svc.store.replace_list(source, label or "", rows)
            await svc.store.write_audit([AuditEntry(
                actor=command_actor(), action="hashes_import", label=label, source=source,
                detail={"file": str(file), "added": change.added, "kept": change.kept,
                        "dropped": change.dropped, "skipped": report.skipped})])
            return change

    return run_async(go), report


@hashes.command("sources")
def hashes_sources() -> None:
    """Lists fetched from a URL: where from, how often, and how the last fetch went."""
    cfg = command_config()

    async def go() -> list[UrlSource]:
        async with open_services(cfg, follow_index=False) as svc:
            return await url_sources(svc.store)

    rows = run_async(go)
    for s in rows:
        every = f"every {s.refresh_hours:g} h" if s.refresh_hours else "by hand"
        ok = s.last_ok_at.isoformat(timespec="seconds") if s.last_ok_at else "never"
        line = (f"{s.source.removeprefix('list:')}  {shown(s.url)}  {every}  last ok: {ok}"
                f"  entries: {s.entries if s.entries is not None else '-'}")
        if s.last_error:
            tried = s.last_try_at.isoformat(timespec="seconds") if s.last_try_at else "?"
            line += f"  last refresh FAILED at {tried} (list kept as it was): {s.last_error}"
        click.echo(line)
    if not rows:
        click.echo("no hash lists fetched from a URL")


@hashes.command("list-sources")
def hashes_list_sources() -> None:
    """Imported lists and how many active hashes each holds."""
    cfg = command_config()

    async def go() -> list[tuple[str, str, int]]:
        async with open_services(cfg, follow_index=False) as svc:
            return await svc.store.list_sources()

    rows = run_async(go)
    for source, label, n in rows:
        click.echo(f"{source.removeprefix('list:')}  {label}  {n}")
    if not rows:
        click.echo("no hash lists imported")


@hashes.command("remove")
@click.option("--source", "name", required=True)
def hashes_remove(name: str) -> None:
    """Stop using the list NAME (its hashes stop matching at once)."""
    source = _source(name)
    cfg = command_config()

    async def go() -> int:
        async with open_services(cfg, follow_index=False) as svc:
            n = await svc.store.remove_source(source)
            await forget(svc.store, source)  # and it is no longer fetched
            if n:
                await svc.store.write_audit([AuditEntry(
                    actor=command_actor(), action="hashes_remove", source=source,
                    detail={"entries": n})])
            return n

    n = run_async(go)
    if not n:
        click.echo(f"no active list named {name}", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"removed {n} hashes of {source}")


@hashes.command("export")
@click.option("--source", "name", help="Only this list (default: every active hash, "
              "including blocks and own bad verdicts).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of standard output.")
def hashes_export(name: str | None, output: Path | None) -> None:
    """Export active hashes as CSV (pdq, pdq_quality, phash, sha256, label, source, md5)."""
    source = _source(name) if name else None
    cfg = command_config()

    async def go() -> int:
        n = 0
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(CSV_HEADER)
            async with open_services(cfg, follow_index=False) as svc:
                async for row in svc.store.export_entries(source):
                    writer.writerow(["" if v is None else v for v in row])
                    n += 1
        finally:
            if output:
                out.close()
        return n

    n = run_async(go)
    if output:
        click.echo(f"exported {n} hashes to {output}")
