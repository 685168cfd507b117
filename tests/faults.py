"""Fault injection at the store's commit boundaries: the process "dies" just before one
of a change's transactions commits (it rolls back) or just after (nothing after it runs).

Only the transactions of the task that armed the harness count, so the node's
background writers (audit batches, deliveries, expiry loops) neither shift the count nor
fail.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from attestd.db.store import Store

When = Literal["before", "after"]


class Crash(BaseException):
    """An injected death. A BaseException, as a kill is: no ``except Exception`` that
    logs and carries on can swallow it."""


class CommitFaults:
    """Counts the transactions one task opens with ``store.writing()`` and kills the
    chosen one."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.count = 0
        self._at: int | None = None
        self._when: When = "before"
        self._task: asyncio.Task[Any] | None = None
        self._original = store.writing
        store.writing = self._writing  # type: ignore[method-assign]

    def arm(self, at: int | None, when: When = "before") -> None:
        """Count this task's transactions from now; kill the ``at``-th (1-based; None: none)."""
        self.count, self._at, self._when = 0, at, when
        self._task = asyncio.current_task()

    def disarm(self) -> None:
        self._task, self._at = None, None

    def restore(self) -> None:
        self.store.writing = self._original  # type: ignore[method-assign]

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        mine = self._task is not None and asyncio.current_task() is self._task
        n = 0
        if mine:
            self.count += 1
            n = self.count
        async with self._original() as conn:
            yield conn
            if mine and n == self._at and self._when == "before":
                raise Crash(f"killed before commit {n}")
        if mine and n == self._at and self._when == "after":
            raise Crash(f"killed after commit {n}")
