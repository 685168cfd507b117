"""Drives sweeps: lists a source, checks each object through the pipeline, acts.

Guarantees, whatever happens to the process:
- an object's check and its audit entry are one transaction, and a resumed run skips
  what it already recorded, so every object is checked once per run;
- an action (delete, quarantine) is recorded as pending with the check and marked done
  after it happened; pending actions are finished first when any sweep of that source
  starts again, and each is safe to repeat;
- nothing is acted on unless the pipeline rejected it on evidence (``should_act``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from attestd.hits import Hit, Hits
from attestd.model import AuditEntry, CheckOutcome, utcnow
from attestd.pipeline import CheckPipeline
from attestd.review import ReviewQueue
from attestd.sweep.model import (
    ObjectGone,
    PriorCheck,
    RunSummary,
    StoredObject,
    SweepError,
    key_for_time,
    should_act,
    time_of_key,
)
from attestd.sweep.quarantine import Quarantine, evidence_record, safe_key
from attestd.sweep.sources import Source
from attestd.sweep.store import CheckRecord, PendingAction, SweepStore, run_actor
from scanner import sha256_hex

log = logging.getLogger(__name__)

# A source that fails this many objects in a row is down: the run stops (resumable)
# rather than recording the whole store as errors.
MAX_CONSECUTIVE_ERRORS = 20
RECORD_BATCH = 64


@dataclass(frozen=True)
class _Checked:
    record: CheckRecord
    data: bytes | None  # the bytes, when they were downloaded (a quarantine keeps them)


class Progress(Protocol):
    def set_total(self, total: int, done: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


@dataclass(frozen=True)
class SweepSettings:
    action: str = "flag"
    dry_run: bool = False
    concurrency: int = 8
    layout: str = "auto"
    overlap_s: float = 600.0
    unordered_pages_per_loop: int = 10
    node: str = ""


class Sweeper:
    """Sweeps one source with one set of settings."""

    def __init__(self, *, pipeline: CheckPipeline, sweeps: SweepStore, source: Source,
                 settings: SweepSettings, review: ReviewQueue | None = None,
                 quarantine: Quarantine | None = None, hits: Hits | None = None,
                 keep: Callable[[Hit, str], Awaitable[None]] | None = None) -> None:
        if settings.action == "quarantine" and quarantine is None and not settings.dry_run:
            raise SweepError("sweep.action is quarantine but sweep.quarantine is empty: set "
                             "a folder or s3://bucket/prefix (or pass --quarantine)")
        self.pipeline = pipeline
        self.sweeps = sweeps
        self.source = source
        self.settings = settings
        self.review = review
        self.quarantine = quarantine
        self.hits = hits
        # Preserves evidence before a delete or quarantine; raising stops the act.
        self.keep = keep
        self._failures = 0
        self._last_error = ""
        # Keys whose interrupted act was finished (and counted) when this run resumed.
        self._finished: set[str] = set()

    # -- modes ----------------------------------------------------------------------------

    async def sweep_all(self, *, restart: bool = False,
                        progress: Progress | None = None) -> RunSummary:
        """Everything the source holds; resumes an interrupted ``--all`` unless ``restart``."""
        run = None if restart else await self.sweeps.unfinished_run(self.source.name, "all")
        if run is not None:
            run_id, cursor = run.id, run.cursor
            summary = _summary_from(run.summary, run_id, self.source.name, "all")
            log.info("resuming sweep run %d of %s", run_id, self.source.name)
        else:
            run_id, cursor = await self._start("all"), None
            summary = RunSummary(run_id, self.source.name, "all")
        # The counts as of the cursor: what a stopped run keeps, so its resume (which lists
        # again from the cursor) counts each object of the run once.
        at_cursor = dataclasses.replace(summary, acted=dict(summary.acted))
        counter = asyncio.create_task(self._count(progress, summary)) if progress else None
        try:
            await self._finish_pending(run_id, summary)
            newest: str | None = None
            while True:
                page = await self.source.page(cursor)
                newest = self._marker_candidate(page.objects, newest)
                await self._process(run_id, summary, page.objects, progress, resume=True)
                cursor = page.next_cursor
                await self.sweeps.progress(run_id, cursor, summary)
                at_cursor = dataclasses.replace(summary, acted=dict(summary.acted))
                if cursor is None:
                    break
            await self._remember_marker(newest)
        except BaseException as exc:
            await self._stopped(run_id, at_cursor, exc)
            raise
        finally:
            if counter is not None:
                counter.cancel()
        summary.status = "done"
        await self.sweeps.finish(run_id, "done", summary)
        return summary

    async def sweep_since(self, age: timedelta, *,
                          progress: Progress | None = None) -> RunSummary:
        """Objects stored in the last ``age`` (by upload time where the layout says it)."""
        cutoff = utcnow() - age

        async def body(run_id: int, summary: RunSummary) -> None:
            if self.source.order == "newest_first":
                cursor: str | None = None
                while True:
                    page = await self.source.page(cursor)
                    fresh = [o for o in page.objects if o.modified is None or o.modified >= cutoff]
                    await self._process(run_id, summary, fresh, progress)
                    if len(fresh) < len(page.objects) or page.next_cursor is None:
                        break
                    cursor = page.next_cursor
            else:
                timed = await self._time_ordered()
                cursor = key_for_time(cutoff, self.source.key_prefix) if timed else None
                while True:
                    page = await self.source.page(cursor)
                    fresh = [o for o in page.objects if _newer(o, cutoff, self.source.key_prefix)]
                    await self._process(run_id, summary, fresh, progress)
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor

        return await self._in_run("since", body)

    async def sweep_new(self) -> RunSummary:
        """One loop of the continuous sweep: what was stored since the last loop.

        Its listing cost follows the number of new objects, not the size of the store,
        except in the unordered fallback, which reads a bounded slice per loop.
        """
        async def body(run_id: int, summary: RunSummary) -> None:
            state = json.loads(await self.sweeps.cursor(self.source.name) or "{}")
            if self.source.order == "newest_first":
                state = await self._new_newest_first(run_id, summary, state)
            elif state.get("layout") == "time" or (
                    "layout" not in state and await self._time_ordered()):
                state = await self._new_time_ordered(run_id, summary, state)
            else:
                state = await self._new_unordered(run_id, summary, state)
            await self.sweeps.set_cursor(self.source.name, json.dumps(state))

        return await self._in_run("continuous", body)

    async def _in_run(self, mode: str,
                      body: Callable[[int, RunSummary], Awaitable[None]]) -> RunSummary:
        """A new run of ``mode``: pending acts first, then ``body``, then its record."""
        run_id = await self._start(mode)
        summary = RunSummary(run_id, self.source.name, mode)
        try:
            await self._finish_pending(run_id, summary)
            await body(run_id, summary)
        except BaseException as exc:
            await self._stopped(run_id, summary, exc)
            raise
        summary.status = "done"
        await self.sweeps.finish(run_id, "done", summary)
        return summary

    async def _new_newest_first(self, run_id: int, summary: RunSummary,
                                state: dict[str, Any]) -> dict[str, Any]:
        since = _parse_time(state.get("newest"))
        stop_before = since - timedelta(seconds=self.settings.overlap_s) if since else (
            utcnow() - timedelta(seconds=self.settings.overlap_s))
        newest = since
        cursor: str | None = None
        while True:
            page = await self.source.page(cursor)
            fresh = [o for o in page.objects if o.modified is None or o.modified >= stop_before]
            for o in fresh:
                if o.modified is not None and (newest is None or o.modified > newest):
                    newest = o.modified
            await self._process(run_id, summary, fresh, None, only_unseen=True)
            if len(fresh) < len(page.objects) or page.next_cursor is None:
                break
            cursor = page.next_cursor
        return {"layout": "newest_first", "newest": (newest or utcnow()).isoformat()}

    async def _new_time_ordered(self, run_id: int, summary: RunSummary,
                                state: dict[str, Any]) -> dict[str, Any]:
        prefix = self.source.key_prefix
        last = state.get("key")
        last_time = time_of_key(last, prefix) if isinstance(last, str) else None
        start_time = (last_time or utcnow()) - timedelta(seconds=self.settings.overlap_s)
        cursor: str | None = key_for_time(start_time, prefix)
        newest = last if isinstance(last, str) else None
        while cursor is not None:
            page = await self.source.page(cursor)
            timed = [o for o in page.objects if time_of_key(o.key, prefix) is not None]
            if timed and (newest is None or timed[-1].key > newest):
                newest = timed[-1].key
            await self._process(run_id, summary, page.objects, None, only_unseen=True)
            cursor = page.next_cursor
        out: dict[str, Any] = {"layout": "time"}
        if newest is not None:
            out["key"] = newest
        return out

    async def _new_unordered(self, run_id: int, summary: RunSummary,
                             state: dict[str, Any]) -> dict[str, Any]:
        cursor = state.get("cursor") if isinstance(state.get("cursor"), str) else None
        for _ in range(self.settings.unordered_pages_per_loop):
            page = await self.source.page(cursor)
            await self._process(run_id, summary, page.objects, None, only_unseen=True)
            cursor = page.next_cursor
            if cursor is None:
                break  # went round the whole store; the next loop starts again
        return {"layout": "unordered", "cursor": cursor}

    # -- one page, one object -------------------------------------------------------------

    # One page in one place (skip what is done; then check, record, act per batch): the
    # order record-before-act is the point, and splitting it up would hide it.
    async def _process(self, run_id: int, summary: RunSummary, objects: list[StoredObject],  # noqa: C901
                       progress: Progress | None, *, resume: bool = False,
                       only_unseen: bool = False) -> None:
        if not objects:
            return
        summary.listed += len(objects)
        priors = await self.sweeps.priors(self.source.name, [o.key for o in objects])
        todo: list[tuple[StoredObject, PriorCheck | None]] = []
        for obj in objects:
            prior = priors.get(obj.key)
            if resume and prior is not None and prior.run_id == run_id:
                # Checked by this run before it was interrupted: counted as such.
                summary.add_recorded(prior, count_act=obj.key not in self._finished)
                if progress is not None:
                    progress.advance()
                continue
            if prior is not None and only_unseen and _same_version(prior, obj):
                summary.already_checked += 1
                if progress is not None:
                    progress.advance()
                continue
            todo.append((obj, prior))
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(obj: StoredObject, prior: PriorCheck | None) -> _Checked | None:
            async with gate:
                return await self._check_one(run_id, summary, obj, prior)

        # Checked in batches, each recorded in one transaction before anything in it is
        # acted on: a crash loses at most a batch of checks, never an act's record.
        for i in range(0, len(todo), RECORD_BATCH):
            batch = todo[i:i + RECORD_BATCH]
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(obj, prior)) for obj, prior in batch]
            checked = [r for r in (task.result() for task in tasks) if r is not None]
            await self.sweeps.record(run_id, self.source.name, [c.record for c in checked])
            for c in checked:
                if c.record.action == "flag":
                    await self._flag(run_id, summary, c.record.obj, c.record.outcome, c.data)
                elif c.record.action_state == "pending":
                    await self._act(run_id, summary, c.record.obj, c.record.action,
                                    c.record.outcome, c.data)
            if progress is not None:
                progress.advance(len(batch))
            if self._failures >= MAX_CONSECUTIVE_ERRORS:
                raise SweepError(f"{self._failures} objects in a row could not be read from "
                                 f"{self.source.name}; last error: {self._last_error}. Run the "
                                 "sweep again to resume once the store answers.")

    async def _check_one(self, run_id: int, summary: RunSummary, obj: StoredObject,
                         prior: PriorCheck | None) -> _Checked | None:
        try:
            outcome, data = await self._check(obj, prior, summary)
        except ObjectGone:
            return None  # removed since the listing: nothing left to check
        except SweepError as exc:
            summary.errors += 1
            self._failures += 1
            self._last_error = str(exc)
            log.warning("sweep could not check %s: %s", obj.key, exc)
            return _Checked(CheckRecord(
                obj, CheckOutcome("", "accept", None, "error", str(exc)),
                downloaded=False, action="none", action_state="done",
                audit=self._audit(run_id, "sweep_error", obj, None, reason=str(exc))), None)
        self._failures = 0
        summary.tally(outcome.label, outcome.decision)
        action = "none"
        if should_act(outcome):
            action = "flag" if self.settings.dry_run else self.settings.action
        pending = action in ("delete", "quarantine")
        return _Checked(CheckRecord(
            obj, outcome, downloaded=data is not None, action=action,
            action_state="pending" if pending else "done",
            audit=self._audit(run_id, "sweep_check", obj, outcome, downloaded=data is not None),
            # pict-rs needs an alias to purge: kept until the act is done.
            action_detail=json.dumps({"aliases": list(obj.aliases)}) if pending else None),
            data)

    async def _check(self, obj: StoredObject, prior: PriorCheck | None,
                     summary: RunSummary) -> tuple[CheckOutcome, bytes | None]:
        same = prior is not None and _same_version(prior, obj)
        sha = obj.sha256 or (prior.sha256 if same and prior is not None else None)
        if sha:
            if same and prior is not None and prior.label == "unreadable":
                # Decoders are deterministic: the same bytes are still unreadable.
                return CheckOutcome(sha, self.pipeline.policy.actions.unreadable, "unreadable",
                                    "decoder", "unreadable when swept before (same bytes)"), None
            outcome = await self.pipeline.decide_stored(sha)
            if outcome is not None:
                return outcome, None
        data = await self.source.fetch(obj)
        summary.downloaded += 1
        outcome = await self.pipeline.check(data, actor="sweep", audit=False)
        return outcome, data

    # -- acting ---------------------------------------------------------------------------

    async def _flag(self, run_id: int, summary: RunSummary, obj: StoredObject,
                    outcome: CheckOutcome, data: bytes | None) -> None:
        if self.review is not None:
            note = None
            if data is None:
                data, note = await self._copy_for_review(obj, outcome, summary)
            await self.review.add(outcome.sha256, "flagged",
                                  f"sweep found {outcome.label} at {obj.key} "
                                  f"({outcome.source}): {outcome.reason}", label=outcome.label,
                                  data=data, aliases=obj.aliases, copy_note=note)
        summary.acted["flag"] = summary.acted.get("flag", 0) + 1
        await self.sweeps.action_done(
            self.source.name, obj.key, "done", "flagged for review",
            self._audit(run_id, "sweep_flag", obj, outcome,
                        dry_run=self.settings.dry_run))
        if not self.settings.dry_run:
            await self._hit(run_id, obj, outcome, "flag", "flagged for review", None)

    async def _copy_for_review(self, obj: StoredObject, outcome: CheckOutcome,
                               summary: RunSummary) -> tuple[bytes | None, str | None]:
        """The bytes of an object decided from stored hashes, downloaded only so the
        reviewer sees what was flagged, and only when the review limits keep them; else
        None and why (None too when no copy is wanted: the item already has one)."""
        assert self.review is not None
        if self.review.copies is None:
            return None, None
        if not await self.review.copy_fits(outcome.sha256, obj.size):
            if await self.review.has_copy(outcome.sha256):
                return None, None
            return None, ("not downloaded: the sweep decided from stored hashes and a copy "
                          "would not fit the review copy limits (review.copy_max_bytes)")
        try:
            data = await self.source.fetch(obj)
        except (ObjectGone, SweepError) as exc:
            return None, f"could not download it for a copy: {exc}"[:300]
        summary.downloaded += 1
        if sha256_hex(data) != outcome.sha256:
            return None, f"not kept: {obj.key} changed since it was checked"
        return data, None

    async def _act(self, run_id: int, summary: RunSummary, obj: StoredObject, action: str,
                   outcome: CheckOutcome, data: bytes | None) -> None:
        try:
            if self.keep is not None:
                data = await self._keep(run_id, obj, action, outcome, data)
            if action == "quarantine":
                detail = await self._quarantine(run_id, obj, outcome, data)
            else:
                try:
                    detail = await self.source.delete(obj)
                except ObjectGone:
                    detail = "already gone from the store"
        except SweepError as exc:
            summary.errors += 1
            log.warning("sweep could not %s %s: %s", action, obj.key, exc)
            await self.sweeps.action_done(
                self.source.name, obj.key, "failed", str(exc),
                self._audit(run_id, "sweep_action_failed", obj, outcome, reason=str(exc),
                            intended=action))
            return
        summary.acted[action] = summary.acted.get(action, 0) + 1
        await self.sweeps.action_done(
            self.source.name, obj.key, "done", detail,
            self._audit(run_id, f"sweep_{action}", obj, outcome, result=detail))
        await self._hit(run_id, obj, outcome, action, detail, data)

    async def _hit(self, run_id: int, obj: StoredObject, outcome: CheckOutcome, action: str,
                   detail: str, data: bytes | None) -> None:
        if self.hits is not None:
            await self.hits.publish(_hit_of(run_id, obj, outcome, action, detail, data))

    async def _keep(self, run_id: int, obj: StoredObject, action: str, outcome: CheckOutcome,
                    data: bytes | None) -> bytes | None:
        """The bytes, fetched if need be, handed to ``keep`` before they leave the store."""
        assert self.keep is not None
        if data is None:
            try:
                data = await self.source.fetch(obj)
            except ObjectGone:
                return None  # nothing left to keep (or to act on)
        try:
            await self.keep(_hit_of(run_id, obj, outcome, action, "", data), self.source.name)
        except Exception as exc:
            raise SweepError(f"evidence of {obj.key} could not be preserved, so it was not "
                             f"{action}d: {exc}") from None
        return data

    async def _quarantine(self, run_id: int, obj: StoredObject, outcome: CheckOutcome,
                          data: bytes | None) -> str:
        assert self.quarantine is not None
        if data is None:
            try:
                data = await self.source.fetch(obj)
            except ObjectGone:
                return "already gone from the store (quarantined before a restart)"
        if sha256_hex(data) != outcome.sha256:
            raise SweepError(f"{obj.key} changed since it was checked; not quarantined")
        hashes = outcome.hashes or await self.pipeline.store.get_hashes(outcome.sha256)
        evidence = evidence_record(obj=obj, store_name=self.source.name, outcome=outcome,
                                   hashes=hashes, run_id=run_id, node=self.settings.node,
                                   at=datetime.now(UTC))
        where = await self.quarantine.put(safe_key(obj.key), data, evidence)
        with contextlib.suppress(ObjectGone):
            await self.source.delete(obj)
        return f"quarantined to {where}"

    async def _finish_pending(self, run_id: int, summary: RunSummary) -> None:
        """Acts recorded but not confirmed done (the process stopped in between)."""
        for p in await self.sweeps.pending_actions(self.source.name):
            if self.settings.dry_run:
                continue
            obj = StoredObject(key=p.key, size=p.size, etag=p.etag,
                               aliases=_aliases(p))
            outcome = CheckOutcome(p.sha256 or "", "reject", p.label, p.decided_by or "",
                                   p.reason or "")
            log.info("finishing interrupted %s of %s", p.action, p.key)
            await self._act(run_id, summary, obj, p.action, outcome, None)
            self._finished.add(p.key)

    # -- bookkeeping ----------------------------------------------------------------------

    async def _start(self, mode: str) -> int:
        return await self.sweeps.start_run(self.source.name, mode, self.settings.action,
                                           self.settings.dry_run)

    async def _stopped(self, run_id: int, summary: RunSummary, exc: BaseException) -> None:
        """Record why a run stopped; an ``--all`` run keeps its cursor and is resumed by
        the next ``sweep --all`` (a killed process leaves it "running", to the same end)."""
        interrupted = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
        summary.status = "interrupted" if interrupted else "failed"
        why = "interrupted" if interrupted else str(exc)[:2000]
        with contextlib.suppress(Exception):
            await asyncio.shield(self.sweeps.stop(run_id, summary.status, summary, why))

    def _audit(self, run_id: int, action: str, obj: StoredObject,
               outcome: CheckOutcome | None, *, reason: str | None = None,
               **detail: Any) -> AuditEntry:
        return AuditEntry(
            actor=run_actor(run_id), action=action,
            sha256=(outcome.sha256 if outcome else obj.sha256) or None,
            decision=outcome.decision if outcome else None,
            label=outcome.label if outcome else None,
            source=outcome.source if outcome else None,
            reason=reason or (outcome.reason if outcome else None),
            detail={"run": run_id, "store": self.source.name, "key": obj.key, **detail})

    async def _time_ordered(self) -> bool:
        if self.settings.layout != "auto":
            return self.settings.layout == "time_ordered"
        page = await self.source.page(None)
        keys = [o.key for o in page.objects]
        return bool(keys) and all(time_of_key(k, self.source.key_prefix) for k in keys[-50:])

    def _marker_candidate(self, objects: list[StoredObject], current: str | None) -> str | None:
        if self.source.order == "newest_first":
            times = [o.modified for o in objects if o.modified is not None]
            best = max(times) if times else None
            cur = _parse_time(current)
            if best is None:
                return current
            return (max(best, cur) if cur else best).isoformat()
        timed = [o.key for o in objects if time_of_key(o.key, self.source.key_prefix)]
        if not timed:
            return current
        return max(timed[-1], current) if current else timed[-1]

    async def _remember_marker(self, newest: str | None) -> None:
        """After a full sweep, the continuous one goes on from the newest object seen."""
        if newest is None:
            return
        if self.source.order == "newest_first":
            state = {"layout": "newest_first", "newest": newest}
        else:
            state = {"layout": "time", "key": newest}
        if self.settings.layout == "unordered":
            return
        await self.sweeps.set_cursor(self.source.name, json.dumps(state))

    async def _count(self, progress: Progress, summary: RunSummary) -> None:
        try:
            total = await self.source.count()
        except Exception as exc:  # a progress bar without a total is no reason to stop
            log.debug("could not count %s: %s", self.source.name, exc)
            return
        if total is not None:
            progress.set_total(total, 0)


def _hit_of(run_id: int, obj: StoredObject, outcome: CheckOutcome, action: str, detail: str,
            data: bytes | None) -> Hit:
    return Hit(sha256=outcome.sha256, origin="sweep", label=outcome.label or "unknown",
               source=outcome.source, action=action, key=obj.key, aliases=tuple(obj.aliases),
               actor=f"sweep run {run_id}", detail=detail, data=data)


def _same_version(prior: PriorCheck, obj: StoredObject) -> bool:
    if obj.sha256 is not None:
        return prior.sha256 == obj.sha256
    # An object whose check failed was recorded without a sha256: it is checked again.
    return prior.size == obj.size and prior.etag == obj.etag and bool(prior.sha256)


def _newer(obj: StoredObject, cutoff: datetime, prefix: str) -> bool:
    at = time_of_key(obj.key, prefix) or obj.modified
    return at is None or at >= cutoff


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _aliases(p: PendingAction) -> tuple[str, ...]:
    try:
        aliases = json.loads(p.detail or "{}").get("aliases", [])
    except (ValueError, AttributeError):
        return ()
    return tuple(a for a in aliases if isinstance(a, str))


def _summary_from(data: dict[str, Any], run_id: int, source: str, mode: str) -> RunSummary:
    s = RunSummary(run_id, source, mode)
    for k, v in data.items():
        if hasattr(s, k) and k not in ("run_id", "source", "mode", "status"):
            setattr(s, k, v)
    return s

