"""Table definitions (SQLAlchemy Core). Alembic migrations are the source of truth for
the database; these mirror them for queries, and a test checks the two agree."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
IdType = BigInteger().with_variant(Integer(), "sqlite")

images = Table(
    "images",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("media_type", String(64), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("frame_count", Integer, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)

image_frames = Table(
    "image_frames",
    metadata,
    Column("sha256", String(64), ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True),
    Column("frame_index", Integer, primary_key=True),
    Column("pdq", String(64), nullable=False),
    Column("pdq_quality", Integer, nullable=False),
    Column("phash", String(16), nullable=False),
)

# Verdicts this node holds about an image, with where each came from.
verdicts = Table(
    "verdicts",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("label", String(32), nullable=False),
    # classifier | human_review | hash_list
    Column("method", String(32), nullable=False),
    # Human-readable provenance: model id, reviewer, list name.
    Column("source", Text, nullable=False),
    Column("model", Text, nullable=True),
    Column("detail", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retracted_at", DateTime(timezone=True), nullable=True),
    Index("ix_verdicts_sha256", "sha256"),
)

overrides = Table(
    "overrides",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("action", String(8), nullable=False),  # allow | block
    Column("note", Text, nullable=False, default=""),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("sha256", name="uq_overrides_sha256"),
)

# Perceptual hashes that make an image bad when a check's hashes come near them: blocked
# overrides, own bad verdicts, imported lists. Loaded into the in-memory index.
hash_entries = Table(
    "hash_entries",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("pdq", String(64), nullable=True),
    Column("pdq_quality", Integer, nullable=True),
    Column("phash", String(16), nullable=True),
    Column("sha256", String(64), nullable=True),
    # md5 of the whole file (HMA md5 / video_md5 signals), matched before decoding.
    Column("md5", String(32), nullable=True),
    Column("label", String(32), nullable=False),
    # e.g. "override:12", "verdict:7", "list:ncmec"
    Column("source", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_hash_entries_source", "source"),
    Index("ix_hash_entries_sha256", "sha256"),
    Index("ix_hash_entries_md5", "md5"),
)

# Hash lists fetched from a URL: where from, how often, and how the last refresh went
# (a failed one keeps the list's entries as they were).
hash_list_urls = Table(
    "hash_list_urls",
    metadata,
    Column("source", String(80), primary_key=True),  # "list:NAME"
    Column("url", Text, nullable=False),
    Column("label", String(32), nullable=True),
    Column("refresh_hours", Float, nullable=True),  # None: refreshed only by hand
    Column("last_try_at", DateTime(timezone=True), nullable=True),
    Column("last_ok_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("entries", Integer, nullable=True),
)

# Every change to hash_entries, in order, so each node process can keep its index in
# step with the database by reading what is new.
hash_events = Table(
    "hash_events",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("entry_id", IdType, nullable=False),
    Column("op", String(8), nullable=False),  # add | remove
)

# Every change to an image's override or verdicts, so each node process can drop what
# it cached about that sha256.
judgement_events = Table(
    "judgement_events",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),  # who asked: pict-rs caller, CLI user, admin
    Column("action", String(32), nullable=False),  # check | override_add | override_remove …
    Column("sha256", String(64), nullable=True),
    Column("decision", String(16), nullable=True),  # accept | reject
    Column("label", String(32), nullable=True),
    Column("source", Text, nullable=True),  # what decided
    Column("reason", Text, nullable=True),
    Column("detail", JSON, nullable=True),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_sha256", "sha256"),
)

# Images waiting for a classifier (policy.on_unknown = accept_and_rescan, or a queue).
jobs = Table(
    "jobs",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # queued | leased | done | failed
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", Text, nullable=True),  # worker name
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("result_label", String(32), nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("sha256", name="uq_jobs_sha256"),
    Index("ix_jobs_state", "state"),
)

# GPU workers allowed to claim jobs; only a digest of each bearer token is kept.
workers = Table(
    "workers",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=True),
)

# Bearer tokens for the admin API (``attestd admin token create``); only digests are kept.
admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

# People who log in to the admin pages (``attestd admin set-password``): scrypt hashes.
admin_users = Table(
    "admin_users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # admin: everything; moderator: the review pages and API only (attestd.admin_users).
    Column("role", String(16), nullable=False, server_default="admin"),
)

# Browser sessions, by digest of the cookie's secret; each carries its CSRF token and the
# csam_suspect images its admin chose to see (one opt-in per image).
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("name", String(100), ForeignKey("admin_users.name", ondelete="CASCADE"),
           nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revealed", JSON, nullable=True),
    # [level, text] shown once on the next page, whichever node process serves it.
    Column("flash", JSON, nullable=True),
    Index("ix_admin_sessions_name", "name"),
)

# Failed admin logins by "addr:<address>" and "name:<login>", shared by every node
# process so a load balancer spreading guesses over them gives no fresh free tries.
admin_login_failures = Table(
    "admin_login_failures",
    metadata,
    Column("key", String(120), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", Float, nullable=False),  # seconds since the epoch
)

# Activities waiting to be (or already) delivered, one row per destination inbox.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("inbox", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("activity_id", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    # queued | delivered | stopped | parked
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("ix_deliveries_due", "state", "next_attempt_at"),
    Index("ix_deliveries_host", "host"),
)

# Every verified activity received, by id: de-duplication and a record for handlers.
received_activities = Table(
    "received_activities",
    metadata,
    Column("id", Text, primary_key=True),
    Column("actor", Text, nullable=False),
    Column("type", String(64), nullable=False),
    Column("body", JSON, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# What this node published, newest last; ids are UUIDv7 strings (time-ordered cursors).
outbox = Table(
    "outbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("activity", JSON, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
)

# Actors following this node. Only accepted followers receive and may read attestations.
followers = Table(
    "followers",
    metadata,
    Column("id", String(36), primary_key=True),  # UUIDv7: paging cursor
    Column("actor", Text, nullable=False, unique=True),
    Column("inbox", Text, nullable=False),
    Column("shared_inbox", Text, nullable=True),
    Column("state", String(16), nullable=False),  # pending | accepted | rejected
    Column("follow_activity", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_followers_state", "state", "id"),
)

# Nodes this node follows, and how far it trusts each (docs/architecture.md, "The trust rules").
peers = Table(
    "peers",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("actor", Text, nullable=False, unique=True),
    Column("inbox", Text, nullable=False),
    Column("outbox", Text, nullable=True),
    Column("trust", String(16), nullable=False),  # none | bad_only | full
    # Opt-in: an ``ok`` also counts for near-copies within matching.ok_* thresholds.
    Column("perceptual_ok", Boolean, nullable=False, default=False),
    Column("state", String(16), nullable=False),  # pending | accepted | rejected
    Column("follow_id", Text, nullable=True),
    # The outbox cursor (min_id) up to which this node has read the peer's outbox.
    Column("outbox_cursor", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=True),
    Column("last_backfill_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
)

# Attestations received from peers, verified. A retraction keeps the row (retracted_at)
# so a late-arriving Create of the same id is not applied again.
attestations = Table(
    "attestations",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("object_id", Text, nullable=False, unique=True),
    Column("issuer", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("label", String(32), nullable=False),
    Column("method", String(32), nullable=False),
    Column("model", Text, nullable=True),
    Column("published", DateTime(timezone=True), nullable=True),
    Column("expires", DateTime(timezone=True), nullable=True),
    Column("retracted_at", DateTime(timezone=True), nullable=True),
    Column("body", JSON, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_attestations_sha256", "sha256"),
    Index("ix_attestations_issuer", "issuer"),
)

# Attestations this node issued (its own verdicts), by the uuid in their id.
published_attestations = Table(
    "published_attestations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("object_id", Text, nullable=False, unique=True),
    Column("sha256", String(64), nullable=False),
    Column("verdict_id", IdType, nullable=False),
    Column("body", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("retracted_at", DateTime(timezone=True), nullable=True),
    Index("ix_published_attestations_sha256", "sha256"),
)

# What a human should look at: disputed, flagged by our classifier, unreadable, and
# images accepted under accept_and_rescan that a classifier later judged bad.
review_items = Table(
    "review_items",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # flagged | disputed | unreadable | rescan | failed
    Column("reason", Text, nullable=False),
    # The label it was queued with (csam_suspect is never shown without a per-image opt-in).
    Column("label", String(32), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    # Who sent it (the audit name), and the size of its kept copy: what review.* caps
    # count for unreadable uploads.
    Column("caller", String(100), nullable=True),
    Column("copy_bytes", BigInteger, nullable=True),
    # pict-rs aliases a sweep found it under (for a link to Lemmy), and why no copy of
    # it is kept when none is (limits, a failed download, expiry).
    Column("aliases", JSON, nullable=True),
    Column("copy_note", Text, nullable=True),
    Index("ix_review_items_kind_open", "kind", "resolved_at"),
)

# Storage sweeps (attestd sweep, and [sweep] in serve). A run lists a source in its own
# order; its cursor is where a resumed run starts listing again.
sweep_runs = Table(
    "sweep_runs",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),  # e.g. s3:http://host/bucket/prefix
    Column("mode", String(16), nullable=False),  # all | since | continuous
    Column("action", String(16), nullable=False),  # delete | quarantine | flag
    Column("dry_run", Boolean, nullable=False),
    Column("status", String(16), nullable=False),  # running | done | failed
    Column("cursor", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("summary", JSON, nullable=True),  # RunSummary counts, kept as the run goes
    Index("ix_sweep_runs_source", "source", "mode", "status"),
)

# One row per object a sweep has checked, written in the same transaction as the check's
# audit entry, so a crash never leaves an object checked but unrecorded (or the reverse).
sweep_objects = Table(
    "sweep_objects",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("etag", Text, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("run_id", BigInteger, nullable=False),  # the run that last checked it
    Column("decision", String(16), nullable=True),
    Column("label", String(32), nullable=True),
    Column("decided_by", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("downloaded", Boolean, nullable=False),
    Column("action", String(16), nullable=False),  # none | flag | delete | quarantine
    Column("action_state", String(16), nullable=False),  # done | pending | failed
    Column("action_detail", Text, nullable=True),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source", "key", name="uq_sweep_objects_source_key"),
    Index("ix_sweep_objects_run", "run_id", "action_state"),
    Index("ix_sweep_objects_sha256", "sha256"),
)

# Where the continuous sweep of each source goes on from.
sweep_cursors = Table(
    "sweep_cursors",
    metadata,
    Column("source", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Image bytes kept for classification ("jobs") and review ("review") when
# ``[blobs] backend = "database"``: every node process reaches them.
blobs = Table(
    "blobs",
    metadata,
    Column("namespace", String(16), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Hits waiting to be told to admins ([alerts]): a row lives until a message about it was
# sent; ``owner`` (a process) renews ``lease_until`` while it holds the row, and another
# process adopts rows whose lease ran out (their owner stopped before telling them).
alert_queue = Table(
    "alert_queue",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("event", JSON, nullable=False),
    Column("owner", String(40), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_alert_queue_lease", "lease_until"),
)

# Lemmy follow-up: one row per call a hit asks of Lemmy ("find" is the look-up that plans
# the others), done once (unique per image, step and target), retried until done.
lemmy_steps = Table(
    "lemmy_steps",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    # find | report | remove | purge | ban | ban_remove_data | purge_person
    Column("step", String(16), nullable=False),
    # post:N | comment:N | person:N; for find, evidence:KIND
    Column("target", String(64), nullable=False),
    Column("evidence", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # pending | done | failed | dry_run
    Column("attempts", Integer, nullable=False),
    Column("next_try", DateTime(timezone=True), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("sha256", "step", "target", name="uq_lemmy_steps_target"),
    Index("ix_lemmy_steps_due", "state", "next_try"),
)

# One record per image preserved as evidence (attestd.evidence); later hits on the same
# bytes add to its events. Rows go only when purged after retain_until.
evidence = Table(
    "evidence",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("found_at", DateTime(timezone=True), nullable=False),
    Column("preserved_at", DateTime(timezone=True), nullable=False),
    Column("retain_until", DateTime(timezone=True), nullable=False),
    Column("location", String(64), nullable=True),  # the encrypted bytes' file; None: no copy
    Column("record", JSON, nullable=False),
    UniqueConstraint("sha256", name="uq_evidence_sha256"),
    Index("ix_evidence_retain_until", "retain_until"),
)
