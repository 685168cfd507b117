"""Following a change log whose ids commit out of order."""

from __future__ import annotations

from attestd.stream_gaps import MIN_GAP_AGE_S, StreamPosition


def test_ids_passed_over_are_read_again_until_filled() -> None:
    pos = StreamPosition()
    assert pos.saw([1, 2, 5], now=0.0, xmax=100) == [1, 2, 5]
    assert pos.last == 5 and pos.ranges() == [(3, 4)]
    # The late transaction commits 3 and 4: both are new, and the gap is gone.
    assert pos.saw([4, 3, 6], now=1.0, xmax=101) == [3, 4, 6]
    assert pos.ranges() == []
    # Seen ids are never new again.
    assert pos.saw([5, 6], now=2.0, xmax=101) == []


def test_a_gap_stays_while_a_transaction_older_than_it_runs() -> None:
    pos = StreamPosition()
    pos.saw([1, 10], now=0.0, xmax=100)
    late = MIN_GAP_AGE_S + 60
    pos.expire(now=late, xmin=99)  # transaction 99 may still hold ids 2..9
    assert pos.ranges() == [(2, 9)]
    assert pos.saw([7], now=late, xmax=120) == [7]
    assert pos.ranges() == [(2, 6), (8, 9)]
    pos.expire(now=late, xmin=100)  # everyone who could hold them has finished
    assert pos.ranges() == []


def test_without_transaction_ids_a_gap_is_a_rollback_and_expires() -> None:
    pos = StreamPosition()
    pos.saw([1, 3], now=0.0, xmax=None)
    pos.expire(now=1.0, xmin=None)
    assert pos.ranges() == [(2, 2)]
    pos.expire(now=MIN_GAP_AGE_S + 1, xmin=None)
    assert pos.ranges() == []


def test_seeded_gaps_and_many_gaps_take_turns() -> None:
    pos = StreamPosition()
    pos.seed(1000, [(2 * i, 2 * i) for i in range(1, 300)], now=0.0, xmax=5)
    first, second = pos.ranges(most=200), pos.ranges(most=200)
    assert len(first) == len(second) == 200
    assert {r for r in first + second} == {(2 * i, 2 * i) for i in range(1, 300)}
