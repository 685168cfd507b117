"""The ``attestd`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from attestd import __version__
from attestd.cli_common import (
    EXIT_REJECTED,
    EXIT_SETUP,
    command_actor,
    command_config,
    config_path,
    run_async,
)
from attestd.cli_evidence import evidence
from attestd.cli_federation import followers, peers, review
from attestd.cli_hashes import hashes
from attestd.cli_lemmy import lemmy
from attestd.cli_ops import backup, restore
from attestd.cli_sweep import sweep
from attestd.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    NodeConfig,
    default_config_text,
    load_config,
)
from attestd.db.failures import describe_failure
from attestd.errors import AttestdError
from attestd.keys import ensure_keys, load_keys
from scanner import UnreadableImage, normalise_hex, sha256_hex

T = TypeVar("T")
S = TypeVar("S")


def main() -> None:
    """Entry point of the console script."""
    try:
        cli(standalone_mode=True)
    except AttestdError as exc:
        click.echo(f"attestd: {exc}", err=True)
        sys.exit(EXIT_SETUP)


class _Cli(click.Group):
    """Failures a person fixes outside attestd (configuration, database, disk) end a
    command with one line on stderr and exit 3, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AttestdError as exc:
            message = str(exc)
        except (SQLAlchemyError, OSError) as exc:
            message = describe_failure(exc)
        click.echo(f"attestd: {message}", err=True)
        ctx.exit(EXIT_SETUP)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", envvar=CONFIG_ENV, metavar="PATH",
              type=click.Path(dir_okay=False, path_type=Path),
              help=f"The node's configuration file (default: ${CONFIG_ENV}, else ./config.toml).")
@click.version_option(__version__, "--version", "-V", prog_name="attestd",
                      message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None) -> None:
    """attestd: federated image-hash attestation node.

    The configuration file is --config PATH, else $ATTESTD_CONFIG, else ./config.toml;
    `attestd init` writes it. Every other command stops (exit 3) if it is missing.
    """
    ctx.meta["attestd.config"] = (config_file or Path(DEFAULT_CONFIG_PATH)).absolute()
    ctx.meta["attestd.config_named"] = config_file is not None


# -- init and database ----------------------------------------------------------------------

@cli.command()
@click.option("--base-url", help="Public URL of this node, e.g. https://attestd.example.org")
def init(base_url: str | None) -> None:
    """Write the config if missing, create the data folder and the node's keys.

    Running it again changes nothing.
    """
    path, _ = config_path()
    if not path.exists():
        text = default_config_text()
        if base_url:
            text = text.replace(f"base_url = {json.dumps(NodeConfig().base_url)}",
                                f"base_url = {json.dumps(base_url.rstrip('/'))}", 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        click.echo(f"wrote {path}")
    else:
        click.echo(f"{path} exists; left unchanged")
    cfg = load_config(path)
    if base_url and cfg.node.base_url != base_url.rstrip("/"):
        click.echo(f"note: node.base_url stays {cfg.node.base_url}; edit {path} to change it")
    cfg.node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for created in ensure_keys(cfg.keys_dir):
        click.echo(f"generated {created}")
    load_keys(cfg.keys_dir)  # refuses keys that are unreadable or readable by others
    click.echo(f"node {cfg.node.base_url}: data in {cfg.node.data_dir}")


@cli.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to this version's newest revision."""
    from alembic import command

    from attestd.db.engine import alembic_config, private_sqlite_file

    cfg = command_config(database=False)
    if cfg.database.url.startswith("sqlite:///"):
        private_sqlite_file(Path(cfg.database.url[len("sqlite:///"):]))
    try:
        command.upgrade(alembic_config(cfg.database.url), "head")
    except Exception as exc:
        raise AttestdError(f"database upgrade failed: {exc}") from exc
    click.echo("database schema is current")


@db.command("current")
def db_current() -> None:
    """Show whether the database schema is current."""
    command_config()
    click.echo("database schema is current")


# -- serve ------------------------------------------------------------------------------------

@cli.command()
@click.option("--host", help="Address to listen on (default: server.host)")
@click.option("--port", type=int, help="Port to listen on (default: server.port)")
def serve(host: str | None, port: int | None) -> None:
    """Run the node's HTTP server."""
    from attestd.config import split_listen
    from attestd.http import create_app, serving
    from attestd.http.access_log import RedactingAccessLogger
    from attestd.http.appkeys import METRICS

    cfg = command_config()  # the schema is checked first: fail fast, before binding the port
    if cfg.classifier.enabled:
        _require_classifier()
    load_keys(cfg.keys_dir)
    app = create_app(cfg)
    public = split_listen(cfg.server.public_listen) if cfg.server.public_listen else None
    serving.run(app, cfg.server, host or cfg.server.host, port or cfg.server.port,
                access_log_class=RedactingAccessLogger, public=public,
                on_refused=app[METRICS].connections_refused.inc, echo=click.echo)


# -- check ------------------------------------------------------------------------------------

@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per file.")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
def check(as_json: bool, files: tuple[Path, ...]) -> None:
    """Check local FILES through the same pipeline pict-rs uploads go through.

    Exit 0 if all are accepted, 1 if any is rejected, 2 on usage errors.
    """
    from attestd.services import open_services

    cfg = command_config()
    actor = command_actor()

    async def go() -> bool:
        all_ok = True
        async with open_services(cfg, follow_index=False) as svc:
            for path in files:
                outcome = await svc.pipeline.check(path.read_bytes(), actor=actor)
                all_ok &= outcome.decision == "accept"
                if as_json:
                    click.echo(json.dumps({"file": str(path), **outcome.as_json(),
                                           "pdq": outcome.hashes.first.pdq if outcome.hashes else None,
                                           "phash": outcome.hashes.first.phash if outcome.hashes else None}))
                else:
                    click.echo(f"{outcome.decision.upper():6} {path}  "
                               f"[{outcome.label or 'unknown'} by {outcome.source}] {outcome.reason}")
        return all_ok

    if not run_async(go):
        sys.exit(EXIT_REJECTED)


# -- overrides --------------------------------------------------------------------------------

@cli.group()
def override() -> None:
    """Admin overrides: allow or block images, strongest of all rules."""


def _override_command(action: str) -> Callable[..., None]:
    @click.argument("files", nargs=-1,
                    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
    @click.option("--sha256", "shas", multiple=True, help="Exact sha256 (hex); repeatable.")
    @click.option("--note", default="", help="Why (kept in the audit log).")
    def cmd(files: tuple[Path, ...], shas: tuple[str, ...], note: str) -> None:
        if not files and not shas:
            raise click.UsageError("give FILE arguments or --sha256 HEX")
        try:
            hexes = [normalise_hex(s, 64, "--sha256") for s in shas]
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        cfg = command_config()
        run_async(lambda: _set_overrides(cfg, action, files, hexes, note))
    return cmd


async def _set_overrides(cfg: Config, action: str, files: tuple[Path, ...],
                         shas: list[str], note: str) -> None:
    from attestd import overrides
    from attestd.services import open_services

    actor = command_actor()
    failed = False
    async with open_services(cfg, follow_index=False) as svc:
        targets: list[tuple[str, str, Any]] = []
        for path in files:
            data = path.read_bytes()
            try:
                hashes = await svc.pool.hash(data)
            except UnreadableImage as exc:
                if action == "allow":
                    targets.append((str(path), sha256_hex(data), None))
                    continue
                click.echo(f"cannot block {path}: {exc.reason}. To block its exact bytes, "
                           f"use --sha256", err=True)
                failed = True
                continue
            await svc.store.save_image(hashes)
            targets.append((str(path), hashes.sha256, hashes))
        for sha in shas:
            targets.append((sha, sha, await svc.store.get_hashes(sha)))
        for label, sha, hashes in targets:
            ov, n_frames = await overrides.set_override(svc.store, action, sha, hashes, note,
                                                        actor, label)
            how = f"exact + {n_frames} perceptual hash set(s)" if n_frames else "exact sha256 only"
            click.echo(f"{action} override {ov.id}: {label} ({sha}; {how})")
    if failed:
        sys.exit(EXIT_REJECTED)


override.command("block", help="Block images (exact sha256, and perceptual near-copies of FILEs).")(
    _override_command("block"))
override.command("allow", help="Allow images by exact sha256 (never perceptually).")(
    _override_command("allow"))


@override.command("list")
@click.option("--json", "as_json", is_flag=True)
def override_list(as_json: bool) -> None:
    """List overrides."""
    from attestd.db.engine import create_engine
    from attestd.db.store import Store

    cfg = command_config()

    async def go() -> list[Any]:
        engine = create_engine(cfg.database.url)
        try:
            return await Store(engine).list_overrides()
        finally:
            await engine.dispose()

    for ov in run_async(go):
        if as_json:
            click.echo(json.dumps({"id": ov.id, "sha256": ov.sha256, "action": ov.action,
                                   "note": ov.note, "created_by": ov.created_by,
                                   "created_at": ov.created_at.isoformat()}))
        else:
            click.echo(f"{ov.id:>5} {ov.action:5} {ov.sha256} {ov.created_at:%Y-%m-%d %H:%M} "
                       f"{ov.created_by} {ov.note}")


@override.command("remove")
@click.argument("override_id", required=False, type=int)
@click.option("--sha256", help="Remove the override of this sha256.")
def override_remove(override_id: int | None, sha256: str | None) -> None:
    """Remove an override by ID (from `override list`) or by --sha256."""
    from attestd import overrides
    from attestd.db.engine import create_engine
    from attestd.db.store import Store

    if (override_id is None) == (sha256 is None):
        raise click.UsageError("give either an override ID or --sha256 HEX")
    if sha256:
        try:
            sha256 = normalise_hex(sha256, 64, "--sha256")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    cfg = command_config()
    actor = command_actor()

    async def go() -> Any:
        engine = create_engine(cfg.database.url)
        try:
            removed = await overrides.remove_override(Store(engine), actor, override_id=override_id,
                                                      sha256=sha256)
            return removed
        finally:
            await engine.dispose()

    removed = run_async(go)
    if removed is None:
        click.echo("no such override", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"removed {removed.action} override {removed.id} ({removed.sha256})")


# -- workers ------------------------------------------------------------------------------------

@cli.group()
def workers() -> None:
    """GPU workers allowed to take classification jobs from this node."""


def _on_database(cfg: Config, make: Callable[[Any], S],
                 fn: Callable[[S], Coroutine[Any, Any, T]]) -> T:
    """Run ``fn`` on ``make(engine)`` over a short-lived engine for cfg's database."""
    from attestd.db.engine import create_engine

    async def go() -> T:
        engine = create_engine(cfg.database.url)
        try:
            return await fn(make(engine))
        finally:
            await engine.dispose()

    return run_async(go)


def _job_store(engine: Any) -> Any:
    from attestd.db.store import Store
    from attestd.jobs.store import JobStore

    return JobStore(Store(engine))


@workers.command("add")
@click.argument("name")
def workers_add(name: str) -> None:
    """Register worker NAME; prints its bearer token alone on the last line (shown once)."""
    from attestd.jobs.store import worker_name_problem

    problem = worker_name_problem(name)
    if problem is not None:
        raise click.BadParameter(problem)
    cfg = command_config()
    try:
        token = _on_database(cfg, _job_store, lambda js: js.add_worker(name))
    except ValueError as exc:
        click.echo(f"attestd: {exc}", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"worker {name} added; give it this token (it is not stored and cannot be shown "
               "again):")
    click.echo(token)


@workers.command("list")
def workers_list() -> None:
    """List workers and when each was last seen."""
    cfg = command_config()
    for w in _on_database(cfg, _job_store, lambda js: js.list_workers()):
        seen = f"{w.last_seen_at:%Y-%m-%d %H:%M}" if w.last_seen_at else "never"
        click.echo(f"{w.name:30} added {w.created_at:%Y-%m-%d %H:%M}  last seen {seen}")


@workers.command("remove")
@click.argument("name")
def workers_remove(name: str) -> None:
    """Remove worker NAME: its token stops working and its leases return to the queue."""
    cfg = command_config()
    if not _on_database(cfg, _job_store, lambda js: js.remove_worker(name)):
        click.echo(f"no worker named {name}", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"removed worker {name}")


@cli.command()
@click.option("--node", "nodes", multiple=True, required=True,
              help="A node's URL, e.g. https://attestd.example.org; repeat to serve several "
                   "nodes with one model (each gets its turn, batch by batch)")
@click.option("--token", "tokens", multiple=True, envvar="ATTESTD_WORKER_TOKEN",
              help="Bearer token from `attestd workers add`, one per --node in the same order "
                   "(or $ATTESTD_WORKER_TOKEN, which keeps it out of the process list)")
@click.option("--token-file", "token_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file holding a node's token, one per --node in the same order")
@click.option("--model", help="open_clip model (default: classifier.model)")
@click.option("--pretrained", help="open_clip weights tag or checkpoint path "
                                   "(default: classifier.pretrained)")
@click.option("--device", help="cuda, cuda:1, mps or cpu (default: classifier.device)")
@click.option("--batch", type=int, help="Images per batch (default: classifier.batch_size)")
def worker(nodes: tuple[str, ...], tokens: tuple[str, ...], token_files: tuple[Path, ...],
           model: str | None, pretrained: str | None, device: str | None,
           batch: int | None) -> None:
    """Classify jobs for one or more nodes on this machine's GPU until stopped (SIGTERM
    finishes the batch in hand and gives the rest back). Tokens for several nodes: one
    --token or --token-file each, or $ATTESTD_WORKER_TOKENS=tok1,tok2."""
    import signal as _signal

    import aiohttp

    from scanner.classifier.clip import ClassifierSetupError, ClipClassifier, ClipSettings
    from scanner.worker import run_workers
    from scanner.worker_client import HttpJobClient, WorkerAuthError, pair_nodes_with_tokens

    many = os.environ.get("ATTESTD_WORKER_TOKENS", "")
    sources = [s for s in ([f.read_text() for f in token_files], list(tokens),
                           [t for t in many.split(",") if t.strip()]) if s]
    if len(sources) > 1:
        raise click.UsageError("tokens given more than one way: use --token-file, --token "
                               "($ATTESTD_WORKER_TOKEN) or $ATTESTD_WORKER_TOKENS, not several")
    try:
        pairs = pair_nodes_with_tokens(nodes, sources[0] if sources else [])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    # A worker needs no database, and often runs on another machine with no config file:
    # then the built-in defaults and ATTESTD_CLASSIFIER__* apply.
    cfg = command_config(database=False, optional=True)
    _require_classifier()
    c = cfg.classifier
    settings = ClipSettings(model=model or c.model, pretrained=pretrained or c.pretrained,
                            cache_dir=c.cache_dir or None,
                            device=device or c.device, batch_size=batch or c.batch_size,
                            allow_random_weights=c.allow_random_weights,
                            attest_unlisted_weights=c.attest_unlisted_weights)
    try:
        classifier = ClipClassifier(settings)
    except ClassifierSetupError as exc:
        raise AttestdError(f"the classifier cannot start: {exc}") from None
    click.echo(f"worker ready: {classifier.model_id} on {classifier.device}, "
               f"batches of {settings.batch_size}, nodes {' '.join(n for n, _ in pairs)}")

    async def go() -> list[int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (_signal.SIGTERM, _signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with aiohttp.ClientSession() as session:
            clients = [HttpJobClient(session, n, t) for n, t in pairs]
            return await run_workers(clients, classifier.classify_batch,
                                     batch=settings.batch_size, stop=stop)

    try:
        done = run_async(go)
    except WorkerAuthError as exc:
        click.echo(f"attestd: the node refused the token: {exc}", err=True)
        sys.exit(EXIT_SETUP)
    if len(pairs) > 1:
        for (n, _), k in zip(pairs, done, strict=True):
            click.echo(f"{n}: {k} jobs")
    click.echo(f"worker stopped after {sum(done)} jobs")


def _require_classifier() -> None:
    """One line, not an ImportError traceback, when the classifier extras are missing."""
    from scanner.classifier.clip import missing_dependencies

    missing = missing_dependencies()
    if missing:
        raise AttestdError(
            f"the classifier needs the classifier extras, and {', '.join(missing)} "
            "is not installed: install them (pip install -e '.[classifier]' in the "
            "checkout), or set classifier.enabled = false to let GPU workers classify")


# -- admin ----------------------------------------------------------------------------------

@cli.group()
def admin() -> None:
    """Access to the admin API."""


@admin.group("token")
def admin_token() -> None:
    """Bearer tokens for /api/v1/admin/."""


def _admin_tokens(engine: Any) -> Any:
    from attestd.admin_tokens import AdminTokens

    return AdminTokens(engine)


@admin_token.command("create")
@click.argument("name")
def admin_token_create(name: str) -> None:
    """Create a token NAME; it is printed once and stored only as a digest."""
    if not name.strip() or len(name) > 100:
        raise click.BadParameter("NAME must be 1 to 100 characters")
    cfg = command_config()
    from attestd.admin_tokens import TokenExists

    try:
        token = _on_database(cfg, _admin_tokens, lambda tokens: tokens.create(name))
    except TokenExists as exc:
        click.echo(f"attestd: {exc}", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(token)
    click.echo(f"admin token {name!r} created; it is not shown again", err=True)


@admin_token.command("list")
def admin_token_list() -> None:
    """List admin tokens (names and use, never the secrets)."""
    cfg = command_config()
    for tok in _on_database(cfg, _admin_tokens, lambda tokens: tokens.list()):
        used = f"{tok.last_used_at:%Y-%m-%d %H:%M}" if tok.last_used_at else "never used"
        click.echo(f"{tok.name}  created {tok.created_at:%Y-%m-%d %H:%M}  {used}")


@admin_token.command("revoke")
@click.argument("name")
def admin_token_revoke(name: str) -> None:
    """Revoke the token NAME at once."""
    cfg = command_config()
    if not _on_database(cfg, _admin_tokens, lambda tokens: tokens.revoke(name)):
        click.echo(f"no admin token named {name!r}", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"revoked admin token {name!r}")


def _admin_users(engine: Any) -> Any:
    from attestd.admin_users import AdminUsers

    return AdminUsers(engine)


@admin.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts).")
@click.option("--role", type=click.Choice(["admin", "moderator"]),
              help="admin: everything; moderator: the review pages and API only. A new login "
                   "is an admin unless this says otherwise; an existing one keeps its role.")
def admin_set_password(name: str, password_stdin: bool, role: str | None) -> None:
    """Create the admin login NAME for the pages at /admin/, or change its password
    (every session it has ends). Asks for the password unless --password-stdin."""
    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise click.BadParameter("NAME must be 1 to 100 printable characters")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    cfg = command_config()
    from attestd.admin_users import PasswordRejected

    try:
        new = _on_database(cfg, _admin_users,
                           lambda users: users.set_password(name, password, role))
    except PasswordRejected as exc:
        raise click.BadParameter(str(exc)) from None
    roles = dict(_on_database(cfg, _admin_users, lambda users: users.roles()))
    click.echo(f"{roles.get(name, role)} login {name!r} "
               f"{'created' if new else 'updated; its sessions ended'}; log in at /admin/login")


@admin.command("logins")
def admin_logins() -> None:
    """List the logins for /admin/ and their roles."""
    cfg = command_config()
    for name, role in _on_database(cfg, _admin_users, lambda users: users.roles()):
        click.echo(f"{name}  {role}")


@admin.command("remove-login")
@click.argument("name")
def admin_remove_login(name: str) -> None:
    """Remove the admin login NAME and end its sessions."""
    cfg = command_config()
    if not _on_database(cfg, _admin_users, lambda users: users.remove(name)):
        click.echo(f"no admin login named {name!r}", err=True)
        sys.exit(EXIT_REJECTED)
    click.echo(f"removed admin login {name!r}")


# The command groups that live in their own modules.
cli.add_command(peers)
cli.add_command(followers)
cli.add_command(review)
cli.add_command(hashes)
cli.add_command(sweep)
cli.add_command(backup)
cli.add_command(restore)
cli.add_command(lemmy)
cli.add_command(evidence)
