"""The order in which the decoders take work (scanner.scheduling), without processes."""

from __future__ import annotations

import asyncio

import pytest

from scanner import UnreadableImage
from scanner.scheduling import HEAVY_WORK, FairQueue, Shares

CHEAP, HEAVY = 1_000_000, HEAVY_WORK * 10


async def _hold(q: FairQueue, caller: str, work: int, order: list[str], name: str,
                until: asyncio.Event) -> None:
    async with q.slot(caller, work):
        order.append(name)
        await until.wait()


async def test_heavy_work_has_a_lane_of_its_own() -> None:
    q = FairQueue(Shares(slots=2))
    assert (q.shares.heavy_slots, q.shares.caller_heavy_slots, q.shares.light_slots) == (1, 1, 4)
    order: list[str] = []
    go = asyncio.Event()
    tasks = [asyncio.create_task(_hold(q, "a", HEAVY, order, f"heavy{i}", go))
             for i in range(2)]
    await asyncio.sleep(0)
    # One heavy image decodes; the second waits for the heavy lane.
    assert order == ["heavy0"] and q.waiting == 1
    # Ordinary images do not wait for it: all four ordinary places are free.
    cheap = [asyncio.create_task(_hold(q, "a", CHEAP, order, f"cheap{i}", go))
             for i in range(5)]
    await asyncio.sleep(0)
    assert order == ["heavy0", "cheap0", "cheap1", "cheap2", "cheap3"] and q.waiting == 2
    go.set()
    await asyncio.gather(*tasks, *cheap)
    assert sorted(order[5:]) == ["cheap4", "heavy1"] and q.waiting == 0


async def test_the_caller_holding_fewest_decoders_goes_next_and_cheaper_first() -> None:
    q = FairQueue(Shares(slots=1, backlog=0))
    order: list[str] = []
    first, rest = asyncio.Event(), asyncio.Event()
    rest.set()
    holder = asyncio.create_task(_hold(q, "a", CHEAP, order, "a0", first))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(_hold(q, c, w, order, n, rest))
               for c, w, n in (("a", 5 * CHEAP, "a-big"), ("a", 2 * CHEAP, "a-small"),
                               ("b", 3 * CHEAP, "b"))]
    await asyncio.sleep(0)
    first.set()
    await asyncio.gather(holder, *waiting)
    # Every caller's cheapest first; with one decoder, ties go to the cheaper head.
    assert order == ["a0", "a-small", "b", "a-big"]


async def test_over_its_share_a_caller_is_told_busy_and_others_are_not() -> None:
    q = FairQueue(Shares(slots=2, caller_heavy_waiting=1, caller_waiting=3))
    go = asyncio.Event()
    order: list[str] = []
    held = [asyncio.create_task(_hold(q, "flood", HEAVY, order, f"h{i}", go)) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(UnreadableImage) as err:
        await q.acquire("flood", HEAVY)
    assert err.value.kind == "busy" and "expensive" in err.value.reason
    other = asyncio.create_task(_hold(q, "other", HEAVY, order, "other", go))
    await asyncio.sleep(0)
    assert q.waiting == 2
    go.set()
    await asyncio.gather(*held, other)
    assert sorted(order) == ["h0", "h1", "other"]


async def test_a_caller_that_gives_up_while_waiting_frees_its_place() -> None:
    q = FairQueue(Shares(slots=1, backlog=0))
    go = asyncio.Event()
    order: list[str] = []
    holder = asyncio.create_task(_hold(q, "a", CHEAP, order, "a", go))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(_hold(q, "b", CHEAP, order, "quitter", go))
    later = asyncio.create_task(_hold(q, "c", CHEAP, order, "later", go))
    await asyncio.sleep(0)
    quitter.cancel()
    go.set()  # the holder's release runs while the quitter's cancellation is pending
    await asyncio.gather(holder, later)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert order == ["a", "later"] and q.waiting == 0
    # Every slot came back: the whole pool is free again.
    releases = [await q.acquire("d", CHEAP)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await q.acquire("d", CHEAP)
    releases[0]()
    releases[0]()  # giving back twice gives back once
    release = await q.acquire("e", CHEAP)
    release()


def test_decode_cost_is_guessed_from_headers_and_not_fooled_by_missing_extensions() -> None:
    from scanner.cost import decode_work
    from tests.images import expensive_gif, jpeg

    gif = expensive_gif(1, 300)
    assert decode_work(gif) == 1500 * 1500 * 301
    # Without the graphic control extensions a byte search would count on, the block walk
    # still finds every frame.
    stripped = gif.replace(b"\x21\xf9\x04\x04\x02\x00\x00\x00", b"")
    assert decode_work(stripped) == 1500 * 1500 * 301
    assert decode_work(jpeg(1, (4000, 3000), quality=30)) >= 4000 * 3000
    # Anything unparsed counts by its size, never as free.
    assert decode_work(b"\x00" * 1000) == 4000
