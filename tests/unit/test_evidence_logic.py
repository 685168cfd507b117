"""What is preserved, what an annotation may hold, and what a report says is missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from attestd.evidence.record import (
    AnnotationError,
    EvidenceRecord,
    add_event,
    annotate,
    new_record,
    should_preserve,
)
from attestd.evidence.report import CSAM_INCIDENT, Reporter, cybertipline_report
from attestd.hits import Hit

LABELS = frozenset({"csam_suspect", "blocked"})
SHA = "ab" * 32


def hit(origin: str, action: str, label: str = "csam_suspect", **kw: object) -> Hit:
    return Hit(sha256=SHA, origin=origin, label=label, source="list:ncmec",  # type: ignore[arg-type]
               action=action, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("h", "kept"), [
    (hit("sweep", "delete"), True),
    (hit("sweep", "delete", "nsfw"), False),
    (hit("sweep", "quarantine", "nsfw"), True),  # an admin chose to keep it
    (hit("review", "quarantine", "blocked"), True),
    (hit("review", "confirm"), True),
    (hit("review", "confirm", "nsfw"), False),
    (hit("sweep", "flag"), False),  # waits for a reviewer
    (hit("rescan", "review"), False),
])
def test_what_is_preserved(h: Hit, kept: bool) -> None:
    assert should_preserve(h, LABELS) is kept


def test_a_repeated_hit_is_one_event_and_fills_in_where_it_was() -> None:
    first = hit("review", "confirm", method="human_review")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    body = new_record(first, hashes=None, store=None, node="https://n.example", now=now,
                      retention=timedelta(days=365))
    assert body["retain_until"].startswith("2027-01-01")
    later = hit("sweep", "delete", key="a/b.jpg", aliases=("b.jpg",))
    body = add_event(add_event(body, later, "pictrs"), later, "pictrs")
    assert [e["action"] for e in body["events"]] == ["confirm", "delete"]
    assert body["source"] == {"store": "pictrs", "key": "a/b.jpg", "aliases": ["b.jpg"]}


def test_annotations_hold_only_known_plain_fields() -> None:
    body = {"lemmy": {"uploader": "a"}}
    assert annotate(body, {"uploader_ip": "203.0.113.1"})["lemmy"] == {
        "uploader": "a", "uploader_ip": "203.0.113.1"}
    with pytest.raises(AnnotationError, match="keeps no field 'password'"):
        annotate(body, {"password": "x"})
    with pytest.raises(AnnotationError, match="must be text"):
        annotate(body, {"urls": [[[["too deep"]]]]})
    with pytest.raises(AnnotationError, match="must be text"):
        annotate(body, {"note": object()})
    with pytest.raises(AnnotationError, match="limited to"):
        annotate(body, {"note": "x" * 30_000})


def test_the_report_says_what_is_missing_before_filing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    h = hit("sweep", "delete", "blocked", key="k")
    body = new_record(h, hashes=None, store="fs", node="https://n.example", now=now,
                      retention=timedelta(days=365))
    rec = EvidenceRecord(id=1, sha256=SHA, found_at=now, preserved_at=now,
                         retain_until=now + timedelta(days=365), location=None, record=body)
    report = cybertipline_report(rec, Reporter())
    check = " ".join(report["_check_before_filing"])
    assert "not csam_suspect" in check and "reporter" in check and "uploader" in check
    assert "no person here has viewed it" in check and "no copy" in check
    assert report["incidentSummary"]["incidentType"] == CSAM_INCIDENT
    assert report["fileDetails"][0]["fileViewedByEsp"] is False
    assert report["fileDetails"][0]["locationOfFile"] == "k"


def test_an_image_uploaded_again_and_again_does_not_grow_its_record_without_bound() -> None:
    from attestd.evidence.record import MAX_EVENTS

    now = datetime(2026, 1, 1, tzinfo=UTC)
    body = new_record(hit("sweep", "delete", key="k0"), hashes=None, store="fs", node="n",
                      now=now, retention=timedelta(days=365))
    for i in range(1, MAX_EVENTS + 50):
        body = add_event(body, hit("sweep", "delete", key=f"k{i}"), "fs")
    assert len(body["events"]) == MAX_EVENTS and body["events_not_listed"] == 50
