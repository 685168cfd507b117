"""What the node does with a verified activity (pushed to its inbox or pulled from a
peer's outbox): the follow handshake, and attestations weighed by their issuer's trust."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ed25519
from uuid6 import uuid7

from activitypub import ActivityPubError, key_owner, proof_method, respond, types_of, verify_proof
from activitypub.fetch import Keyring
from attestd.federation.attestations import (
    Attestation,
    AttestationError,
    is_attestation,
    parse_attestation,
)
from attestd.federation.peers import PeerStore
from attestd.federation.store import FederationStore
from attestd.logs import REPEAT_KEY
from attestd.model import AuditEntry
from attestd.trust import decides_nothing
from attestd.write_behind import WriteBehind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of an activity, for the sender's answer and the audit log."""

    status: str  # accepted | ignored | refused
    detail: str


class ActivityHandler:
    def __init__(self, *, actor_id: str, fstore: FederationStore, peers: PeerStore,
                 keyring: Keyring, writes: WriteBehind | None, auto_approve: tuple[str, ...],
                 on_peer_accepted: Callable[[str], None] | None = None,
                 poke: Callable[[], None] | None = None,
                 on_attestation: Callable[[str], Awaitable[None]] | None = None,
                 max_pending_follows: int | None = None) -> None:
        self.actor_id = actor_id
        self.fstore = fstore
        self.peers = peers
        self.keyring = keyring
        self.writes = writes
        self.auto_approve = {a.lower() for a in auto_approve}
        self.on_peer_accepted = on_peer_accepted
        self.poke = poke
        self.on_attestation = on_attestation
        self.max_pending_follows = max_pending_follows

    async def handle(self, actor: str, act: dict[str, Any]) -> Handled:
        """Apply one verified activity from ``actor`` (its signer, or the peer whose
        outbox it came from)."""
        kinds = types_of(act)
        obj = act.get("object")
        await self.peers.seen(actor)
        if "Follow" in kinds:
            return await self._follow(actor, act)
        if "Accept" in kinds or "Reject" in kinds:
            return await self._answer(actor, "Accept" in kinds)
        if "Undo" in kinds and isinstance(obj, Mapping) and "Follow" in types_of(obj):
            await self.fstore.remove_follower(actor)
            return self._done("accepted", f"{actor} stopped following", actor, "unfollowed")
        if ("Create" in kinds or "Update" in kinds) and is_attestation(obj):
            assert isinstance(obj, dict)
            return await self._attestation(actor, obj, replace="Update" in kinds)
        if "Delete" in kinds:
            oid = obj.get("id") if isinstance(obj, Mapping) else obj
            if not isinstance(oid, str):
                return Handled("refused", "the Delete names no object id")
            # Only the issuer may retract; a Delete carries no proof, so the signer decides.
            # Its audit entry commits with the retraction.
            sha = await self.peers.retract(oid, actor, audit=(
                (lambda s: _audit_entry(actor, "attestation_retracted", sha256=s))
                if self.writes is not None else None))
            if sha is not None and self.on_attestation is not None:
                await self.on_attestation(sha)
            return Handled("accepted", f"retracted {oid}" if sha else f"no live {oid}")
        return Handled("ignored", f"{'/'.join(sorted(kinds))} activities are not used here")

    async def _follow(self, actor: str, act: dict[str, Any]) -> Handled:
        if act.get("object") != self.actor_id:
            return Handled("ignored", "the Follow is not addressed to this node's actor")
        if (limit := self.max_pending_follows) is not None and not self._auto_approved(actor) \
                and await self.fstore.pending_full(actor, limit):
            # Refused before the follower's actor is fetched: a flood costs no requests.
            log.warning("refused a follow request from %s: %d are waiting for an admin "
                        "(federation.max_pending_follows)", actor, limit,
                        extra={REPEAT_KEY: "pending_follows"})
            return Handled("refused", f"this node already has {limit} follow requests waiting "
                                      "for its admin (federation.max_pending_follows); ask the "
                                      "admin, or try again later")
        try:
            doc = await self.keyring.actor(actor)
        except ActivityPubError as exc:
            return Handled("refused", f"cannot fetch the follower's actor: {exc}")
        inbox = doc.get("inbox")
        endpoints = doc.get("endpoints")
        shared = endpoints.get("sharedInbox") if isinstance(endpoints, Mapping) else None
        if not isinstance(inbox, str):
            return Handled("refused", "the follower's actor has no inbox")
        approved = self._auto_approved(actor)
        await self.fstore.add_follower(actor, inbox, shared if isinstance(shared, str) else None,
                                       state="accepted" if approved else "pending",
                                       follow_activity=str(act["id"]))
        if approved:
            await self.send_answer("Accept", actor, act)
            return self._done("accepted", "follow accepted (federation.auto_approve)", actor,
                              "follower_accepted")
        return self._done("accepted", "follow awaits `attestd followers approve`", actor,
                          "follower_pending")

    def _auto_approved(self, actor: str) -> bool:
        where = urlsplit(actor)
        # "host" approves every port of that host; "host:port" only that one.
        return (actor.lower() in self.auto_approve or where.netloc.lower() in self.auto_approve
                or (where.hostname or "").lower() in self.auto_approve)

    async def send_answer(self, kind: str, actor: str, follow: dict[str, Any] | str) -> None:
        """Send an Accept or Reject of ``actor``'s Follow to its inbox."""
        row = await self.fstore.get_follower(actor)
        if row is None:
            return
        base = self.actor_id.rsplit("/actor", 1)[0]
        await self.fstore.enqueue([row["shared_inbox"] or row["inbox"]], respond(
            kind, f"{base}/activities/{uuid7()}", self.actor_id, follow))
        if self.poke is not None:
            self.poke()

    async def _answer(self, actor: str, accepted: bool) -> Handled:
        peer = await self.peers.get(actor)
        if peer is None:
            return Handled("ignored", "an answer to a Follow this node did not send")
        await self.peers.set_state(actor, "accepted" if accepted else "rejected")
        if accepted and self.on_peer_accepted is not None:
            self.on_peer_accepted(actor)
        return self._done("accepted", f"follow {'accepted' if accepted else 'rejected'} by {actor}",
                          actor, "peer_accepted" if accepted else "peer_rejected")

    async def _attestation(self, actor: str, obj: dict[str, Any], *, replace: bool) -> Handled:
        try:
            att = await self.verify(obj)
        except (AttestationError, ActivityPubError) as exc:
            log.warning("refused an attestation relayed by %s: %s", actor, exc)
            return self._done("refused", f"attestation refused: {exc}", actor,
                              "attestation_refused", reason=str(exc))
        peer = await self.peers.get(att.issuer)
        if peer is None:
            log.info("ignored an attestation from %s: not a peer of this node", att.issuer)
            return self._done("ignored", f"{att.issuer} is not a peer of this node", actor,
                              "attestation_ignored", sha256=att.sha256,
                              reason="issuer is not a peer")
        if replace and actor != att.issuer:
            return self._done("refused", "only the issuer may update its attestation", actor,
                              "attestation_refused", sha256=att.sha256)
        why = decides_nothing(peer.trust, att.label)
        note = f" ({why})" if why else ""

        def audit(result: str) -> AuditEntry:
            return _audit_entry(actor, "attestation_" + result, sha256=att.sha256,
                                label=att.label, source=att.id,
                                reason=note.strip(" ()") or None)

        # Its audit entry commits with the attestation and its index entries.
        result = await self.peers.store_attestation(
            att, obj, replace=replace, peer=peer,
            audit=audit if self.writes is not None else None)
        if self.on_attestation is not None:
            await self.on_attestation(att.sha256)
        return Handled("accepted", f"attestation {result}{note}")

    async def verify(self, obj: dict[str, Any]) -> Attestation:
        """Parse an attestation and check its proof with its issuer's own key."""
        att = parse_attestation(obj)
        method = proof_method(obj)
        if key_owner(method) != att.issuer:
            raise AttestationError(f"the proof's key {method} does not belong to the "
                                   f"issuer {att.issuer}")
        owner, key = await self.keyring.public_key(method)
        if owner != att.issuer or not isinstance(key, ed25519.Ed25519PublicKey):
            raise AttestationError(f"{method} is not an Ed25519 key of {att.issuer}")
        verify_proof(obj, key)
        return att

    def _done(self, status: str, detail: str, actor: str, action: str, *,
              sha256: str | None = None, label: str | None = None, source: str | None = None,
              reason: str | None = None) -> Handled:
        if self.writes is not None:
            self.writes.audit(_audit_entry(actor, action, sha256=sha256, label=label,
                                           source=source, reason=reason))
        return Handled(status, detail)


def _audit_entry(actor: str, action: str, *, sha256: str | None = None,
                 label: str | None = None, source: str | None = None,
                 reason: str | None = None) -> AuditEntry:
    return AuditEntry(actor=actor, action=action[:32], sha256=sha256, label=label,
                      source=source[:500] if source else None,
                      reason=reason[:500] if reason else None)
