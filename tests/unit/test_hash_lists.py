"""Hash-list parsing: both formats, and a clear error naming the line for anything bad."""

from __future__ import annotations

import pytest

from attestd.hash_lists import HashListError, ParseReport, parse

PDQ = "f" * 64
SHA = "a" * 64


def test_csv_with_any_of_the_hash_columns() -> None:
    text = f"sha256,pdq,phash,label,note\n{SHA},,,,x\n,{PDQ.upper()},,csam_suspect,\n,,{'1' * 16},,\n"
    rows = list(parse(text))
    assert rows[0].sha256 == SHA and rows[0].pdq is None
    assert rows[1].pdq == PDQ and rows[1].label == "csam_suspect"
    assert rows[2].phash == "1" * 16


def test_threatexchange_signal_lines() -> None:
    report = ParseReport({})
    rows = list(parse(f"# HMA export\npdq {PDQ}\nvideo_md5 {'b' * 32}\nsha256 {SHA}\n", report))
    assert [r.pdq or r.sha256 for r in rows] == [PDQ, SHA]
    assert report.skipped == {"video_md5": 1}


@pytest.mark.parametrize(("text", "message"), [
    ("name,size\nx,1\n", "header"),
    (f"pdq\n{PDQ[:-1]}\n", "line 2: pdq must be 64 hex"),
    (f"pdq,sha256\n{PDQ},\n,\n", "line 3: no hash"),
    (f"pdq,pdq_quality\n{PDQ},high\n", "pdq_quality"),
    (f"pdq,pdq_quality\n{PDQ},101\n", "pdq_quality"),
    (f"pdq {PDQ}\npdq nothex{'0' * 57}\n", "line 2"),
    (f"pdq {PDQ}\npdq {'0' * 5000}\n", "line 2"),
])
def test_bad_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(HashListError, match=message):
        list(parse(text))
