"""What to do in Lemmy about a hit, decided without I/O.

A hit's evidence is of one kind (an admin's override, a hash list, a human reviewer, the
classifier alone, a trusted peer); the admin lists steps per kind. A classifier verdict
alone (false positives near 1 %) only ever reports unless the admin opted in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

EvidenceKind = Literal["override", "hash_list", "human_review", "classifier", "peer"]
EVIDENCE_KINDS: tuple[EvidenceKind, ...] = (
    "override", "hash_list", "human_review", "classifier", "peer")

Step = Literal["report", "remove", "purge", "ban", "ban_remove_data", "purge_person"]
# The order steps run in: content first (a purge after a remove is still a purge), people last.
STEPS: tuple[Step, ...] = ("report", "remove", "purge", "ban", "ban_remove_data", "purge_person")


def evidence_kind(source: str, method: str | None) -> EvidenceKind | None:
    """The kind of evidence behind a hit's ``source`` ("override:3", "list:NAME",
    "verdict:12" with its method, "attestation-row:7"); None when it names none of them
    (or a verdict whose method is unknown: never guessed)."""
    prefix = source.split(":", 1)[0]
    if prefix == "override":
        return "override"
    if prefix == "list":
        return "hash_list"
    if prefix in ("attestation-row", "attestation"):
        return "peer"
    if prefix == "verdict":
        if method == "human_review":
            return "human_review"
        if method == "classifier":
            return "classifier"
        if method == "hash_list":
            return "hash_list"
    return None


def steps_for(kind: EvidenceKind, policy: Mapping[str, Sequence[str]], *,
              classifier_alone_may_act: bool) -> tuple[Step, ...]:
    """The steps for ``kind`` in run order; for the classifier alone, without the opt-in,
    at most a report whatever the policy lists."""
    wanted = set(policy.get(kind, ("report",)))
    if kind == "classifier" and not classifier_alone_may_act:
        wanted &= {"report"}
    return tuple(s for s in STEPS if s in wanted)


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    name: str
    actor_id: str = ""
    local: bool = True


@dataclass(frozen=True, slots=True)
class Content:
    """A post or comment that uses the image."""

    kind: Literal["post", "comment"]
    id: int
    creator: Person
    community: str = ""
    ap_id: str = ""


@dataclass(frozen=True, slots=True)
class Found:
    """What Lemmy knows of the image."""

    uploader: Person | None = None
    content: tuple[Content, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"uploader": None if self.uploader is None else _person(self.uploader),
                "content": [{"kind": c.kind, "id": c.id, "creator": _person(c.creator),
                             "community": c.community, "ap_id": c.ap_id}
                            for c in self.content]}


def _person(p: Person) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "actor_id": p.actor_id, "local": p.local}


@dataclass(frozen=True, slots=True)
class Planned:
    """One call to make: ``step`` on ``target`` ("post:12", "comment:3", "person:7")."""

    step: Step
    target: str
    body: dict[str, Any] = field(default_factory=dict)


def plan(steps: Sequence[Step], found: Found, reason: str) -> list[Planned]:
    """The calls ``steps`` mean for what was found. People acted on are the uploader, or
    when Lemmy has no upload record (a federated copy) the authors of what uses it."""
    people: list[Person] = [found.uploader] if found.uploader is not None else []
    if not people:
        seen: set[int] = set()
        for c in found.content:
            if c.creator.id not in seen:
                seen.add(c.creator.id)
                people.append(c.creator)
    out: list[Planned] = []
    for step in steps:
        if step in ("report", "remove", "purge"):
            for c in found.content:
                body: dict[str, Any] = {f"{c.kind}_id": c.id, "reason": reason}
                if step == "remove":
                    body["removed"] = True
                out.append(Planned(step, f"{c.kind}:{c.id}", body))
        else:
            for p in people:
                if step == "purge_person":
                    body = {"person_id": p.id, "reason": reason}
                else:
                    body = {"person_id": p.id, "ban": True,
                            "remove_data": step == "ban_remove_data", "reason": reason}
                out.append(Planned(step, f"person:{p.id}", body))
    return out


# Lemmy 0.19 answers 400 with these when the target is already gone (purged): the step
# is done. A ban of a person who is gone is 404 ``couldnt_update_user``.
GONE = frozenset({"couldnt_find_post", "couldnt_find_comment", "couldnt_find_person"})


def outcome(status: int, error: str | None) -> Literal["done", "retry", "failed"]:
    """What a Lemmy answer means for a step: done (including "already gone"), worth
    retrying (5xx, rate limits; Lemmy 0.19 answers its rate limit with 400) or failed."""
    if 200 <= status < 300 or status == 404 or error in GONE:
        return "done"
    if status >= 500 or status == 429 or error == "rate_limit_error":
        return "retry"
    return "failed"


def backoff_s(attempts: int, base_s: float, cap_s: float = 6 * 3600) -> float:
    """Seconds before try ``attempts + 1``: doubling from ``base_s``, at most ``cap_s``."""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))
