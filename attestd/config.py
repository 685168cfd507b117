"""The node's configuration: a typed, frozen structure loaded once at start.

Sources, later winning: the built-in defaults, the TOML file, ``ATTESTD_*`` variables.
Secrets may instead be read from files named by ``KEY_file`` keys (``SECRET_FILES``).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from attestd.errors import ConfigError
from scanner.classifier.clip import looks_like_path

ENV_PREFIX = "ATTESTD_"
CONFIG_ENV = "ATTESTD_CONFIG"
# ATTESTD_* variables that are not configuration keys.
NOT_CONFIG_ENV = frozenset({CONFIG_ENV, "ATTESTD_WORKER_TOKEN"})
DEFAULT_CONFIG_PATH = "config.toml"
# Not pict-rs's 8080 (nor Lemmy's 8536): the two usually run side by side.
DEFAULT_PORT = 8470

Action = Literal["accept", "reject"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Section):
    base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    data_dir: Path = Path("data")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    # Open connections at most, so slow or idle clients cannot use up the process's file
    # descriptors (beyond: the oldest idle one is closed, or the new one gets 503).
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    # A connection that sends no complete request for this long is closed.
    keepalive_timeout_s: float = Field(15.0, gt=0, le=3600)
    # An upload's whole body must arrive within this.
    body_timeout_s: float = Field(60.0, gt=0, le=3600)
    # HOST:PORT of a separate public listener (federation only); host:port above then
    # serves only the private routes (scan, workers, admin, metrics). Empty: one listener.
    public_listen: str = ""
    # Peers (CIDRs) whose proxy_header is believed; nobody's by default.
    trusted_proxies: tuple[str, ...] = ()
    proxy_header: Literal["X-Forwarded-For", "Forwarded"] = "X-Forwarded-For"

    @field_validator("public_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v:
            split_listen(v)
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_networks(v)


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8081 or [::1]:8081)")
    return host, int(port)


def _check_networks(v: tuple[str, ...]) -> tuple[str, ...]:
    for net in v:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{net!r} is not an IP network (use CIDR, e.g. 10.0.0.0/8)") from None
    return v


class DatabaseConfig(_Section):
    url: str = "sqlite:///data/attestd.db"
    url_file: str = ""

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///PATH or postgresql://USER:PASS@HOST/DB")
        return v


class PictrsConfig(_Section):
    allowed_callers: tuple[str, ...] = ()
    allowed_callers_file: str = ""
    allowed_ips: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_body_bytes: int = Field(40 * 1024 * 1024, ge=1024)

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an IP network (use CIDR, e.g. 10.0.0.0/8)") from None
        return v

    @field_validator("allowed_callers")
    @classmethod
    def _callers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for caller in v:
            if not caller or "/" in caller or caller == "IPADDR":
                raise ValueError(f"{caller!r} cannot be a caller name")
        return v


class ScannerConfig(_Section):
    workers: int = Field(0, ge=0, le=256)
    max_pixels: int = Field(100_000_000, ge=1)
    max_frames: int = Field(16, ge=1, le=1000)
    max_total_frames: int = Field(5000, ge=1)
    max_distinct_frames: int = Field(128, ge=1, le=5000)
    frame_budget_s: float = Field(6.0, gt=0)
    max_metadata_bytes: int = Field(1024 * 1024, ge=0)
    decode_timeout_s: float = Field(10.0, gt=0)
    worker_memory_mib: int = Field(2048, ge=128)


class MatchingConfig(_Section):
    pdq_threshold: int = Field(31, ge=0, le=256)
    pdq_min_quality: int = Field(50, ge=0, le=100)
    # Under pdq_min_quality a frame matches only when PDQ and pHash both agree; under
    # this it matches nothing (flat colour: its bits are rounding noise).
    pdq_featureless_quality: int = Field(1, ge=0, le=100)
    phash_threshold: int = Field(8, ge=0, le=64)
    # Only for peers an admin opted into perceptual ok: both hashes must be this close.
    ok_pdq_threshold: int = Field(10, ge=0, le=64)
    ok_phash_threshold: int = Field(4, ge=0, le=16)


class ClassifierConfig(_Section):
    enabled: bool = False
    model: str = "ViT-L-14"
    pretrained: str = "openai"
    cache_dir: str = ""
    device: str = "auto"
    batch_size: int = Field(16, ge=1, le=1024)
    allow_random_weights: bool = False
    # Attest verdicts of a checkpoint file that is not a published one (by digest).
    attest_unlisted_weights: bool = False


class WorkersConfig(_Section):
    enabled: bool = False
    lease_s: float = Field(120.0, ge=5)
    max_claim: int = Field(64, ge=1, le=1024)
    max_wait_s: float = Field(30.0, ge=0, le=300)


class ActionsConfig(_Section):
    ok: Action = "accept"
    nsfw: Action = "accept"
    csam_suspect: Action = "reject"
    unreadable: Action = "reject"
    blocked: Action = "reject"

    def for_label(self, label: str) -> Action:
        """The action for ``label``; labels not listed (new ones from peers) are rejected."""
        action: Action = getattr(self, label, "reject")
        return action


class PolicyConfig(_Section):
    on_unknown: Literal["reject", "accept", "accept_and_rescan"] = "accept"
    on_unhashable: Literal["reject", "accept", "accept_and_rescan"] = "reject"
    deadline_s: float = Field(8.0, gt=0, le=300)
    actions: ActionsConfig = ActionsConfig()


class ReviewConfig(_Section):
    # Unreadable uploads are often junk, or a flood meant to fill the disk: the review
    # queue keeps at most this many open unreadable items, this many per caller, and
    # this many with the same reason (random bytes all read alike) ...
    unreadable_max_items: int = Field(500, ge=0)
    unreadable_max_per_caller: int = Field(100, ge=0)
    unreadable_max_per_reason: int = Field(5, ge=0)
    # ... copies of at most this many bytes in all (beyond, items are kept without one) ...
    unreadable_max_bytes: int = Field(256 * 1024 * 1024, ge=0)
    # ... and drops items (and copies) nobody looked at after this many days.
    unreadable_expire_days: float = Field(14.0, gt=0)
    # Copies of the other items (flagged, rescan, disputed: readable images judged bad),
    # so a reviewer has a preview: this many bytes in all (beyond, items are queued
    # without one and say so), each dropped (the item stays) after this many days.
    copy_max_bytes: int = Field(1024 * 1024 * 1024, ge=0)
    copy_expire_days: float = Field(30.0, gt=0)
    # Lemmy's public URL: items whose pict-rs alias a sweep recorded link to
    # {lemmy_url}/pictrs/image/{alias}. Empty: no link.
    lemmy_url: str = ""

    @field_validator("lemmy_url")
    @classmethod
    def _lemmy_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be empty or start with http:// or https://")
        return v.rstrip("/")


class FederationConfig(_Section):
    # Tests run nodes on loopback; in production fetching private addresses is an SSRF hole.
    allow_private_addresses: bool = False
    max_clock_skew_s: int = Field(3600, ge=30, le=86400)
    inbox_max_bytes: int = Field(1024 * 1024, ge=1024)
    blocked_hosts: tuple[str, ...] = ()
    deliver: bool = True
    retry_base_s: float = Field(30.0, gt=0)
    delivery_concurrency: int = Field(16, ge=1, le=256)
    # Incoming follows from these (actor URL, or host[:port]) are accepted at once; the
    # rest wait for `attestd followers approve`.
    auto_approve: tuple[str, ...] = ()
    # How many distinct trusted peers must say bad before their word rejects.
    bad_quorum: int = Field(1, ge=1, le=100)
    # Pull each followed peer's outbox this often, besides at start and after a follow
    # is accepted: pushes can be lost, the outbox cannot.
    backfill_interval_s: float = Field(300.0, ge=5)
    # Received activities are logged (for replay refusal and the record) with their body
    # only for the types this node acts on, and only up to this size; others as a summary.
    received_body_max_bytes: int = Field(64 * 1024, ge=0)
    # and kept this long (longer than any signature's replay window).
    received_retention_days: float = Field(30.0, ge=3)
    # Follow requests waiting for an admin: at most this many (more are refused), each
    # dropped after this many days.
    max_pending_follows: int = Field(200, ge=0)
    pending_follow_expire_days: float = Field(30.0, gt=0)


class HashListSourceConfig(_Section):
    """One hash list fetched from a URL and imported as ``list:NAME``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # HTTPS only (plain http only with federation.allow_private_addresses, for tests).
    url: str
    # What a match means when the file's own label column does not say.
    label: Literal["nsfw", "csam_suspect", "blocked"] | None = None
    refresh_hours: float = Field(24.0, gt=0, le=24 * 365)


class HashListsConfig(_Section):
    # [[hash_lists.sources]] tables: name, url, label, refresh_hours.
    sources: tuple[HashListSourceConfig, ...] = ()
    # A fetched list is refused past this size (the previous copy stays in use).
    max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    timeout_s: float = Field(600.0, gt=0)


class SweepPictrsConfig(_Section):
    # No default: a guess would send the API token to whatever listens there.
    url: str = ""
    api_token: SecretStr = SecretStr("")
    api_token_file: str = ""
    page_size: int = Field(100, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class SweepS3Config(_Section):
    endpoint_url: str = ""
    bucket: str = ""
    prefix: str = ""
    access_key_id: str = ""
    access_key_id_file: str = ""
    secret_access_key: SecretStr = SecretStr("")
    secret_access_key_file: str = ""
    region: str = "us-east-1"


class SweepFsConfig(_Section):
    path: str = ""


class SweepConfig(_Section):
    enabled: bool = False
    source: Literal["pictrs", "s3", "fs"] = "fs"
    interval_s: float = Field(60.0, ge=1)
    action: Literal["delete", "quarantine", "flag"] = "flag"
    quarantine: str = ""
    layout: Literal["auto", "time_ordered", "unordered"] = "auto"
    overlap_s: float = Field(600.0, ge=0)
    unordered_pages_per_loop: int = Field(10, ge=1)
    concurrency: int = Field(8, ge=1, le=256)
    pictrs: SweepPictrsConfig = SweepPictrsConfig()
    s3: SweepS3Config = SweepS3Config()
    fs: SweepFsConfig = SweepFsConfig()

    @model_validator(mode="after")
    def _pictrs_url(self) -> SweepConfig:
        if self.enabled and self.source == "pictrs" and not self.pictrs.url:
            raise ValueError("sweep.source is pictrs but sweep.pictrs.url is not set: set it to "
                             "pict-rs's own address, e.g. http://pictrs:8080")
        return self


class BlobsConfig(_Section):
    # Where image bytes wait for a worker and copies wait for a reviewer: "local" (the
    # data folder, one host), or "s3" / "database" so every node process reaches them.
    backend: Literal["local", "s3", "database"] = "local"
    s3: SweepS3Config = SweepS3Config()

    @model_validator(mode="after")
    def _s3_bucket(self) -> BlobsConfig:
        if self.backend == "s3" and not self.s3.bucket:
            raise ValueError("blobs.backend is s3 but blobs.s3.bucket is not set: name the "
                             "bucket the node keeps image bytes in")
        return self


class AlertsConfig(_Section):
    # Apprise URLs (mailto://, matrix://, discord://, ntfy://, …): they hold passwords and
    # tokens, so prefer urls_file (one per line); only service names are ever logged.
    urls: tuple[SecretStr, ...] = ()
    urls_file: str = ""
    # Each gets a JSON POST of the documented payload (docs/alerts.md).
    webhooks: tuple[SecretStr, ...] = ()
    webhooks_file: str = ""
    # Fediverse accounts (actor URLs) sent a direct message, addressed to them only.
    admin_actors: tuple[str, ...] = ()
    # "each": a message per hit; "digest": one per digest_events hits or digest_interval_s.
    mode: Literal["each", "digest"] = "each"
    digest_events: int = Field(20, ge=1)
    digest_interval_s: float = Field(3600.0, gt=0)
    # Messages an hour at most; hits beyond wait and are folded into the next digest.
    max_per_hour: int = Field(20, ge=1)
    digest_max_items: int = Field(50, ge=1, le=1000)
    # A failing channel is tried this many times more, waiting retry_base_s, then twice that, ...
    retries: int = Field(3, ge=0, le=10)
    retry_base_s: float = Field(5.0, ge=0)

    @field_validator("admin_actors")
    @classmethod
    def _actors(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for actor in v:
            if not actor.startswith(("https://", "http://")):
                raise ValueError(f"{actor!r} is not an actor URL (e.g. "
                                 "https://lemmy.example/u/admin)")
        return v

    @property
    def enabled(self) -> bool:
        return bool(self.urls or self.webhooks or self.admin_actors)
LemmyStep = Literal["report", "remove", "purge", "ban", "ban_remove_data", "purge_person"]


class LemmyPolicyConfig(_Section):
    # Steps per kind of evidence; "report" only by default, so nothing is removed or
    # banned until the admin says so.
    override: tuple[LemmyStep, ...] = ("report",)
    hash_list: tuple[LemmyStep, ...] = ("report",)
    human_review: tuple[LemmyStep, ...] = ("report",)
    classifier: tuple[LemmyStep, ...] = ("report",)
    peer: tuple[LemmyStep, ...] = ("report",)


class LemmyConfig(_Section):
    # Lemmy's API base (e.g. http://lemmy:8536); empty: no follow-up in Lemmy.
    url: str = ""
    public_url: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: str = ""
    dry_run: bool = False
    # Hits with these labels are followed up (an image rejected as nsfw is no reason to ban).
    labels: tuple[Literal["nsfw", "csam_suspect", "blocked"], ...] = ("csam_suspect", "blocked")
    # Classifier verdicts alone are wrong about 1 time in 100: acting on them needs this.
    act_on_classifier_alone: bool = False
    policy: LemmyPolicyConfig = LemmyPolicyConfig()
    retry_base_s: float = Field(30.0, gt=0, le=86400)
    max_attempts: int = Field(10, ge=1, le=100)
    timeout_s: float = Field(10.0, gt=0, le=300)
    # Lemmy 0.19 serves pages 1 to 100 of 50 (the newest 5000 uploads).
    max_media_pages: int = Field(20, ge=1, le=100)

    @field_validator("url", "public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _complete(self) -> LemmyConfig:
        if self.url and not (self.username and self.password.get_secret_value()):
            raise ValueError("lemmy.url is set but lemmy.username or lemmy.password(_file) "
                             "is not: name the bot's admin account")
        acts = set(self.policy.classifier) - {"report"}
        if acts and not self.act_on_classifier_alone:
            raise ValueError(
                f"lemmy.policy.classifier asks for {', '.join(sorted(acts))}, but a "
                "classifier verdict alone acts only with lemmy.act_on_classifier_alone = "
                "true (its false positives run near 1 %)")
        return self


class EvidenceConfig(_Section):
    # Preserve what a sweep deletes or quarantines, a reviewer quarantines or confirms bad,
    # encrypted to the admin's age key, for retention_days (attestd.evidence).
    enabled: bool = False
    # The admin's age public key (age1...); the private key never belongs on the node.
    recipient: str = ""
    recipient_file: str = ""
    # A folder, or s3://bucket/prefix on [sweep.s3]'s endpoint; "" = data_dir/evidence.
    path: str = ""
    retention_days: float = Field(365.0, ge=1)
    # Deletes and confirmed reviews of these labels are preserved (quarantines always).
    labels: tuple[str, ...] = ("csam_suspect", "blocked")
    purge_interval_s: float = Field(3600.0, ge=1)
    # Who files the report (CyberTipline's reporter/reportingPerson), for export.
    reporter_first_name: str = ""
    reporter_last_name: str = ""
    reporter_email: str = ""

    @field_validator("recipient")
    @classmethod
    def _recipient(cls, v: str) -> str:
        v = v.strip()
        if v.upper().startswith("AGE-SECRET-KEY-"):
            raise ValueError("this is an age private key: put only its public key (age1..., "
                             "`age-keygen -y KEYFILE`) here and keep the private key off the node")
        if v:
            from attestd.age_keys import parse_recipient

            parse_recipient(v)  # a ValueError saying what is wrong
        return v

    @model_validator(mode="after")
    def _needs_recipient(self) -> EvidenceConfig:
        if self.enabled and not self.recipient:
            raise ValueError("evidence.enabled is true but evidence.recipient is empty: set it "
                             "to the admin's age public key (age1..., from `age-keygen`), or "
                             "evidence would be kept unencrypted; the node refuses to")
        return self


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # A condition that repeats (connections refused, clients gone mid-upload, review
    # copies not kept) is logged once per this many seconds, with a count.
    repeat_interval_s: float = Field(60.0, ge=0, le=86400)
    # "text": one readable line per record; "json": one JSON object per line.
    format: Literal["text", "json"] = "text"


class Config(_Section):
    node: NodeConfig = NodeConfig()
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    pictrs: PictrsConfig = PictrsConfig()
    scanner: ScannerConfig = ScannerConfig()
    matching: MatchingConfig = MatchingConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    workers: WorkersConfig = WorkersConfig()
    policy: PolicyConfig = PolicyConfig()
    review: ReviewConfig = ReviewConfig()
    federation: FederationConfig = FederationConfig()
    sweep: SweepConfig = SweepConfig()
    blobs: BlobsConfig = BlobsConfig()
    alerts: AlertsConfig = AlertsConfig()
    lemmy: LemmyConfig = LemmyConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    hash_lists: HashListsConfig = HashListsConfig()
    logging: LoggingConfig = LoggingConfig()

    # The file the configuration was looked for at (read if it exists); relative paths
    # were resolved against its folder.
    source: Path | None = None

    @property
    def keys_dir(self) -> Path:
        return self.node.data_dir / "keys"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file in use: ``$ATTESTD_CONFIG`` or ``./config.toml``."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH).absolute()


def default_config_text() -> str:
    """The documented default configuration, as ``attestd init`` writes it."""
    return resources.files("attestd").joinpath("default_config.toml").read_text("utf-8")


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None,
                *, require_file: bool = False) -> Config:
    """Load the file (if present) and the environment overrides; validate everything.

    Raises ConfigError naming the offending key.
    """
    env = os.environ if environ is None else environ
    path = (path or config_path(env)).absolute()
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    elif require_file:
        raise ConfigError(f"{path} does not exist; run `attestd init` to create it")
    for dotted, value in _env_overrides(env):
        _set_nested(data, dotted, value)
    _read_secret_files(data, path.parent)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    return _resolve_paths(cfg, path)


# Secrets that can be kept out of the config file: ``KEY_file`` names a file holding the
# value (systemd credentials, container secrets, a file only the node's user can read).
# Callers are one per line; the others are the file's text without surrounding whitespace.
SECRET_FILES: tuple[tuple[str, ...], ...] = (
    ("database", "url"),
    ("pictrs", "allowed_callers"),
    ("sweep", "pictrs", "api_token"),
    ("sweep", "s3", "access_key_id"),
    ("sweep", "s3", "secret_access_key"),
    ("blobs", "s3", "access_key_id"),
    ("blobs", "s3", "secret_access_key"),
    ("alerts", "urls"),
    ("alerts", "webhooks"),
    ("lemmy", "password"),
    ("evidence", "recipient"),
)
# Of those, the ones read one per line (blank lines and # comments skipped).
_LIST_SECRETS = frozenset({"allowed_callers", "urls", "webhooks"})


def _read_secret_files(data: dict[str, Any], base: Path) -> None:
    for keys in SECRET_FILES:
        table: Any = data
        for k in keys[:-1]:
            table = table.get(k) if isinstance(table, dict) else None
        if not isinstance(table, dict) or not table.get(keys[-1] + "_file"):
            continue
        dotted, ref = ".".join(keys), table[keys[-1] + "_file"]
        if not isinstance(ref, str):
            raise ConfigError(f"{dotted}_file: must be a file path (got {ref!r})")
        if table.get(keys[-1]):
            raise ConfigError(f"{dotted} and {dotted}_file are both set (in the file or "
                              "ATTESTD_* environment): keep only one")
        file = Path(ref) if Path(ref).is_absolute() else base / ref
        try:
            text = file.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{dotted}_file: cannot read {file}: {why}") from None
        value: Any = text.strip()
        if keys[-1] in _LIST_SECRETS:
            value = [ln.strip() for ln in text.splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#")]
        if not value:
            raise ConfigError(f"{dotted}_file: {file} is empty")
        table[keys[-1]] = value


def _env_overrides(env: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    out: list[tuple[list[str], Any]] = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_CONFIG_ENV:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"environment variable {name}: expected ATTESTD_<SECTION>__<KEY>, "
                "e.g. ATTESTD_SERVER__PORT"
            )
        out.append((parts, _parse_env_value(raw)))
    return out


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_nested(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(keys)}: {k} is a value, not a table")
        node = nxt
    node[keys[-1]] = value


def _describe(exc: ValidationError, path: Path) -> str:
    lines = [f"invalid configuration ({path} and ATTESTD_* environment):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling against "
                         "config.example.toml)")
        elif any(key.startswith(".".join(keys)) or ".".join(keys).startswith(key + ".")
                 for keys in SECRET_FILES):  # a table's own error quotes all its keys
            lines.append(f"  {key}: {err['msg']}")  # the value may be a secret: not echoed
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def _resolve_paths(cfg: Config, source: Path) -> Config:
    base = source.parent
    data_dir = cfg.node.data_dir if cfg.node.data_dir.is_absolute() else base / cfg.node.data_dir
    url = cfg.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///"):]
        if rel and rel != ":memory:":
            url = "sqlite:///" + str((base / rel).resolve())
    pretrained = cfg.classifier.pretrained
    if looks_like_path(pretrained) and not Path(pretrained).expanduser().is_absolute():
        pretrained = str((base / Path(pretrained).expanduser()).resolve())
    return cfg.model_copy(update={
        "classifier": cfg.classifier.model_copy(update={"pretrained": pretrained}),
        "node": cfg.node.model_copy(update={"data_dir": data_dir.resolve()}),
        "database": cfg.database.model_copy(update={"url": url}),
        "source": source,
    })
