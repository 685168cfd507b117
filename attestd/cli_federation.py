"""The ``peers``, ``followers`` and ``review`` commands (federation and human review).

They write to the database; the running node delivers what they queue within a second.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from activitypub import ActivityPubError
from activitypub.fetch import Fetcher, make_session
from attestd import review_actions
from attestd.cli_common import EXIT_REJECTED, command_actor, command_config, run_async
from attestd.config import Config
from attestd.federation import manage
from attestd.federation.attestations import ATTESTED_LABELS
from attestd.federation.follow import FollowError
from attestd.federation.peers import PeerStore
from attestd.federation.publisher import Identity, Publisher
from attestd.federation.runtime import USER_AGENT, actor_spec, identity
from attestd.federation.store import FederationStore
from attestd.keys import load_keys
from attestd.review import REVIEW_KINDS, ReviewQueue
from attestd.services import NodeServices, open_services
from attestd.trust import TRUST_LEVELS, may_allow_perceptually
from scanner import ImageHashes, UnreadableImage, normalise_hex, sha256_hex


@dataclass
class _Fed:
    svc: NodeServices
    fstore: FederationStore
    peers: PeerStore
    publisher: Publisher
    review: ReviewQueue
    me: Identity

    @property
    def federated(self) -> manage.Federated:
        return manage.Federated(self.svc.store, self.fstore, self.peers, self.me)

    @property
    def reviewer(self) -> review_actions.Reviewer:
        return review_actions.Reviewer(self.svc.store, self.publisher, self.review, self.svc.hits)


@contextlib.asynccontextmanager
async def _open(cfg: Config) -> AsyncIterator[_Fed]:
    async with open_services(cfg, follow_index=False) as svc:
        fstore = FederationStore(svc.store)
        me = identity(cfg, load_keys(cfg.keys_dir))
        publisher = Publisher(svc.store, fstore, me)
        svc.arrival.publisher = publisher  # own verdicts this command records are attested
        yield _Fed(svc, fstore, PeerStore(svc.store), publisher, svc.review, me)


# -- peers ---------------------------------------------------------------------------------

@click.group()
def peers() -> None:
    """Nodes this node follows, and how far it trusts their attestations."""


@peers.command("add")
@click.argument("target")
@click.option("--trust", type=click.Choice(TRUST_LEVELS), required=True,
              help="full: their ok and bad count; bad_only: only their bad; none: nothing.")
@click.option("--perceptual-ok", is_flag=True,
              help="Also take their ok for near-copies within matching.ok_* (a risk: see README).")
def peers_add(target: str, trust: str, perceptual_ok: bool) -> None:
    """Follow TARGET (actor URL or @name@host) with the given trust; the node sends the
    Follow and reads their outbox once they accept."""
    if perceptual_ok and not may_allow_perceptually(trust):
        raise click.UsageError("--perceptual-ok needs --trust full")
    cfg = command_config()

    async def go() -> None:
        keys = load_keys(cfg.keys_dir)
        spec = actor_spec(cfg, keys)
        private = cfg.federation.allow_private_addresses
        session = make_session(allow_private=private, user_agent=USER_AGENT)
        try:
            fetcher = Fetcher(session, key_id=spec.main_key_id, private_key=keys.rsa,
                              allow_private=private)
            async with _open(cfg) as fed:
                actor_url = await manage.add_peer(
                    fed.federated, fetcher, target, trust, perceptual_ok=perceptual_ok,
                    actor=command_actor(), plain_http=private)
        except (ActivityPubError, FollowError, manage.ManageError) as exc:
            raise click.ClickException(f"cannot follow {target}: {exc}") from None
        finally:
            await session.close()
        click.echo(f"following {actor_url} with trust {trust}"
                   f"{' (+ perceptual ok)' if perceptual_ok else ''}; waiting for them to accept")

    run_async(go)


@peers.command("list")
@click.option("--json", "as_json", is_flag=True)
def peers_list(as_json: bool) -> None:
    """Peers with follow state, trust, last seen, attestations received and disagreements."""
    cfg = command_config()

    async def go() -> None:
        async with _open(cfg) as fed:
            rows = await fed.peers.all()
        for p in rows:
            if as_json:
                click.echo(json.dumps({
                    "actor": p.actor, "state": p.state, "trust": p.trust,
                    "perceptual_ok": p.perceptual_ok,
                    "last_seen": p.last_seen_at.isoformat() if p.last_seen_at else None,
                    "attestations": p.attestations, "disagreements": p.disagreements,
                    "last_error": p.last_error}))
            else:
                seen = p.last_seen_at.strftime("%Y-%m-%d %H:%M") if p.last_seen_at else "never"
                trust = p.trust + ("+perceptual_ok" if p.perceptual_ok else "")
                click.echo(f"{p.actor}  {p.state}  trust={trust}  last_seen={seen}  "
                           f"attestations={p.attestations}  disagreements={p.disagreements}"
                           + (f"  error={p.last_error}" if p.last_error else ""))
        if not rows and not as_json:
            click.echo("no peers; add one with `attestd peers add URL --trust bad_only`")

    run_async(go)


@peers.command("trust")
@click.argument("actor")
@click.argument("level", type=click.Choice(TRUST_LEVELS))
@click.option("--perceptual-ok/--no-perceptual-ok", default=False)
def peers_trust(actor: str, level: str, perceptual_ok: bool) -> None:
    """Change how far ACTOR is trusted; decisions follow at once."""
    if perceptual_ok and not may_allow_perceptually(level):
        raise click.UsageError("--perceptual-ok needs trust full")
    cfg = command_config()

    async def go() -> None:
        async with _open(cfg) as fed:
            if not await manage.set_trust(fed.federated, actor, level,
                                          perceptual_ok=perceptual_ok, actor=command_actor()):
                raise click.ClickException(f"{actor} is not a peer (see `attestd peers list`)")
        click.echo(f"{actor}: trust {level}{' + perceptual ok' if perceptual_ok else ''}")

    run_async(go)


@peers.command("remove")
@click.argument("actor")
def peers_remove(actor: str) -> None:
    """Unfollow ACTOR (Undo Follow) and drop every attestation it sent."""
    cfg = command_config()

    async def go() -> None:
        async with _open(cfg) as fed:
            if await manage.unfollow(fed.federated, actor, actor=command_actor()) is None:
                raise click.ClickException(f"{actor} is not a peer (see `attestd peers list`)")
        click.echo(f"unfollowed {actor}; its attestations no longer count")

    run_async(go)


# -- followers -----------------------------------------------------------------------------

@click.group()
def followers() -> None:
    """Nodes that follow this one and receive its attestations."""


@followers.command("list")
@click.option("--json", "as_json", is_flag=True)
def followers_list(as_json: bool) -> None:
    """Followers and their state (pending ones wait for approve or reject)."""
    cfg = command_config()

    async def go() -> None:
        async with _open(cfg) as fed:
            rows = await fed.fstore.list_followers()
        for r in rows:
            if as_json:
                click.echo(json.dumps({"actor": r["actor"], "state": r["state"],
                                       "since": str(r["created_at"])}))
            else:
                click.echo(f"{r['actor']}  {r['state']}")
        if not rows and not as_json:
            click.echo("no followers")

    run_async(go)


def _answer(accept: bool) -> Any:
    @click.argument("actor")
    def cmd(actor: str) -> None:
        cfg = command_config()

        async def go() -> None:
            async with _open(cfg) as fed:
                if not await manage.answer_follower(fed.federated, actor, accept=accept,
                                                    actor=command_actor()):
                    raise click.ClickException(f"{actor} has not asked to follow this node")
            click.echo(f"{actor}: {'accepted' if accept else 'rejected'}")

        run_async(go)
    return cmd


followers.command("approve", help="Let ACTOR follow: it receives and may read attestations.")(
    _answer(True))
followers.command("reject", help="Refuse ACTOR (or stop an accepted follower).")(
    _answer(False))


# -- review --------------------------------------------------------------------------------

@click.group()
def review() -> None:
    """Human review: the queue, and verdicts that become human-review attestations."""


@review.command("list")
@click.option("--kind", type=click.Choice(REVIEW_KINDS))
@click.option("--json", "as_json", is_flag=True)
def review_list(kind: str | None, as_json: bool) -> None:
    """What waits for a human: flagged, disputed and unreadable images."""
    cfg = command_config()

    async def go() -> None:
        async with _open(cfg) as fed:
            items = await fed.review.items(kind)
        for it in items:
            if as_json:
                click.echo(json.dumps({"sha256": it.sha256, "kind": it.kind, "reason": it.reason,
                                       "since": it.created_at.isoformat()}))
            else:
                click.echo(f"{it.sha256}  {it.kind:10}  {it.reason}")
        if not items and not as_json:
            click.echo("the review queue is empty")

    run_async(go)


def _targets_options(fn: Any) -> Any:
    fn = click.argument("files", nargs=-1, type=click.Path(
        exists=True, dir_okay=False, readable=True, path_type=Path))(fn)
    return click.option("--sha256", "shas", multiple=True,
                        help="Exact sha256 (hex); repeatable.")(fn)


async def _targets(fed: _Fed, files: tuple[Path, ...], shas: tuple[str, ...]
                   ) -> list[tuple[str, str, ImageHashes | None]]:
    out: list[tuple[str, str, ImageHashes | None]] = []
    for path in files:
        data = path.read_bytes()
        try:
            hashes: ImageHashes | None = await fed.svc.pool.hash(data)
        except UnreadableImage:
            hashes = None
        if hashes is not None:
            await fed.svc.store.save_image(hashes)
        out.append((str(path), sha256_hex(data), hashes))
    for s in shas:
        try:
            sha = normalise_hex(s, 64, "--sha256")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        out.append((sha, sha, await fed.svc.store.get_hashes(sha)))
    if not out:
        raise click.UsageError("give FILE arguments or --sha256 HEX")
    return out


@review.command("mark")
@_targets_options
@click.option("--label", type=click.Choice(ATTESTED_LABELS), required=True)
@click.option("--note", default="", help="Why (kept in the audit log).")
def review_mark(files: tuple[Path, ...], shas: tuple[str, ...], label: str, note: str) -> None:
    """Record a human-review verdict and publish it as an attestation."""
    cfg = command_config()

    async def go() -> None:
        async with _open(cfg) as fed:
            for given, sha, hashes in await _targets(fed, files, shas):
                _, attestation = await review_actions.confirm(
                    fed.reviewer, sha, hashes, label, actor=command_actor(), note=note, given=given)
                how = "exact sha256 only" if hashes is None else f"{len(hashes.frames)} frame(s)"
                click.echo(f"{given}: {label} (human review, {how}); published {attestation}")

    run_async(go)


@review.command("clear")
@_targets_options
@click.option("--note", default="", help="Why (kept in the audit log).")
def review_clear(files: tuple[Path, ...], shas: tuple[str, ...], note: str) -> None:
    """Retract this node's verdicts on images and the attestations it published of them."""
    cfg = command_config()

    async def go() -> None:
        any_found = False
        async with _open(cfg) as fed:
            for given, sha, _ in await _targets(fed, files, shas):
                n, retracted = await review_actions.withdraw(
                    fed.reviewer, sha, actor=command_actor(), note=note, given=given)
                any_found = any_found or bool(n or retracted)
                click.echo(f"{given}: retracted {n} verdict(s) and {len(retracted)} attestation(s)")
        if not any_found:
            sys.exit(EXIT_REJECTED)

    run_async(go)

