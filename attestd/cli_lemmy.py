"""`attestd lemmy`: the Lemmy follow-up's steps, seen and run from the command line."""

from __future__ import annotations

import json
import sys

import click

from attestd.cli_common import EXIT_REJECTED, command_actor, command_config, run_async
from attestd.lemmy.store import LemmyStepStore, StepRow
from attestd.services import open_services
from attestd.sweep.runtime import open_pictrs_aliases


@click.group()
def lemmy() -> None:
    """Follow-up of hits in Lemmy ([lemmy]): list, run and retry its steps."""


def _line(r: StepRow) -> str:
    tail = f"  {r.last_error}" if r.last_error else ""
    return (f"{r.id:>6}  {r.state:<8} {r.step:<15} {r.target:<22} {r.evidence:<12} "
            f"tries {r.attempts}  {r.sha256[:16]}…{tail}")


@lemmy.command("steps")
@click.option("--sha256", help="Only this image's steps.")
@click.option("--state", type=click.Choice(["pending", "done", "failed", "dry_run"]))
@click.option("--json", "as_json", is_flag=True)
def lemmy_steps(sha256: str | None, state: str | None, as_json: bool) -> None:
    """The newest follow-up steps: what was looked up and done, what waits or failed."""
    cfg = command_config()

    async def go() -> list[StepRow]:
        async with open_services(cfg, follow_index=False) as services:
            return await LemmyStepStore(services.store).listed(sha256=sha256, state=state)

    rows = run_async(go)
    if as_json:
        click.echo(json.dumps([{
            "id": r.id, "sha256": r.sha256, "step": r.step, "target": r.target,
            "evidence": r.evidence, "state": r.state, "attempts": r.attempts,
            "next_try": r.next_try.isoformat(), "last_error": r.last_error} for r in rows]))
        return
    for r in rows:
        click.echo(_line(r))
    if not rows:
        click.echo("no follow-up steps")


@lemmy.command("run")
def lemmy_run() -> None:
    """Run the steps due now (`attestd serve` does this by itself)."""
    cfg = command_config()

    async def go() -> int:
        async with open_services(cfg, follow_index=False) as services:
            if services.lemmy is None:
                raise click.ClickException("lemmy.url is not set: no follow-up in Lemmy")
            async with open_pictrs_aliases(cfg) as aliases_of:
                services.lemmy.aliases_of = aliases_of
                return await services.lemmy.run_due()

    click.echo(f"ran {run_async(go)} step(s)")


@lemmy.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed step.")
def lemmy_retry(ids: tuple[int, ...], all_failed: bool) -> None:
    """Make failed steps due again (after fixing what refused them, e.g. the bot's admin
    rights); `attestd serve` runs them."""
    if bool(ids) == all_failed:
        raise click.UsageError("name the steps (IDs from `attestd lemmy steps`) or --failed")
    cfg = command_config()

    async def go() -> list[StepRow]:
        async with open_services(cfg, follow_index=False) as services:
            return await LemmyStepStore(services.store).requeue(
                None if all_failed else ids, command_actor())

    rows = run_async(go)
    for r in rows:
        click.echo(f"due again: {r.id} {r.step} {r.target}")
    if not rows:
        click.echo("no failed step to retry", err=True)
        sys.exit(EXIT_REJECTED)
