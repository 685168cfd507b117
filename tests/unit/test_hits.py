"""Hits reach every subscriber, and one failing subscriber does not stop the others."""

from __future__ import annotations

import asyncio

from attestd.hits import Hit, Hits


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    seen: list[str] = []

    async def broken(hit: Hit) -> None:
        raise RuntimeError("lemmy is down")

    async def alert(hit: Hit) -> None:
        seen.append(hit.sha256)

    hits = Hits()
    hits.subscribe("lemmy follow-up", broken)
    hits.subscribe("alerts", alert)
    asyncio.run(hits.publish(Hit(sha256="ab" * 32, origin="sweep", label="csam_suspect",
                                 source="list:ncmec", action="flag")))
    assert seen == ["ab" * 32]


def test_the_bytes_of_a_hit_never_show_in_its_repr() -> None:
    hit = Hit(sha256="cd" * 32, origin="review", label="blocked", source="override:1",
              action="quarantine", data=b"\x89PNG secret bytes")
    assert "secret" not in repr(hit)
