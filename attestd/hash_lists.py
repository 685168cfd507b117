"""Reading and writing hash lists (pure: text in, rows out).

Two formats come in:
- CSV with a header naming any of ``pdq``, ``sha256``, ``phash`` (hex; other columns,
  such as ``pdq_quality`` or ``label``, are used when present and ignored otherwise);
- ThreatExchange / HMA signal files: one ``SIGNAL_TYPE VALUE`` per line, as
  python-threatexchange's file exchange and HMA's exports write them (``pdq``,
  ``photo_pdq``, ``sha256``; types that are not image hashes, such as ``video_md5`` or
  ``url``, are counted and skipped).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from attestd.errors import AttestdError

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_TE_TYPES = {"pdq": "pdq", "photo_pdq": "pdq", "pdq_photo": "pdq", "sha256": "sha256",
             "photo_sha256": "sha256", "phash": "phash"}
MAX_LINE = 4096
# What `attestd hashes export` writes; `hashes import` reads it back.
CSV_HEADER = ("pdq", "pdq_quality", "phash", "sha256", "label", "source")


class HashListError(AttestdError):
    """A hash list cannot be read; the message names the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class ListedHash:
    pdq: str | None = None
    pdq_quality: int | None = None
    phash: str | None = None
    sha256: str | None = None
    label: str | None = None


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
        if "," in line or first in ("pdq", "sha256", "phash") and len(line.split()) == 1:
            return "csv"
        return "te"
    return "csv"


def parse(text: str, report: ParseReport | None = None) -> Iterator[ListedHash]:
    """Hashes in ``text`` (either format); raises HashListError at the first bad line."""
    report = report if report is not None else ParseReport({})
    if sniff(text) == "csv":
        yield from _parse_csv(text)
    else:
        yield from _parse_te(text.splitlines(), report)


def _parse_csv(text: str) -> Iterator[ListedHash]:
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower() for f in (reader.fieldnames or [])}
    if not fields & {"pdq", "sha256", "phash"}:
        raise HashListError("line 1: the CSV header names none of pdq, sha256, phash")
    for n, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()
               if isinstance(v, str)}
        where = f"line {n}"
        pdq = _hex(row["pdq"], 64, "pdq", where) if row.get("pdq") else None
        phash = _hex(row["phash"], 16, "phash", where) if row.get("phash") else None
        sha = _hex(row["sha256"], 64, "sha256", where) if row.get("sha256") else None
        if not (pdq or phash or sha):
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
                         label=row.get("label") or None)


def _parse_te(lines: Iterable[str], report: ParseReport) -> Iterator[ListedHash]:
    for n, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE:
            raise HashListError(f"line {n}: longer than {MAX_LINE} characters")
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, value = line.partition(" ")
        target = _TE_TYPES.get(kind.lower())
        if target is None:
            report.skipped[kind] = report.skipped.get(kind, 0) + 1
            continue
        where = f"line {n}"
        value = value.strip()
        if target == "pdq":
            yield ListedHash(pdq=_hex(value, 64, "pdq", where))
        elif target == "sha256":
            yield ListedHash(sha256=_hex(value, 64, "sha256", where))
        else:
            yield ListedHash(phash=_hex(value, 16, "phash", where))
