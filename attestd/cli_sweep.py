"""The ``sweep`` command: check what a store already holds, and ``sweep report``."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

import click
from tqdm import tqdm

from attestd.cli_common import EXIT_REJECTED, command_config, run_async
from attestd.config import Config, SweepConfig
from attestd.services import open_services
from attestd.sweep.model import RunSummary, SweepError, age_of
from attestd.sweep.runtime import open_sweeper
from attestd.sweep.store import SweepStore


def parse_age(text: str) -> timedelta:
    """``20m``, ``6h``, ``3d`` as a timedelta."""
    try:
        return age_of(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


class _Bar:
    """tqdm's bar (rate and ETA once the store has been counted) on stderr."""

    def __init__(self, desc: str, quiet: bool) -> None:
        self.bar = tqdm(desc=desc, unit="obj", file=sys.stderr, disable=quiet,
                        dynamic_ncols=True, mininterval=0.5, smoothing=0.1)

    def set_total(self, total: int, done: int) -> None:
        self.bar.total = max(total, self.bar.n)
        self.bar.refresh()

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def sweep_config(cfg: Config, **flags: Any) -> SweepConfig:
    """``[sweep]`` with the command line's flags laid over it."""
    from pydantic import SecretStr
    top = {k: v for k, v in flags.items()
           if k in ("source", "action", "quarantine", "layout", "concurrency") and v is not None}
    s3 = {k: v for k, v in flags.items()
          if k in ("endpoint_url", "bucket", "prefix", "region", "access_key_id") and v is not None}
    if flags.get("secret_access_key") is not None:
        s3["secret_access_key"] = SecretStr(flags["secret_access_key"])
    pictrs: dict[str, Any] = {}
    if flags.get("pictrs_url") is not None:
        pictrs["url"] = flags["pictrs_url"].rstrip("/")
    if flags.get("api_token") is not None:
        pictrs["api_token"] = SecretStr(flags["api_token"])
    fs = {"path": flags["path"]} if flags.get("path") is not None else {}
    sc = cfg.sweep
    data = sc.model_dump()
    data.update(top)
    data["s3"] = {**sc.s3.model_dump(), **s3}
    data["pictrs"] = {**sc.pictrs.model_dump(), **pictrs}
    data["fs"] = {**sc.fs.model_dump(), **fs}
    try:
        return SweepConfig.model_validate(data)
    except Exception as exc:
        raise click.UsageError(f"invalid sweep settings: {exc}") from None


@click.group(invoke_without_command=True)
@click.option("--all", "all_", is_flag=True,
              help="Everything the store holds; resumes an interrupted --all.")
@click.option("--since", "since", metavar="AGE", help="What was stored in the last AGE (20m, 6h, 3d).")
@click.option("--restart", is_flag=True, help="With --all: start over instead of resuming.")
@click.option("--dry-run", is_flag=True, help="Only flag for review; change nothing in the store.")
@click.option("--source", type=click.Choice(["pictrs", "s3", "fs"]), help="sweep.source")
@click.option("--action", type=click.Choice(["delete", "quarantine", "flag"]), help="sweep.action")
@click.option("--quarantine", help="sweep.quarantine: a folder or s3://bucket/prefix")
@click.option("--layout", type=click.Choice(["auto", "time_ordered", "unordered"]), help="sweep.layout")
@click.option("--concurrency", type=click.IntRange(1, 256), help="sweep.concurrency")
@click.option("--endpoint-url", help="sweep.s3.endpoint_url")
@click.option("--bucket", help="sweep.s3.bucket")
@click.option("--prefix", help="sweep.s3.prefix")
@click.option("--region", help="sweep.s3.region")
@click.option("--access-key-id", help="sweep.s3.access_key_id")
@click.option("--secret-access-key", help="sweep.s3.secret_access_key (prefer the "
              "ATTESTD_SWEEP__S3__SECRET_ACCESS_KEY variable: flags show in `ps`)")
@click.option("--path", help="sweep.fs.path")
@click.option("--pictrs-url", help="sweep.pictrs.url")
@click.option("--api-token", help="sweep.pictrs.api_token (prefer ATTESTD_SWEEP__PICTRS__API_TOKEN)")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
@click.pass_context
def sweep(ctx: click.Context, /, all_: bool, since: str | None, restart: bool, dry_run: bool,
          quiet: bool, as_json: bool, **flags: Any) -> None:
    """Check what a store already holds (--all, or --since AGE) and act on what is
    rejected. Exit 0 when the run finished, 1 when it stopped or some objects failed."""
    if ctx.invoked_subcommand is not None:
        return
    if all_ == (since is not None):
        raise click.UsageError("say what to sweep: --all, or --since AGE (e.g. --since 20m)")
    age = parse_age(since) if since is not None else None
    cfg = command_config()
    sc = sweep_config(cfg, **flags)

    async def go() -> RunSummary:
        async with open_services(cfg, follow_index=False) as services, \
                open_sweeper(cfg, sc, services, dry_run=dry_run) as sweeper:
            bar = _Bar(f"sweep {sweeper.source.name}", quiet or as_json)
            try:
                if age is None:
                    return await sweeper.sweep_all(restart=restart, progress=bar)
                return await sweeper.sweep_since(age, progress=bar)
            finally:
                bar.close()

    try:
        summary = run_async(go)
    except SweepError as exc:
        raise click.ClickException(f"{exc}") from None
    except KeyboardInterrupt:
        click.echo("interrupted: `attestd sweep --all` resumes where this run stopped", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(summary.as_json()))
    else:
        click.echo(_describe(summary))
    if summary.errors:
        sys.exit(EXIT_REJECTED)


def _describe(s: RunSummary) -> str:
    acted = ", ".join(f"{n} {k}" for k, n in sorted(s.acted.items())) or "nothing"
    return (f"sweep run {s.run_id} {s.status}: {s.listed} listed, {s.checked} checked "
            f"({s.downloaded} downloaded, {s.already_checked} already checked), "
            f"{s.rejected} rejected, {s.unreadable} unreadable (never deleted), "
            f"{s.undecided} not judged by anyone; acted: {acted}; errors: {s.errors}")


@sweep.command("report")
@click.option("--run", "run_id", type=int, help="One run, with what it acted on.")
@click.option("--json", "as_json", is_flag=True)
def sweep_report(run_id: int | None, as_json: bool) -> None:
    """Summarise recent sweep runs, or one run and everything it acted on."""
    cfg = command_config()

    async def go() -> Any:
        async with open_services(cfg, follow_index=False) as services:
            sweeps = SweepStore(services.store)
            if run_id is None:
                return await sweeps.runs(), None
            run = await sweeps.run(run_id)
            if run is None:
                raise click.ClickException(f"no sweep run {run_id}; `attestd sweep report` "
                                           "lists them")
            return [run], await sweeps.acted(run_id)

    runs, acted = run_async(go)
    if as_json:
        click.echo(json.dumps({
            "runs": [{"id": r.id, "source": r.source, "mode": r.mode, "action": r.action,
                      "dry_run": r.dry_run, "status": r.status,
                      "started_at": r.started_at.isoformat(),
                      "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                      "error": r.error, "summary": r.summary} for r in runs],
            "acted": None if acted is None else [
                {"action": a.action, "key": (a.detail or {}).get("key"), "sha256": a.sha256,
                 "label": a.label, "decided_by": a.source, "reason": a.reason,
                 "result": (a.detail or {}).get("result"), "at": a.at.isoformat()}
                for a in acted]}))
        return
    if not runs:
        click.echo("no sweeps yet; run `attestd sweep --all`")
    for r in runs:
        s = r.summary
        acted_n = ", ".join(f"{n} {k}" for k, n in sorted((s.get("acted") or {}).items())) or "-"
        click.echo(f"run {r.id}  {r.status:<11} {r.mode:<10} {r.source}  started "
                   f"{r.started_at:%Y-%m-%d %H:%M:%S}  checked {s.get('checked', 0)}  "
                   f"rejected {s.get('rejected', 0)}  acted {acted_n}"
                   f"{'  (dry run)' if r.dry_run else ''}"
                   f"{'  error: ' + r.error if r.error else ''}")
    for a in acted or []:
        d = a.detail or {}
        click.echo(f"  {a.action:<20} {d.get('key')}  [{a.label} by {a.source}]  "
                   f"{d.get('result') or a.reason or ''}")
