"""``attestd evidence``: list, export, decrypt, annotate and purge preserved evidence."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from attestd.cli_common import EXIT_REJECTED, command_actor, command_config, run_async
from attestd.config import Config
from attestd.errors import ConfigError
from attestd.evidence import crypto
from attestd.evidence.preserver import Evidence, EvidenceError, open_evidence
from attestd.evidence.record import EvidenceRecord
from attestd.evidence.report import ExportError, Reporter, package_files, write_package
from attestd.model import AuditEntry

T = TypeVar("T")


def _with_evidence(fn: Callable[[Evidence, Config], Coroutine[Any, Any, T]]) -> T:
    cfg = command_config()
    if not cfg.evidence.enabled:
        raise ConfigError("evidence is not enabled: set [evidence] enabled = true and "
                          "recipient = \"age1...\" (the admin's age public key)")

    async def go() -> T:
        from attestd.db.engine import create_engine
        from attestd.db.store import Store

        engine = create_engine(cfg.database.url)
        try:
            store = Store(engine)
            evidence = open_evidence(cfg, store, store.get_hashes)
            assert evidence is not None
            return await fn(evidence, cfg)
        finally:
            await engine.dispose()

    return run_async(go)


def _refuse(message: str) -> None:
    click.echo(f"attestd: {message}", err=True)
    sys.exit(EXIT_REJECTED)


@click.group()
def evidence() -> None:
    """Evidence preserved from deletes, quarantines and confirmed reviews, encrypted to
    evidence.recipient and kept for evidence.retention_days."""


def _summary(rec: EvidenceRecord) -> dict[str, Any]:
    decided = rec.record.get("decided") or {}
    return {"id": rec.id, "sha256": rec.sha256, "label": decided.get("label"),
            "decided_by": decided.get("decided_by"), "found_at": rec.found_at.isoformat(),
            "preserved_at": rec.preserved_at.isoformat(),
            "retain_until": rec.retain_until.isoformat(), "bytes_kept": rec.has_bytes,
            "key": (rec.record.get("source") or {}).get("key")}


@evidence.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
def list_(as_json: bool) -> None:
    """The records kept, oldest first."""
    async def go(ev: Evidence, cfg: Config) -> list[EvidenceRecord]:
        return await ev.records.all()

    for rec in _with_evidence(go):
        s = _summary(rec)
        if as_json:
            click.echo(json.dumps(s))
        else:
            click.echo(f"{s['id']:>6}  {s['sha256']}  {s['label'] or '-':<13} "
                       f"kept until {s['retain_until'][:10]}  "
                       f"{'bytes' if s['bytes_kept'] else 'no copy'}  {s['key'] or ''}")


@evidence.command()
@click.argument("record_id", metavar="ID", type=click.IntRange(min=1))
@click.argument("out", type=click.Path(path_type=Path))
def export(record_id: int, out: Path) -> None:
    """Write record ID's report package to OUT: a new folder, or OUT.tar.gz, readable only
    by you, with the CyberTipline report's fields and the file still encrypted. Nothing
    is sent anywhere; an existing OUT is never overwritten."""
    if out.exists() or out.is_symlink():
        _refuse(f"{out} already exists: give a new path (nothing was overwritten)")

    async def go(ev: Evidence, cfg: Config) -> Path:
        rec = await ev.get(record_id)
        encrypted = await ev.encrypted_bytes(rec)
        if rec.location is not None and encrypted is None:
            raise EvidenceError(f"record {rec.id}'s encrypted file {rec.location} is missing "
                                f"from {ev.files.where}")
        ec = cfg.evidence
        done = write_package(out, package_files(rec, Reporter(
            ec.reporter_first_name, ec.reporter_last_name, ec.reporter_email), encrypted))
        await ev.records.write_audit([AuditEntry(
            actor=command_actor(), action="evidence_export", sha256=rec.sha256,
            detail={"evidence": rec.id, "to": str(done)})])
        return done

    try:
        done = _with_evidence(go)
    except (EvidenceError, ExportError) as exc:
        _refuse(str(exc))
    click.echo(f"wrote {done}: file the report yourself (see README.txt in it); "
               "nothing was sent")


@evidence.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--identity", "-i", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The admin's age identity file (age-keygen's output). Never keep it "
                   "on the node.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Where to write the decrypted file (a new file; - for stdout).")
def decrypt(file: Path, identity: Path, out: Path) -> None:
    """Decrypt an evidence FILE (.age) with the admin's key; the same as
    `age --decrypt --identity KEYFILE FILE`. Needs no configuration or database."""
    try:
        identities = crypto.read_identities(identity)
        plain = crypto.decrypt(file.read_bytes(), identities)
    except (ValueError, crypto.DecryptionFailed) as exc:
        _refuse(str(exc))
    if str(out) == "-":
        sys.stdout.buffer.write(plain)
        return
    from attestd.files import create_private

    try:
        create_private(out, plain)
    except FileExistsError:
        _refuse(f"{out} already exists: give a new path (nothing was overwritten)")
    except OSError as exc:
        _refuse(f"cannot write {out}: {exc.strerror}")
    click.echo(f"wrote {out} ({len(plain)} bytes)")


@evidence.command("annotate")
@click.argument("record_id", metavar="ID", type=click.IntRange(min=1))
@click.argument("fields", nargs=-1, required=True, metavar="FIELD=VALUE...")
def annotate_(record_id: int, fields: tuple[str, ...]) -> None:
    """Add what is known of the upload to record ID (uploader=, uploader_ip=, post_url=,
    community=, ...), as the Lemmy follow-up does."""
    parsed: dict[str, Any] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep or not name:
            _refuse(f"{item!r} is not FIELD=VALUE")
        parsed[name] = value

    async def go(ev: Evidence, cfg: Config) -> EvidenceRecord:
        return await ev.annotate(record_id, parsed, actor=command_actor())

    try:
        rec = _with_evidence(go)
    except EvidenceError as exc:
        _refuse(str(exc))
    click.echo(f"record {rec.id}: {', '.join(sorted(parsed))} recorded")


@evidence.command()
def purge() -> None:
    """Remove the records (and files) whose retention has ended, each with an audit
    entry; nothing is removed before its retain_until. `serve` does this by itself."""
    async def go(ev: Evidence, cfg: Config) -> list[int]:
        return await ev.purge(actor=command_actor())

    gone = _with_evidence(go)
    click.echo(f"purged {len(gone)} record(s) past retention"
               + (f": {', '.join(map(str, gone))}" if gone else ""))
