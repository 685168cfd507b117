"""Hits followed up in Lemmy: each hit becomes a durable "find" step (so a hit the CLI's
sweep found is followed up by the serving node, and one found before a restart after
it); the runner finds who uploaded the image and what uses it, plans the policy's steps
for the hit's kind of evidence and runs them, each once, audited, retried with backoff
after an outage. In dry run nothing is changed in Lemmy: what would be done is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from attestd.config import Config
from attestd.db import schema as t
from attestd.db.store import Store
from attestd.hits import Hit
from attestd.lemmy import policy
from attestd.lemmy.api import LemmyClient, LemmyError, LemmySettings
from attestd.lemmy.store import LemmyStepStore, NewStep, StepRow
from attestd.model import AuditEntry, utcnow

log = logging.getLogger(__name__)
ACTOR = "lemmy-follow-up"
# The pict-rs aliases of an image, by sha256, asked of pict-rs itself.
AliasLookup = Callable[[str], Awaitable[tuple[str, ...]]]
# Adds fields to the evidence record of an image (attestd.evidence), by its sha256.
Annotate = Callable[[str, Mapping[str, Any]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class FollowUpSettings:
    policy: Mapping[str, Sequence[str]]
    classifier_alone_may_act: bool = False
    dry_run: bool = False
    labels: frozenset[str] = frozenset({"csam_suspect", "blocked"})
    retry_base_s: float = 30.0
    max_attempts: int = 10
    poll_s: float = 30.0
    reason: str = "attestd: this image was judged {label} ({evidence})"


@dataclass
class LemmyFollowUp:
    store: Store
    client: LemmyClient
    settings: FollowUpSettings
    # For hits that carry no aliases (a rescan, a review): ask pict-rs, when it is known
    # (set by whoever runs the steps: attestd.sweep.runtime.open_pictrs_aliases).
    aliases_of: AliasLookup | None = None
    # Where what Lemmy knows of a hit is written into its evidence record ([evidence]).
    annotate: Annotate | None = None
    steps: LemmyStepStore = field(init=False)
    _wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.steps = LemmyStepStore(self.store)

    # -- hits ------------------------------------------------------------------------------

    async def on_hit(self, hit: Hit) -> None:
        """Record the hit's look-up step; the runner does the rest."""
        if hit.label not in self.settings.labels:
            log.info("Lemmy follow-up: %s is %s, not one of lemmy.labels; nothing is done "
                     "in Lemmy", hit.sha256, hit.label)
            return
        method = hit.method
        if method is None and hit.source.startswith("verdict:"):
            method = await self._verdict_method(hit.source)
        kind = policy.evidence_kind(hit.source, method)
        if kind is None:
            log.warning("Lemmy follow-up: the hit on %s names no evidence it knows (%s); "
                        "nothing is done in Lemmy", hit.sha256, hit.source)
            return
        detail = {"aliases": list(hit.aliases), "label": hit.label, "source": hit.source,
                  "origin": hit.origin, "action": hit.action, "key": hit.key,
                  "found_by": hit.actor}
        await self.steps.add([NewStep(hit.sha256, "find", f"evidence:{kind}", kind, detail)],
                             retry_dry_run=not self.settings.dry_run)
        self._wake.set()

    async def _verdict_method(self, source: str) -> str | None:
        try:
            vid = int(source.split(":", 1)[1])
        except ValueError:
            return None
        async with self.store.engine.connect() as conn:
            return (await conn.execute(select(t.verdicts.c.method).where(
                t.verdicts.c.id == vid))).scalar_one_or_none()

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run due steps until cancelled; sleeps until the next is due or a hit comes."""
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database was away: the next loop tries again
                log.warning("Lemmy follow-up loop failed: %s", exc)
            due = await _quiet(self.steps.next_due())
            wait = self.settings.poll_s
            if due is not None:
                wait = max(0.0, min(wait, (due - utcnow()).total_seconds()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def run_due(self) -> int:
        """Run every step due now (and those they plan); returns how many ran."""
        n = 0
        while rows := await self.steps.claim_due():
            for row in rows:
                await self._run(row)
                n += 1
        return n

    async def _run(self, row: StepRow) -> None:
        try:
            if row.step == "find":
                await self._find(row)
            else:
                await self._act(row)
        except LemmyError as exc:
            await self._failed(row, exc)

    async def _find(self, row: StepRow) -> None:
        d = row.detail
        kind: policy.EvidenceKind = row.evidence  # type: ignore[assignment]
        steps = policy.steps_for(kind, self.settings.policy,
                                 classifier_alone_may_act=self.settings.classifier_alone_may_act)
        aliases = await self._aliases(row)
        uploader: policy.Person | None = None
        content: list[policy.Content] = []
        for alias in aliases:
            uploader = uploader or await self.client.uploader(alias)
            content += [c for c in await self.client.content_using(alias)
                        if c not in content]
        found = policy.Found(uploader, tuple(content))
        reason = self.settings.reason.format(label=d.get("label", ""), evidence=kind)
        planned = policy.plan(steps, found, reason)
        dry = self.settings.dry_run
        why = ("no pict-rs alias is known for it, so Lemmy cannot be asked"
               if not aliases else
               "Lemmy knows nothing that uses it" if not planned else "")
        found_json = found.as_json()
        audits = [_audit(row, "lemmy_found", detail={
            **found_json, "steps": list(steps), "planned": [p.target for p in planned],
            "dry_run": dry}, reason=why or None)]
        new = []
        for p in planned:
            detail = {"body": p.body, "label": d.get("label"), "source": d.get("source")}
            if dry:
                audits.append(AuditEntry(
                    actor=ACTOR, action="lemmy_would", sha256=row.sha256, label=d.get("label"),
                    source=d.get("source"), reason=f"dry run: would {p.step} {p.target}",
                    detail={"step": p.step, "target": p.target, "evidence": kind,
                            "dry_run": True}))
            new.append(NewStep(row.sha256, p.step, p.target, kind, detail,
                               state="dry_run" if dry else "pending"))
        await self.steps.planned(row, "dry_run" if dry else "done",
                                 {**d, "aliases": list(aliases), "found": found_json}, new,
                                 audits, retry_dry_run=not dry)
        if self.annotate is not None and (found.uploader is not None or found.content):
            try:
                await self.annotate(row.sha256, evidence_fields(found, aliases))
            except Exception:  # the follow-up stands; the record lacks Lemmy's part
                log.exception("could not add what Lemmy knows to the evidence of %s",
                              row.sha256)
        log.info("Lemmy follow-up of %s (%s): %s%s", row.sha256, kind,
                 ", ".join(f"{p.step} {p.target}" for p in planned) or "nothing to do",
                 " (dry run)" if dry else "")

    async def _aliases(self, row: StepRow) -> tuple[str, ...]:
        """The hit's aliases; else those an earlier hit on the image carried (a sweep
        before the review that confirmed it); else pict-rs's."""
        own = tuple(row.detail.get("aliases") or ())
        if own:
            return own
        for other in await self.steps.steps(row.sha256):
            if other.step == "find" and other.detail.get("aliases"):
                return tuple(other.detail["aliases"])
        if self.aliases_of is not None:
            return await self.aliases_of(row.sha256)
        return ()

    async def _act(self, row: StepRow) -> None:
        planned = policy.Planned(row.step, row.target,  # type: ignore[arg-type]
                                 dict(row.detail.get("body") or {}))
        if self.settings.dry_run:
            await self.steps.finish(row.id, "dry_run", _audit(
                row, "lemmy_would", reason=f"dry run: would {row.step} {row.target}"))
            return
        note = "done"
        try:
            await self.client.act(planned)
        except LemmyError as exc:
            if policy.outcome(exc.status, exc.error) != "done":
                raise
            note = f"already done ({exc.error or exc.status})"
        await self.steps.finish(row.id, "done", _audit(
            row, f"lemmy_{row.step}", reason=f"{row.step} {row.target}: {note}"),
            attempts=row.attempts + 1)
        log.info("Lemmy: %s %s for %s: %s", row.step, row.target, row.sha256, note)

    async def _failed(self, row: StepRow, exc: LemmyError) -> None:
        attempts = row.attempts + 1
        verdict = "retry" if exc.status == 0 else policy.outcome(exc.status, exc.error)
        if exc.status == 401:  # the bot's login: the admin can fix it, so keep trying
            verdict = "retry"
        if verdict == "retry" and attempts < self.settings.max_attempts:
            wait = policy.backoff_s(attempts, self.settings.retry_base_s)
            await self.steps.finish(row.id, "pending", _audit(
                row, "lemmy_retry", reason=f"{row.step} {row.target}: {exc}; try "
                                           f"{attempts + 1} in {wait:.0f} s"),
                error=str(exc), attempts=attempts, next_try=utcnow() + timedelta(seconds=wait))
            log.warning("Lemmy: %s %s for %s failed (%s); retried in %.0f s", row.step,
                        row.target, row.sha256, exc, wait)
            return
        await self.steps.finish(row.id, "failed", _audit(
            row, "lemmy_failed", reason=f"{row.step} {row.target}: {exc} after "
                                        f"{attempts} tries; do it in Lemmy by hand"),
            error=str(exc), attempts=attempts)
        log.error("Lemmy: %s %s for %s failed for good: %s", row.step, row.target,
                  row.sha256, exc)


def _audit(row: StepRow, action: str, *, reason: str | None = None,
           detail: dict[str, Any] | None = None) -> AuditEntry:
    return AuditEntry(actor=ACTOR, action=action, sha256=row.sha256,
                      label=row.detail.get("label"), source=row.detail.get("source"),
                      reason=reason, detail={"step": row.step, "target": row.target,
                                             "evidence": row.evidence, **(detail or {})})


async def _quiet(aw: Any) -> Any:
    try:
        return await aw
    except Exception:
        return None


def evidence_fields(found: policy.Found, aliases: Sequence[str]) -> dict[str, Any]:
    """What an evidence record keeps of a Lemmy look-up: the uploader and where it is used."""
    fields: dict[str, Any] = {}
    if found.uploader is not None:
        fields["uploader"] = found.uploader.actor_id or found.uploader.name
        fields["uploader_id"] = found.uploader.id
    posts = [c for c in found.content if c.kind == "post"]
    comments = [c for c in found.content if c.kind == "comment"]
    if posts:
        fields["post_id"], fields["post_url"] = posts[0].id, posts[0].ap_id
        fields["community"] = posts[0].community
    if comments:
        fields["comment_id"], fields["comment_url"] = comments[0].id, comments[0].ap_id
    fields["urls"] = [c.ap_id for c in found.content if c.ap_id]
    if aliases:
        fields["note"] = "pict-rs aliases: " + ", ".join(aliases)
    return fields


@contextlib.asynccontextmanager
async def open_followup(config: Config, store: Store, *,
                        annotate: Annotate | None = None) -> AsyncIterator[LemmyFollowUp]:
    """The follow-up ``[lemmy]`` configures (its HTTP sessions closed afterwards)."""
    cfg = config.lemmy
    client = LemmyClient(LemmySettings(
        url=cfg.url, public_url=cfg.public_url or cfg.url, username=cfg.username,
        password=cfg.password.get_secret_value(), timeout_s=cfg.timeout_s,
        max_media_pages=cfg.max_media_pages))
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(client.close)
        yield LemmyFollowUp(store, client, FollowUpSettings(
            policy=cfg.policy.model_dump(), classifier_alone_may_act=cfg.act_on_classifier_alone,
            dry_run=cfg.dry_run, labels=frozenset(cfg.labels), retry_base_s=cfg.retry_base_s,
            max_attempts=cfg.max_attempts), annotate=annotate)
