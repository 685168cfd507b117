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
    rows = list(parse(f"# HMA export\npdq {PDQ}\nvideo_md5 {'B' * 32}\nsha256 {SHA}\n"
                      f"url https://x.example/\ntext_md5 {'c' * 32}\nmd5 {'d' * 32}\n", report))
    assert [r.pdq or r.sha256 or r.md5 for r in rows] == [PDQ, "b" * 32, SHA, "d" * 32]
    # An md5 of a URL or a text is not an md5 of uploaded bytes.
    assert report.skipped == {"url": 1, "text_md5": 1}


def test_md5_columns_and_hma_signal_csv() -> None:
    rows = list(parse(f"md5,label\n{'e' * 32},nsfw\n"))
    assert rows[0].md5 == "e" * 32 and rows[0].label == "nsfw"
    assert list(parse(f"video_md5\n{'e' * 32}\n"))[0].md5 == "e" * 32
    report = ParseReport({})
    rows = list(parse(f"signal_type,signal,label\nvideo_md5,{'a' * 32},csam_suspect\n"
                      f"pdq,{PDQ},\nurl,https://x.example/,\n", report))
    assert rows[0].md5 == "a" * 32 and rows[0].label == "csam_suspect"
    assert rows[1].pdq == PDQ and report.skipped == {"url": 1}
    with pytest.raises(HashListError, match="line 2: md5 must be 32 hex"):
        list(parse(f"signal_type,signal\nvideo_md5,{'a' * 31}\n"))
    with pytest.raises(HashListError, match="line 2: md5 must be 32 hex"):
        list(parse(f"md5,x\n{'a' * 33},\n"))


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
