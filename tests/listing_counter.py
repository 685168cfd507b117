"""Counting a sweep source's listing calls, for the sweep tests and bench_sweep.py."""

from __future__ import annotations

from typing import Any


class ListingCounter:
    """Wraps ``source.page`` so each listing call is counted; ``reset()`` starts again."""

    def __init__(self, source: Any) -> None:
        self.calls = 0
        self._page = source.page
        source.page = self._counted

    async def _counted(self, cursor: str | None) -> Any:
        self.calls += 1
        return await self._page(cursor)

    def reset(self) -> None:
        self.calls = 0
