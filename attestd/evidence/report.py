"""The report package an admin files with NCMEC's CyberTipline (never filed from here).

Field names follow the CyberTipline Reporting API's report schema (report.xsd, served
at https://report.cybertip.org/ispws/xsd): ``incidentSummary`` (``incidentType``,
``incidentDateTime``), ``reporter`` (``reportingPerson``: ``firstName``, ``lastName``,
``email``), ``internetDetails`` (``webPageIncident``: ``url``), ``personOrUserReported``
(``espIdentifier``, ``screenName``, ``ipCaptureEvent``: ``ipAddress``, ``eventName``,
``dateTime``) and, per file, ``fileDetails`` (``originalFileName``, ``locationOfFile``,
``originalFileHash``, ``fileViewedByEsp``, ``publiclyAvailable``, ``additionalInfo``).
Of these only the incident type and time are required by law; the rest is what the
node knows. Check the schema version current when you file.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestd.evidence.record import EvidenceRecord
from attestd.files import create_private

# CyberTipline's incidentType for apparent CSAM (the law's "child pornography").
CSAM_INCIDENT = "Child Pornography (possession, manufacture, and distribution)"
_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
        "image/avif": "avif", "image/jxl": "jxl", "video/mp4": "mp4", "video/webm": "webm"}


@dataclass(frozen=True)
class Reporter:
    first_name: str = ""
    last_name: str = ""
    email: str = ""


class ExportError(Exception):
    """The package could not be written where asked."""


def file_name(rec: EvidenceRecord) -> str:
    media = _dict(rec.record.get("hashes")).get("media_type")
    return f"{rec.sha256}.{_EXT.get(media if isinstance(media, str) else '', 'bin')}"


def cybertipline_report(rec: EvidenceRecord, reporter: Reporter) -> dict[str, Any]:
    """The record as CyberTipline report fields, with what the admin must still check."""
    # Read defensively: a record edited by hand or damaged still exports what it holds.
    body = rec.record
    lemmy = _dict(body.get("lemmy"))
    events = [e for e in _list(body.get("events")) if isinstance(e, dict)]
    decided = _dict(body.get("decided"))
    hashes = _dict(body.get("hashes"))
    source = _dict(body.get("source"))
    urls = [u for u in [lemmy.get("post_url"), lemmy.get("comment_url"),
                        *_list(lemmy.get("urls"))] if isinstance(u, str) and u]
    ip_events = []
    if lemmy.get("uploader_ip"):
        ip_events.append({"ipAddress": lemmy["uploader_ip"], "eventName": "Upload",
                          "dateTime": lemmy.get("uploaded_at")})
    viewed = any(e.get("method") == "human_review" or e.get("origin") == "review"
                 for e in events)
    frames = [f for f in _list(hashes.get("frames")) if isinstance(f, dict)]
    check = []
    if decided.get("label") != "csam_suspect":
        check.append(f"it was judged {decided.get('label')!r}, not csam_suspect: report only "
                     "apparent child sexual abuse material, and choose the incidentType")
    if not viewed:
        check.append("no person here has viewed it (fileViewedByEsp false): NCMEC and law "
                     "enforcement may need a warrant to open a file the provider did not view")
    if not (reporter.first_name and reporter.email):
        check.append("fill in the reporter (evidence.reporter_first_name, "
                     "reporter_last_name, reporter_email)")
    if not lemmy.get("uploader"):
        check.append("no uploader known yet (the Lemmy follow-up adds it)")
    if rec.location is None:
        check.append("no copy of the file was kept: attach it from where it is, if anywhere")
    return {
        "_about": ("Fields named as in NCMEC's CyberTipline Reporting API report schema. "
                   "Prepared by attestd for a person to file; nothing was sent to NCMEC."),
        "_check_before_filing": check,
        "incidentSummary": {"incidentType": CSAM_INCIDENT,
                            "incidentDateTime": body.get("found_at"),
                            "incidentDateTimeDescription": (
                                "when this node found the file (by "
                                f"{decided.get('origin')}, {decided.get('action')})")},
        "reporter": {"reportingPerson": {"firstName": reporter.first_name or None,
                                         "lastName": reporter.last_name or None,
                                         "email": reporter.email or None}},
        "internetDetails": [{"webPageIncident": {
            "url": urls, "additionalInfo": f"served by the fediverse instance behind "
                                           f"{body.get('node')}"}}] if urls or body.get("node")
        else [],
        "personOrUserReported": {
            "espIdentifier": _text(lemmy.get("uploader_id")),
            "screenName": lemmy.get("uploader"),
            "personOrUserReportedPerson": {"email": lemmy.get("uploader_email")},
            "ipCaptureEvent": ip_events,
        },
        "fileDetails": [{
            "originalFileName": file_name(rec),
            "locationOfFile": (urls[0] if urls else None) or source.get("key"),
            "originalFileHash": [{"hashType": "SHA256", "value": rec.sha256}],
            "fileViewedByEsp": viewed,
            "publiclyAvailable": None,
            "additionalInfo": (
                f"Judged {decided.get('label')} by {decided.get('decided_by')} "
                f"(method {decided.get('method') or 'n/a'}). Storage key "
                f"{source.get('key')!r} in {source.get('store')!r}; pict-rs aliases "
                f"{', '.join(map(str, _list(source.get('aliases')))) or 'none'}. "
                "Perceptual hashes: "
                + ("; ".join(f"PDQ {f.get('pdq')} (quality {f.get('pdq_quality')}), "
                             f"pHash {f.get('phash')}" for f in frames) or "none")),
        }],
        "evidence": {"id": rec.id, "preserved_at": rec.preserved_at.isoformat(),
                     "retain_until": rec.retain_until.isoformat(),
                     "encrypted_file": f"{file_name(rec)}.age" if rec.location else None},
    }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _readme(rec: EvidenceRecord) -> str:
    enc = f"{file_name(rec)}.age"
    how = (f"{enc} is the file, encrypted to the admin's age key. Decrypt it only where "
           "you are allowed to hold it, e.g.\n"
           f"  age --decrypt --identity admin-key.txt --output {file_name(rec)} {enc}\n"
           f"  attestd evidence decrypt {enc} --identity admin-key.txt --out {file_name(rec)}\n"
           if rec.location else "No copy of the file was kept.\n")
    return (f"Evidence record {rec.id} ({rec.sha256}), kept until "
            f"{rec.retain_until.isoformat()}.\n\n"
            "cybertipline-report.json: the CyberTipline report's fields, filled from what "
            "this node knows; read its _check_before_filing first. File the report "
            "yourself (https://report.cybertip.org); attestd sends nothing.\n"
            "evidence-record.json: the full record (hashes, what decided, times, where "
            "it was, what the Lemmy follow-up found).\n" + how)


def package_files(rec: EvidenceRecord, reporter: Reporter,
                  encrypted: bytes | None) -> dict[str, bytes]:
    files = {
        "README.txt": _readme(rec).encode(),
        "cybertipline-report.json": json.dumps(cybertipline_report(rec, reporter),
                                               indent=2, default=str).encode(),
        "evidence-record.json": json.dumps({"id": rec.id, **rec.record}, indent=2,
                                           default=str).encode(),
    }
    if encrypted is not None:
        files[f"{file_name(rec)}.age"] = encrypted
    return files


def write_package(out: Path, files: dict[str, bytes]) -> Path:
    """``files`` as a folder ``out`` (0700, files 0600) or, when ``out`` ends .tar.gz, a
    tar.gz (0600). Never replaces anything: ExportError if ``out`` exists."""
    try:
        if out.name.endswith((".tar.gz", ".tgz")):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for name, data in files.items():
                    info = tarfile.TarInfo(f"{out.name.split('.')[0]}/{name}")
                    info.size, info.mode = len(data), 0o600
                    tar.addfile(info, io.BytesIO(data))
            create_private(out, buf.getvalue())
        else:
            os.mkdir(out, 0o700)  # fails if it exists: nothing is replaced
            for name, data in files.items():
                create_private(out / name, data)
    except FileExistsError:
        raise ExportError(f"{out} already exists: give a new path (nothing was "
                          "overwritten)") from None
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror}") from None
    return out
