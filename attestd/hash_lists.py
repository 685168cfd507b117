"""Reading and writing hash lists (pure: text in, rows out).

Two formats come in:
- CSV with a header naming any of ``pdq``, ``sha256``, ``phash``, ``md5`` (hex; other
  columns, such as ``pdq_quality`` or ``label``, are used when present and ignored
  otherwise), or HMA-style CSV with ``signal_type`` and ``signal`` columns;
- ThreatExchange / HMA signal files: one ``SIGNAL_TYPE VALUE`` per line, as
  python-threatexchange's file exchange and HMA's exports write them (``pdq``,
  ``photo_pdq``, ``sha256``, ``md5``, ``video_md5``; types that are not hashes of the
  uploaded bytes or pixels, such as ``url`` or ``text_md5``, are counted and skipped).

``md5`` and ``video_md5`` (python-threatexchange's VideoMD5Signal) are the md5 of the
whole file's bytes, so they match exactly, before and without decoding.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from attestd.errors import AttestdError

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_TE_TYPES = {"pdq": "pdq", "photo_pdq": "pdq", "pdq_photo": "pdq", "sha256": "sha256",
             "photo_sha256": "sha256", "phash": "phash", "md5": "md5", "video_md5": "md5",
             "photo_md5": "md5", "md5_video": "md5", "md5_photo": "md5"}
_LENGTH = {"pdq": 64, "sha256": 64, "phash": 16, "md5": 32}
_HASH_COLUMNS = ("pdq", "sha256", "phash", "md5", "video_md5")
MAX_LINE = 4096
# What `attestd hashes export` writes; `hashes import` reads it back.
CSV_HEADER = ("pdq", "pdq_quality", "phash", "sha256", "label", "source", "md5")


class HashListError(AttestdError):
    """A hash list cannot be read; the message names the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class ListedHash:
    pdq: str | None = None
    pdq_quality: int | None = None
    phash: str | None = None
    sha256: str | None = None
    label: str | None = None
    md5: str | None = None  # of the whole file's bytes (HMA md5 / video_md5)


@dataclass
class ParseReport:
    skipped: dict[str, int]


def _hex(value: str, length: int, what: str, where: str) -> str:
    v = value.strip().lower()
    if len(v) != length or not _HEX.match(v):
        raise HashListError(f"{where}: {what} must be {length} hex digits, got {value[:80]!r}")
    return v


def sniff(text: str) -> str:
    """``csv`` or ``te`` (ThreatExchange/HMA signal lines)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split(None, 1)[0].lower()
        if "," in line or first in _HASH_COLUMNS and len(line.split()) == 1:
            return "csv"
        return "te"
    return "csv"


def parse(text: str, report: ParseReport | None = None) -> Iterator[ListedHash]:
    """Hashes in ``text`` (either format); raises HashListError at the first bad line."""
    report = report if report is not None else ParseReport({})
    if sniff(text) == "csv":
        yield from _parse_csv(text, report)
    else:
        yield from _parse_te(text.splitlines(), report)


def _parse_csv(text: str, report: ParseReport) -> Iterator[ListedHash]:
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower() for f in (reader.fieldnames or [])}
    if {"signal_type", "signal"} <= fields:
        yield from _parse_signal_csv(reader, report)
        return
    if not fields & set(_HASH_COLUMNS):
        raise HashListError("line 1: the CSV header names none of pdq, sha256, phash, md5 "
                            "(or signal_type and signal)")
    for n, raw in enumerate(reader, start=2):
        row = _row(raw)
        where = f"line {n}"
        pdq = _hex(row["pdq"], 64, "pdq", where) if row.get("pdq") else None
        phash = _hex(row["phash"], 16, "phash", where) if row.get("phash") else None
        sha = _hex(row["sha256"], 64, "sha256", where) if row.get("sha256") else None
        md5_text = row.get("md5") or row.get("video_md5")
        md5 = _hex(md5_text, 32, "md5", where) if md5_text else None
        if not (pdq or phash or sha or md5):
            raise HashListError(f"{where}: no hash in this row")
        quality = None
        if row.get("pdq_quality"):
            try:
                quality = int(row["pdq_quality"])
            except ValueError:
                raise HashListError(f"{where}: pdq_quality must be a whole number") from None
            if not 0 <= quality <= 100:
                raise HashListError(f"{where}: pdq_quality must be 0 to 100")
        yield ListedHash(pdq=pdq, pdq_quality=quality, phash=phash, sha256=sha,
                         label=row.get("label") or None, md5=md5)


def _row(raw: dict[str | None, str | None]) -> dict[str, str]:
    return {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()
            if isinstance(v, str)}


def _parse_signal_csv(reader: csv.DictReader[str], report: ParseReport) -> Iterator[ListedHash]:
    """HMA-style rows: ``signal_type,signal`` (and optionally ``label``)."""
    for n, raw in enumerate(reader, start=2):
        row = _row(raw)
        kind = row.get("signal_type", "")
        if not kind:
            raise HashListError(f"line {n}: no signal_type in this row")
        listed = _signal(kind, row.get("signal", ""), f"line {n}", report)
        if listed is not None:
            yield dataclasses.replace(listed, label=row.get("label") or None)


def _signal(kind: str, value: str, where: str, report: ParseReport) -> ListedHash | None:
    """One signal as a ListedHash, or None (counted in ``report``) for a type we skip."""
    target = _TE_TYPES.get(kind.lower())
    if target is None:
        report.skipped[kind] = report.skipped.get(kind, 0) + 1
        return None
    v = _hex(value, _LENGTH[target], target, where)
    if target == "pdq":
        return ListedHash(pdq=v)
    if target == "sha256":
        return ListedHash(sha256=v)
    if target == "md5":
        return ListedHash(md5=v)
    return ListedHash(phash=v)


def _parse_te(lines: Iterable[str], report: ParseReport) -> Iterator[ListedHash]:
    for n, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE:
            raise HashListError(f"line {n}: longer than {MAX_LINE} characters")
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, value = line.partition(" ")
        listed = _signal(kind, value, f"line {n}", report)
        if listed is not None:
            yield listed
