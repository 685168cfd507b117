"""The node's federation resources: its actor, key ring, inbox verifier and deliverer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from activitypub import (
    ActivityPubError,
    ActorSpec,
    canonical_host,
    ed25519_multibase,
    normalize_host,
    public_key_pem,
)
from activitypub.delivery import Deliverer
from activitypub.fetch import Fetcher, Keyring, make_session
from activitypub.inbox import InboxVerifier
from attestd import __version__
from attestd.config import Config, FederationConfig
from attestd.db.store import Store
from attestd.errors import ConfigError
from attestd.federation.backfill import Backfiller
from attestd.federation.handlers import ActivityHandler
from attestd.federation.peers import PeerStore
from attestd.federation.publisher import Identity, Publisher
from attestd.federation.store import FederationStore
from attestd.keys import NodeKeys, load_keys
from attestd.write_behind import WriteBehind

USER_AGENT = f"attestd/{__version__}"


@dataclass
class Federation:
    actor: ActorSpec
    keys: NodeKeys
    store: FederationStore
    keyring: Keyring
    inbox: InboxVerifier
    deliverer: Deliverer
    fetcher: Fetcher
    peers: PeerStore
    handler: ActivityHandler
    publisher: Publisher
    backfiller: Backfiller

    @property
    def host(self) -> str:
        return urlsplit(self.actor.id).netloc


def identity(config: Config, keys: NodeKeys) -> Identity:
    spec = actor_spec(config, keys)
    return Identity(actor=spec.id, followers=f"{config.node.base_url}/followers",
                    key_id=spec.ed25519_key_id, key=keys.ed25519)


def actor_spec(config: Config, keys: NodeKeys) -> ActorSpec:
    host = urlsplit(config.node.base_url).netloc
    return ActorSpec(
        id=f"{config.node.base_url}/actor", preferred_username="attestd",
        name=f"attestd at {host}",
        summary="Image-hash attestation node: signed verdicts about images, for trusted peers.",
        public_key_pem=public_key_pem(keys.rsa), ed25519_multibase=ed25519_multibase(keys.ed25519))


@contextlib.asynccontextmanager
async def open_federation(config: Config, store: Store,
                          writes: WriteBehind | None = None) -> AsyncIterator[Federation]:
    """Start the federation side of a node; the deliverer runs while the context is open."""
    keys = load_keys(config.keys_dir)
    fed_cfg = config.federation
    spec = actor_spec(config, keys)
    session = make_session(allow_private=fed_cfg.allow_private_addresses, user_agent=USER_AGENT)
    fstore = FederationStore(store, writes, body_max_bytes=fed_cfg.received_body_max_bytes)
    await fstore.load_recent(2 * fed_cfg.max_clock_skew_s + 600)
    # One spelling for both sides: ｂｌｏｃｋｅｄ.example is blocked.example.
    try:
        blocked = {normalize_host(h) for h in fed_cfg.blocked_hosts}
    except ActivityPubError as exc:
        raise ConfigError(f"federation.blocked_hosts: {exc}; list host names only") from None

    async def is_blocked(url: str) -> bool:
        try:
            return canonical_host(url) in blocked
        except ActivityPubError:
            return True  # no host we could ever connect to: nothing to hear from

    fetcher = Fetcher(session, key_id=spec.main_key_id, private_key=keys.rsa,
                      allow_private=fed_cfg.allow_private_addresses)
    keyring = Keyring(fetcher)
    inbox = InboxVerifier(keyring, fstore, is_blocked=is_blocked,
                          max_bytes=fed_cfg.inbox_max_bytes, max_skew_s=fed_cfg.max_clock_skew_s)
    deliverer = Deliverer(fstore, session, key_id=spec.main_key_id, private_key=keys.rsa,
                          allow_private=fed_cfg.allow_private_addresses,
                          concurrency=fed_cfg.delivery_concurrency,
                          retry_base_s=fed_cfg.retry_base_s, poll_interval_s=1.0)
    peers = PeerStore(store)
    publisher = Publisher(store, fstore, identity(config, keys), poke=deliverer.poke)

    async def attestation_arrived(sha256: str) -> None:
        store.forget(sha256)

    handler = ActivityHandler(actor_id=spec.id, fstore=fstore, peers=peers, keyring=keyring,
                              writes=writes, auto_approve=fed_cfg.auto_approve,
                              poke=deliverer.poke, on_attestation=attestation_arrived,
                              max_pending_follows=fed_cfg.max_pending_follows)
    backfiller = Backfiller(fetcher, peers, fstore, handler, fed_cfg.backfill_interval_s)
    handler.on_peer_accepted = backfiller.request
    task = asyncio.create_task(deliverer.run(), name="deliverer") if fed_cfg.deliver else None
    background = [asyncio.create_task(backfiller.run(), name="backfill"),
                  asyncio.create_task(_expire_loop(peers), name="attestation-expiry"),
                  asyncio.create_task(_prune_loop(fstore, fed_cfg), name="federation-prune")]
    try:
        yield Federation(actor=spec, keys=keys, store=fstore, keyring=keyring, inbox=inbox,
                         deliverer=deliverer, fetcher=fetcher, peers=peers, handler=handler,
                         publisher=publisher, backfiller=backfiller)
    finally:
        for bg in background:
            bg.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bg
        if task is not None:
            # Let deliveries in flight record their outcome; cancelling one half-way
            # through its database update could leave SQLite's write lock held.
            deliverer.stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), 15)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await session.close()


async def _expire_loop(peers: PeerStore, interval_s: float = 60.0) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await peers.expire()
        except Exception:  # the database may be briefly unreachable; try again
            logging.getLogger(__name__).exception("could not expire attestations")


async def _prune_loop(fstore: FederationStore, cfg: FederationConfig,
                      interval_s: float = 3600.0) -> None:
    """Forget old received activities and follow requests nobody answered."""
    while True:
        try:
            await fstore.prune_received(timedelta(days=cfg.received_retention_days))
            if n := await fstore.expire_pending_follows(
                    timedelta(days=cfg.pending_follow_expire_days)):
                logging.getLogger(__name__).info(
                    "dropped %d follow requests older than %g days (federation."
                    "pending_follow_expire_days)", n, cfg.pending_follow_expire_days)
        except Exception:  # the database may be briefly unreachable; try again
            logging.getLogger(__name__).exception("could not prune federation records")
        await asyncio.sleep(interval_s)
