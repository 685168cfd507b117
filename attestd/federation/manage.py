"""Admin actions on peers and followers, with their audit entries: one path for the CLI
(``attestd peers``, ``attestd followers``) and the admin API and pages."""

from __future__ import annotations

from dataclasses import dataclass

from uuid6 import uuid7

from activitypub import follow, respond, undo
from activitypub.fetch import Fetcher
from attestd.db.store import Store
from attestd.errors import AttestdError
from attestd.federation.follow import follow_peer
from attestd.federation.peers import Peer, PeerStore
from attestd.federation.publisher import Identity
from attestd.federation.store import FederationStore
from attestd.model import AuditEntry
from attestd.trust import TRUST_LEVELS, Trust, may_allow_perceptually


class ManageError(AttestdError):
    """A peer or follower action cannot be taken as asked."""


@dataclass(frozen=True, slots=True)
class Federated:
    """What these actions need from a node."""

    store: Store
    fstore: FederationStore
    peers: PeerStore
    me: Identity


def _activity_id(me: Identity) -> str:
    return f"{me.base}/activities/{uuid7()}"


def check_trust(level: str, perceptual_ok: bool) -> Trust:
    """``level`` as a trust level, or ManageError saying what is allowed."""
    if level not in TRUST_LEVELS:
        raise ManageError(f"trust must be one of {', '.join(TRUST_LEVELS)}")
    if perceptual_ok and not may_allow_perceptually(level):
        raise ManageError("perceptual ok needs trust full")
    return level


async def add_peer(fed: Federated, fetcher: Fetcher, target: str, level: str, *,
                   perceptual_ok: bool, actor: str, plain_http: bool = False) -> str:
    """Follow ``target`` (actor URL or @name@host) with a trust level; returns its actor URL.

    Raises FollowError or activitypub's errors when the target cannot be followed."""
    trust = check_trust(level, perceptual_ok)
    actor_url = await follow_peer(fetcher=fetcher, peers=fed.peers, fstore=fed.fstore, me=fed.me,
                                  target=target, trust=trust, perceptual_ok=perceptual_ok,
                                  plain_http=plain_http)
    await fed.store.write_audit([AuditEntry(actor=actor, action="peer_add", source=actor_url,
                                            label=trust)])
    return actor_url


async def set_trust(fed: Federated, peer: str, level: str, *, perceptual_ok: bool,
                    actor: str) -> bool:
    """Change how far ``peer`` is trusted (decisions follow at once); False if unknown."""
    trust = check_trust(level, perceptual_ok)
    if not await fed.peers.set_trust(peer, trust, perceptual_ok):
        return False
    await fed.store.write_audit([AuditEntry(
        actor=actor, action="peer_trust", source=peer, label=trust,
        detail={"perceptual_ok": perceptual_ok})])
    return True


async def unfollow(fed: Federated, peer: str, *, actor: str) -> Peer | None:
    """Send Undo Follow and drop every attestation ``peer`` sent; None if unknown."""
    removed = await fed.peers.remove(peer)
    if removed is None:
        return None
    if removed.follow_id:
        await fed.fstore.enqueue([removed.inbox], undo(
            _activity_id(fed.me), fed.me.actor, follow(removed.follow_id, fed.me.actor, removed.actor)))
    await fed.store.write_audit([AuditEntry(actor=actor, action="peer_remove", source=peer)])
    return removed


async def answer_follower(fed: Federated, follower: str, *, accept: bool, actor: str) -> bool:
    """Approve or reject a follower (or stop an accepted one); False if it never asked."""
    row = await fed.fstore.get_follower(follower)
    if row is None:
        return False
    state = "accepted" if accept else "rejected"
    await fed.fstore.set_follower_state(follower, state)
    if not accept:
        # Nothing more goes to a follower we no longer want, even what was already queued
        # (its shared inbox too, unless another accepted follower reads from it).
        still_used = set(await fed.fstore.accepted_inboxes())
        for inbox in {row["inbox"], row["shared_inbox"]} - still_used - {None}:
            await fed.fstore.cancel_deliveries_to(inbox)
    await fed.fstore.enqueue([row["shared_inbox"] or row["inbox"]], respond(
        "Accept" if accept else "Reject", _activity_id(fed.me), fed.me.actor,
        row["follow_activity"] or follow("", follower, fed.me.actor)))
    await fed.store.write_audit([AuditEntry(actor=actor, action=f"follower_{state}",
                                            source=follower)])
    return True
