"""Loaded by the ``attestd serve`` processes of tests/e2e/test_kill_at_commit.py (this
folder first on PYTHONPATH): KILLPOINT_AT_COMMIT=before|after kills the process
with SIGKILL just before, or just after, the commit of the first classifier result it
records. Never on a production path: only these tests put this folder on the path."""

from __future__ import annotations

import os
import signal
from typing import Any

_WHEN = os.environ.get("KILLPOINT_AT_COMMIT")

if _WHEN in ("before", "after"):
    from attestd.jobs.store import JobStore

    _complete = JobStore.complete

    async def _killing_complete(self: JobStore, worker: str, job_id: int, label: str,
                                record: Any = None) -> Any:
        async def record_then_die(conn: Any, sha256: str, reason: str | None) -> Any:
            verdict = await record(conn, sha256, reason)
            if _WHEN == "before":  # every write of the change is made, none committed
                os.kill(os.getpid(), signal.SIGKILL)
            return verdict

        done = await _complete(self, worker, job_id, label,
                               record_then_die if record is not None else None)
        if _WHEN == "after" and done.outcome == "done":
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    JobStore.complete = _killing_complete  # type: ignore[method-assign]
