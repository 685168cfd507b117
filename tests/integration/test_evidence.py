"""Evidence kept as the law asks (issue 19 item 3), on real SQLite and real folders:
bytes encrypted to the admin's age key (and only that key opens them), preserved before
a sweep deletes them, kept until retain_until whatever sweeps and reviews do, purged
after it with an audit entry, exported as a CyberTipline report package; the CLI
refuses bad IDs and never overwrites."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tarfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pyrage import x25519
from sqlalchemy import create_engine, select

from attestd.db import schema as t
from attestd.hits import Hit
from attestd.model import utcnow
from tests.conftest import make_config_env, migrate, run_cli
from tests.images import jpeg

BAD_SEED = 900


@pytest.fixture
def admin_key(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The admin's identity file (kept off the node in real life) and its public key."""
    identity = x25519.Identity.generate()
    path = tmp_path / "admin-key.txt"
    path.write_text(f"# created: for a test\n# public key: {identity.to_public()}\n"
                    f"{identity}\n")
    yield path, str(identity.to_public())


def node_env(tmp_path: Path, recipient: str, *, evidence: dict[str, Any] | None = None,
             **sweep: Any) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(url)
    return make_config_env(tmp_path, url, sweep=sweep, evidence={
        "enabled": True, "recipient": recipient, **(evidence or {})})[1]


def db(env: dict[str, str]) -> Any:
    url = Path(env["ATTESTD_CONFIG"]).read_text().split('url = "', 1)[1].split('"', 1)[0]
    return create_engine(url)


def block_bad(env: dict[str, str], tmp_path: Path) -> bytes:
    bad = jpeg(BAD_SEED)
    (tmp_path / "bad-original.jpg").write_bytes(bad)
    code, out = run_cli(env, "override", "block", str(tmp_path / "bad-original.jpg"),
                        "--note", "planted")
    assert code == 0, out
    return bad


def records(env: dict[str, str]) -> list[dict[str, Any]]:
    code, out = run_cli(env, "evidence", "list", "--json")
    assert code == 0, out
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


def audit(env: dict[str, str], action: str) -> list[Any]:
    with db(env).connect() as conn:
        return list(conn.execute(select(t.audit_log).where(t.audit_log.c.action == action)))


def swept_delete(tmp_path: Path, recipient: str) -> tuple[dict[str, str], Path, bytes]:
    store = tmp_path / "store"
    (store / "x").mkdir(parents=True)
    (store / "x" / "good.jpg").write_bytes(jpeg(5))
    env = node_env(tmp_path, recipient, source="fs", **{"fs.path": str(store)})
    bad = block_bad(env, tmp_path)
    (store / "x" / "bad.jpg").write_bytes(bad)
    code, out = run_cli(env, "sweep", "--all", "--action", "delete", "--json")
    assert code == 0, out
    return env, store, bad


def evidence_file(env: dict[str, str], tmp_path: Path, record_id: int) -> Path:
    with db(env).connect() as conn:
        location = conn.execute(select(t.evidence.c.location)
                                .where(t.evidence.c.id == record_id)).scalar_one()
    assert location, "no copy of the bytes was kept"
    return tmp_path / "data" / "evidence" / location


# -- encryption ------------------------------------------------------------------------------

def test_preserved_bytes_open_with_the_admins_key_and_not_another(
        tmp_path: Path, admin_key: tuple[Path, str]) -> None:
    key_file, recipient = admin_key
    env, store, bad = swept_delete(tmp_path, recipient)
    [rec] = records(env)
    sealed = evidence_file(env, tmp_path, rec["id"])
    raw = sealed.read_bytes()
    assert raw.startswith(b"age-encryption.org/v1") and bad[100:164] not in raw
    assert oct(sealed.stat().st_mode & 0o777) == "0o600"
    assert oct(sealed.parent.stat().st_mode & 0o777) == "0o700"

    out = tmp_path / "opened.jpg"
    code, text = run_cli(env, "evidence", "decrypt", str(sealed), "--identity",
                         str(key_file), "--out", str(out))
    assert code == 0, text
    assert out.read_bytes() == bad

    other = tmp_path / "other-key.txt"
    other.write_text(f"{x25519.Identity.generate()}\n")
    code, text = run_cli(env, "evidence", "decrypt", str(sealed), "--identity", str(other),
                         "--out", str(tmp_path / "not-opened.jpg"))
    assert code == 1 and "cannot decrypt" in text
    assert not (tmp_path / "not-opened.jpg").exists()
    # An identity file holding junk is refused without quoting it back.
    junk = tmp_path / "junk-key.txt"
    junk.write_text("AGE-SECRET-KEY-1NOTREALLYAKEYATALL\n")
    code, text = run_cli(env, "evidence", "decrypt", str(sealed), "--identity", str(junk),
                         "--out", str(tmp_path / "x.jpg"))
    assert code == 1 and "not an age private key" in text and "NOTREALLY" not in text


def test_evidence_enabled_without_a_public_key_refuses_to_start(tmp_path: Path) -> None:
    from attestd.config import load_config
    from attestd.errors import ConfigError

    (tmp_path / "node.toml").write_text(
        f'[node]\ndata_dir = "{tmp_path / "data"}"\n[evidence]\nenabled = true\n')
    code, out = run_cli({"ATTESTD_CONFIG": str(tmp_path / "node.toml")}, "serve")
    assert code == 3 and "evidence.recipient is empty" in out, out
    (tmp_path / "config.toml").write_text("[evidence]\nenabled = true\n")
    with pytest.raises(ConfigError, match="evidence.recipient is empty"):
        load_config(tmp_path / "config.toml", {})
    secret = str(x25519.Identity.generate())
    (tmp_path / "config.toml").write_text(
        f'[evidence]\nenabled = true\nrecipient = "{secret}"\n')
    with pytest.raises(ConfigError, match="private key") as caught:
        load_config(tmp_path / "config.toml", {})
    assert secret not in str(caught.value), "the private key was echoed"


# -- the sweep's delete ----------------------------------------------------------------------

def test_a_sweep_delete_preserves_the_bytes_before_deleting(
        tmp_path: Path, admin_key: tuple[Path, str]) -> None:
    _, recipient = admin_key
    env, store, bad = swept_delete(tmp_path, recipient)
    assert not (store / "x" / "bad.jpg").exists(), "the sweep did not delete"
    assert (store / "x" / "good.jpg").exists()
    [rec] = records(env)
    assert rec["sha256"] == hashlib.sha256(bad).hexdigest() and rec["bytes_kept"]
    assert rec["label"] == "blocked" and rec["key"] == "x/bad.jpg"
    with db(env).connect() as conn:
        body = conn.execute(select(t.evidence.c.record)).scalar_one()
    assert body["source"]["store"] and body["hashes"]["frames"][0]["pdq"]
    assert body["decided"]["decided_by"].startswith("override:")
    assert [e["action"] for e in body["events"]] == ["delete"]  # one event, not two
    assert len(audit(env, "evidence_preserve")) == 1 and not audit(env, "evidence_update")

    # Another sweep (the bad file uploaded again and deleted again) keeps the record.
    (store / "x" / "again.jpg").write_bytes(bad)
    code, out = run_cli(env, "sweep", "--all", "--restart", "--action", "delete", "--json")
    assert code == 0, out
    assert not (store / "x" / "again.jpg").exists()
    [again] = records(env)
    assert again["id"] == rec["id"] and again["retain_until"] >= rec["retain_until"]
    assert evidence_file(env, tmp_path, rec["id"]).exists()
    # A reviewer clearing the image withdraws verdicts, not evidence.
    code, out = run_cli(env, "review", "clear", "--sha256", rec["sha256"])
    assert "retracted" in out, out
    assert [r["id"] for r in records(env)] == [rec["id"]]
    assert evidence_file(env, tmp_path, rec["id"]).exists()


def test_a_sweep_delete_that_cannot_preserve_leaves_the_object(
        tmp_path: Path, admin_key: tuple[Path, str]) -> None:
    _, recipient = admin_key
    store = tmp_path / "store"
    store.mkdir()
    blocked_path = tmp_path / "not-a-folder"
    blocked_path.write_text("a file where the evidence folder should be")
    env = node_env(tmp_path, recipient, evidence={"path": str(blocked_path)}, source="fs",
                   **{"fs.path": str(store)})
    bad = block_bad(env, tmp_path)
    (store / "bad.jpg").write_bytes(bad)
    code, out = run_cli(env, "sweep", "--all", "--action", "delete", "--json")
    assert (store / "bad.jpg").read_bytes() == bad, "deleted without its evidence"
    assert "could not be preserved" in out or audit(env, "sweep_action_failed"), out


def test_a_sweep_quarantine_keeps_no_plaintext_copy(
        tmp_path: Path, admin_key: tuple[Path, str]) -> None:
    key_file, recipient = admin_key
    store, quarantine = tmp_path / "store", tmp_path / "quarantine"
    store.mkdir()
    env = node_env(tmp_path, recipient, source="fs", **{"fs.path": str(store)})
    bad = block_bad(env, tmp_path)
    (store / "bad.jpg").write_bytes(bad)
    code, out = run_cli(env, "sweep", "--all", "--action", "quarantine", "--quarantine",
                        str(quarantine), "--json")
    assert code == 0, out
    assert not (store / "bad.jpg").exists()
    assert not (quarantine / "bad.jpg").exists(), "a plaintext copy was quarantined"
    sealed = quarantine / "bad.jpg.age"
    assert bad[100:164] not in sealed.read_bytes()
    code, text = run_cli(env, "evidence", "decrypt", str(sealed), "-i", str(key_file),
                         "-o", str(tmp_path / "q.jpg"))
    assert code == 0 and (tmp_path / "q.jpg").read_bytes() == bad, text
    assert json.loads((quarantine / "bad.jpg.age.evidence.json").read_text())["sha256"]
    [rec] = records(env)
    assert rec["bytes_kept"] and rec["key"] == "bad.jpg"


# -- retention -------------------------------------------------------------------------------

def test_purge_removes_nothing_before_retain_until_and_audits_each_after(
        tmp_path: Path, admin_key: tuple[Path, str]) -> None:
    from attestd.config import load_config
    from attestd.db.engine import create_engine as async_engine
    from attestd.db.store import Store
    from attestd.evidence.preserver import open_evidence

    _, recipient = admin_key
    env, _, bad = swept_delete(tmp_path, recipient)
    [rec] = records(env)
    sealed = evidence_file(env, tmp_path, rec["id"])

    code, out = run_cli(env, "evidence", "purge")
    assert code == 0 and "purged 0" in out, out
    assert records(env) and sealed.exists()

    async def purge_later() -> list[int]:
        cfg = load_config(Path(env["ATTESTD_CONFIG"]), env)
        engine = async_engine(cfg.database.url)
        try:
            ev = open_evidence(cfg, Store(engine))
            assert ev is not None
            early = await ev.purge(utcnow() + timedelta(days=364))
            assert early == []
            return await ev.purge(utcnow() + timedelta(days=366))
        finally:
            await engine.dispose()

    assert asyncio.run(purge_later()) == [rec["id"]]
    assert records(env) == [] and not sealed.exists()
    [entry] = audit(env, "evidence_purge")
    assert entry.sha256 == hashlib.sha256(bad).hexdigest()
    assert entry.detail["evidence"] == rec["id"] and entry.detail["retain_until"]


# -- export ----------------------------------------------------------------------------------

def test_export_writes_the_cybertipline_fields_and_the_encrypted_file(
        tmp_path: Path, admin_key: tuple[Path, str]) -> None:
    key_file, recipient = admin_key
    env, _, bad = swept_delete(tmp_path, recipient)
    [rec] = records(env)
    code, out = run_cli(env, "evidence", "annotate", str(rec["id"]), "uploader=alice",
                        "uploader_id=42", "uploader_ip=203.0.113.9",
                        "post_url=https://lemmy.example/post/7", "community=pics")
    assert code == 0, out
    pkg = tmp_path / "report-1"
    code, out = run_cli(env, "evidence", "export", str(rec["id"]), str(pkg))
    assert code == 0, out
    assert oct(pkg.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in pkg.iterdir())
    report = json.loads((pkg / "cybertipline-report.json").read_text())
    summary = report["incidentSummary"]
    assert summary["incidentType"].startswith("Child Pornography") and summary["incidentDateTime"]
    assert "reportingPerson" in report["reporter"]
    assert report["internetDetails"][0]["webPageIncident"]["url"] == [
        "https://lemmy.example/post/7"]
    person = report["personOrUserReported"]
    assert person["screenName"] == "alice" and person["espIdentifier"] == "42"
    assert person["ipCaptureEvent"][0]["ipAddress"] == "203.0.113.9"
    [file] = report["fileDetails"]
    assert file["originalFileHash"] == [{"hashType": "SHA256",
                                         "value": hashlib.sha256(bad).hexdigest()}]
    assert file["originalFileName"].endswith(".jpg") and file["locationOfFile"]
    assert "PDQ" in file["additionalInfo"] and "fileViewedByEsp" in file
    full = json.loads((pkg / "evidence-record.json").read_text())
    assert full["lemmy"]["community"] == "pics"
    [sealed] = [p for p in pkg.iterdir() if p.name.endswith(".age")]
    out_file = tmp_path / "from-package.jpg"
    code, out = run_cli(env, "evidence", "decrypt", str(sealed), "-i", str(key_file),
                        "-o", str(out_file))
    assert code == 0 and out_file.read_bytes() == bad
    assert audit(env, "evidence_export") and audit(env, "evidence_annotate")

    tgz = tmp_path / "report-1.tar.gz"
    code, out = run_cli(env, "evidence", "export", str(rec["id"]), str(tgz))
    assert code == 0, out
    assert oct(tgz.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(tgz) as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"cybertipline-report.json", "evidence-record.json", "README.txt"} <= names


def test_evidence_cli_refuses_hostile_input(tmp_path: Path,
                                            admin_key: tuple[Path, str]) -> None:
    _, recipient = admin_key
    env, _, _ = swept_delete(tmp_path, recipient)
    [rec] = records(env)
    for bad_id in ("0", "-3", "abc", "1e9", "999"):
        code, out = run_cli(env, "evidence", "export", bad_id, str(tmp_path / f"o-{bad_id}"))
        assert code != 0 and "Traceback" not in out, (bad_id, out)
        assert not (tmp_path / f"o-{bad_id}").exists()
    code, out = run_cli(env, "evidence", "export", "999", str(tmp_path / "o"))
    assert code == 1 and "no evidence record 999" in out

    existing = tmp_path / "existing.tar.gz"
    existing.write_bytes(b"the admin's other file")
    code, out = run_cli(env, "evidence", "export", str(rec["id"]), str(existing))
    assert code == 1 and "already exists" in out
    assert existing.read_bytes() == b"the admin's other file"
    folder = tmp_path / "existing-folder"
    folder.mkdir()
    code, out = run_cli(env, "evidence", "export", str(rec["id"]), str(folder))
    assert code == 1 and list(folder.iterdir()) == []

    unwritable = tmp_path / "existing.tar.gz" / "inside"  # under a file: cannot be made
    code, out = run_cli(env, "evidence", "export", str(rec["id"]), str(unwritable))
    assert code == 1 and "cannot write" in out and "Traceback" not in out

    code, out = run_cli(env, "evidence", "annotate", str(rec["id"]), "password=hunter2")
    assert code == 1 and "keeps no field 'password'" in out
    code, out = run_cli(env, "evidence", "annotate", str(rec["id"]), "no-equals-sign")
    assert code == 1

    # A record damaged in the database still exports what it holds.
    from sqlalchemy import update

    with db(env).begin() as conn:
        conn.execute(update(t.evidence).values(record={
            "decided": "junk", "lemmy": [1, 2], "events": "x", "hashes": {"frames": 7},
            "source": {"aliases": "not-a-list"}}))
    code, out = run_cli(env, "evidence", "export", str(rec["id"]), str(tmp_path / "damaged"))
    assert code == 0 and "Traceback" not in out, out
    assert json.loads((tmp_path / "damaged" / "cybertipline-report.json").read_text())[
        "fileDetails"][0]["originalFileHash"][0]["value"] == rec["sha256"]

    out_file = tmp_path / "decrypted.jpg"
    out_file.write_bytes(b"keep me")
    not_age = tmp_path / "not-age.age"
    not_age.write_bytes(b"\x00garbage" * 50)
    code, out = run_cli(env, "evidence", "decrypt", str(not_age), "-i",
                        str(admin_key[0]), "-o", str(tmp_path / "g.jpg"))
    assert code == 1 and "Traceback" not in out and not (tmp_path / "g.jpg").exists()
    sealed = evidence_file(env, tmp_path, rec["id"])
    code, out = run_cli(env, "evidence", "decrypt", str(sealed), "-i", str(admin_key[0]),
                        "-o", str(out_file))
    assert code == 1 and "already exists" in out and out_file.read_bytes() == b"keep me"


# -- hits from review ------------------------------------------------------------------------

def test_a_confirmed_review_is_preserved_and_a_flag_is_not(
        tmp_path: Path, admin_key: tuple[Path, str]) -> None:
    from attestd.config import load_config
    from attestd.services import open_services

    _, recipient = admin_key
    env = node_env(tmp_path, recipient)
    cfg = load_config(Path(env["ATTESTD_CONFIG"]), env)
    data = jpeg(77)
    sha = hashlib.sha256(data).hexdigest()

    async def go() -> None:
        async with open_services(cfg, follow_index=False) as svc:
            assert svc.evidence is not None
            # What review_actions.confirm publishes once a reviewer confirms a bad label.
            await svc.hits.publish(Hit(sha256=sha, origin="review", label="csam_suspect",
                                       source="verdict:1", action="confirm",
                                       method="human_review", actor="admin:ann", data=data))
            # A flag only queues for review: nothing preserved for it.
            await svc.hits.publish(Hit(sha256="ab" * 32, origin="sweep", label="blocked",
                                       source="override:1", action="flag"))

    asyncio.run(go())
    [rec] = records(env)
    assert rec["sha256"] == sha and rec["bytes_kept"] and rec["label"] == "csam_suspect"
    code, out = run_cli(env, "review", "mark", "--sha256", "cd" * 32, "--label", "csam_suspect")
    assert code == 0, out
    assert {r["sha256"] for r in records(env)} == {sha, "cd" * 32}


# -- on each database ------------------------------------------------------------------------

async def test_one_record_per_image_on_each_database(
        tmp_path: Path, db_url: str, admin_key: tuple[Path, str]) -> None:
    from attestd.db.engine import create_engine as async_engine
    from attestd.db.store import Store
    from attestd.evidence.crypto import decrypt, read_identities
    from attestd.evidence.preserver import EvidenceError, open_evidence
    from tests.conftest import make_config

    key_file, recipient = admin_key
    cfg = make_config(tmp_path, db_url, evidence={"enabled": True, "recipient": recipient})
    engine = async_engine(cfg.database.url)
    try:
        ev = open_evidence(cfg, Store(engine))
        assert ev is not None
        data = jpeg(31)
        sha = hashlib.sha256(data).hexdigest()
        # Confirmed without a copy first, then deleted by a sweep that had the bytes.
        first = await ev.preserve(Hit(sha256=sha, origin="review", label="csam_suspect",
                                      source="verdict:3", action="confirm",
                                      method="human_review"))
        second = await ev.preserve(Hit(sha256=sha, origin="sweep", label="csam_suspect",
                                       source="verdict:3", action="delete", key="a/b.jpg",
                                       data=data), store="fs")
        assert first == second
        rec = await ev.get(first)
        assert [e["action"] for e in rec.record["events"]] == ["confirm", "delete"]
        assert rec.record["source"] == {"store": "fs", "key": "a/b.jpg", "aliases": []}
        sealed = await ev.encrypted_bytes(rec)
        assert sealed is not None and decrypt(sealed, read_identities(key_file)) == data
        with pytest.raises(EvidenceError, match="not that image"):
            await ev.preserve(Hit(sha256=sha, origin="sweep", label="blocked", source="x",
                                  action="delete", data=b"other bytes"))
        rec = await ev.annotate(first, {"uploader": "bob", "urls": ["https://l.example/p/1"]})
        assert rec.record["lemmy"]["uploader"] == "bob"
        # What the Lemmy follow-up calls with the hit's sha256.
        found = await ev.annotate_image(sha, {"community": "pics"}, actor="lemmy")
        assert found is not None and found.record["lemmy"] == {
            "uploader": "bob", "urls": ["https://l.example/p/1"], "community": "pics"}
        assert await ev.annotate_image("00" * 32, {"community": "x"}) is None
        rec = found
        assert await ev.purge(rec.retain_until - timedelta(seconds=1)) == []
        assert await ev.purge(rec.retain_until) == [first]
        assert await ev.records.get(first) is None
    finally:
        await engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'attestd.db'}"
    migrate(url)
    return url


async def test_serve_purges_what_has_expired(tmp_path: Path, aiohttp_client: Any,
                                             sqlite_url: str,
                                             admin_key: tuple[Path, str]) -> None:
    from sqlalchemy import update

    from attestd.db.engine import create_engine as async_engine
    from attestd.db.store import Store
    from attestd.evidence.preserver import open_evidence
    from attestd.http import create_app
    from tests.conftest import async_wait_for, make_config

    _, recipient = admin_key
    url = sqlite_url
    cfg = make_config(tmp_path, url, evidence={"enabled": True, "recipient": recipient,
                                               "purge_interval_s": 1})
    engine = async_engine(url)
    try:
        ev = open_evidence(cfg, Store(engine))
        assert ev is not None
        old = await ev.preserve(Hit(sha256="ee" * 32, origin="review", label="blocked",
                                    source="override:1", action="quarantine"))
        kept = await ev.preserve(Hit(sha256="ff" * 32, origin="review", label="blocked",
                                     source="override:2", action="quarantine"))
        async with engine.begin() as conn:
            await conn.execute(update(t.evidence).where(t.evidence.c.id == old)
                               .values(retain_until=utcnow() - timedelta(minutes=1)))
        await aiohttp_client(create_app(cfg))

        async def gone() -> bool:
            return await ev.records.get(old) is None

        assert await async_wait_for(gone)
        assert await ev.records.get(kept) is not None
    finally:
        await engine.dispose()


async def test_review_confirm_and_quarantine_on_the_admin_pages_are_preserved(
        aiohttp_client: Any, tmp_path: Path, sqlite_url: str,
        admin_key: tuple[Path, str]) -> None:
    from attestd.evidence.crypto import decrypt, read_identities
    from attestd.http import create_app
    from attestd.http.appkeys import SERVICES, STORE
    from tests.conftest import make_config
    from tests.integration.test_admin_pages import login

    key_file, recipient = admin_key
    quarantine = tmp_path / "quarantine"
    node = await aiohttp_client(create_app(make_config(
        tmp_path, sqlite_url, sweep={"quarantine": str(quarantine)},
        evidence={"enabled": True, "recipient": recipient})))
    csrf = await login(node)
    app = node.server.app
    review, store, ev = app[SERVICES].review, app[STORE], app[SERVICES].evidence
    images = {"confirm": jpeg(40), "quarantine": jpeg(41)}
    shas = {}
    for kind, data in images.items():
        hashes = await app[SERVICES].pool.hash(data)
        await store.save_image(hashes)
        shas[kind] = hashes.sha256
        await review.add(hashes.sha256, "flagged", "classified nsfw", label="nsfw", data=data)
    for kind, extra in (("confirm", {"label": "csam_suspect"}), ("quarantine", {})):
        resp = await node.post(f"/admin/review/{shas[kind]}/action", data={
            "csrf_token": csrf, "action": kind, "note": "seen", **extra})
        assert resp.status == 200
    identities = read_identities(key_file)
    for kind, data in images.items():
        rec = await ev.records.by_sha256(shas[kind])
        assert rec is not None, f"the {kind} was not preserved"
        sealed = await ev.encrypted_bytes(rec)
        assert sealed is not None and decrypt(sealed, identities) == data
        assert rec.record["hashes"]["frames"], "no PDQ/pHash in the record"
    assert not [p for p in quarantine.rglob("*") if p.is_file()
                and p.read_bytes() == images["quarantine"]], "plaintext in quarantine"


async def test_evidence_in_an_s3_prefix(tmp_path: Path, sqlite_url: str, s3_server: str,
                                        admin_key: tuple[Path, str]) -> None:
    from attestd.db.engine import create_engine as async_engine
    from attestd.db.store import Store
    from attestd.evidence.crypto import decrypt, read_identities
    from attestd.evidence.preserver import open_evidence
    from tests.conftest import make_config, new_bucket, s3_settings

    key_file, recipient = admin_key
    client, bucket = new_bucket(s3_server)
    cfg = make_config(tmp_path, sqlite_url, sweep=s3_settings(s3_server, bucket),
                      evidence={"enabled": True, "recipient": recipient,
                                "path": f"s3://{bucket}/evidence"})
    engine = async_engine(sqlite_url)
    try:
        ev = open_evidence(cfg, Store(engine))
        assert ev is not None
        data = jpeg(55)
        rid = await ev.preserve(Hit(sha256=hashlib.sha256(data).hexdigest(), origin="review",
                                    label="blocked", source="override:1",
                                    action="quarantine", data=data))
        rec = await ev.get(rid)
        listed = client.list_objects_v2(Bucket=bucket)["Contents"]
        assert [o["Key"] for o in listed] == [f"evidence/{rec.location}"]
        body = client.get_object(Bucket=bucket, Key=f"evidence/{rec.location}")["Body"].read()
        assert decrypt(body, read_identities(key_file)) == data
        assert await ev.purge(rec.retain_until) == [rid]
        assert "Contents" not in client.list_objects_v2(Bucket=bucket)
    finally:
        await engine.dispose()
