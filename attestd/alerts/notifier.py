"""The sending edge: hits in, messages out from a background task, so the sweep or
review that found a hit never waits on a mail server.

Waiting hits are planned in memory and recorded in the alert queue (a table) until a
message about them was sent: a clean stop sends them as one last message; after a hard
kill, the next process with a notifier adopts them once their lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import aiohttp

from attestd.alerts.channels import AppriseChannel, Channel, WebhookChannel
from attestd.alerts.message import Message, event_from_hit, render
from attestd.alerts.plan import Planner, PlanSettings
from attestd.alerts.queue import AlertQueue
from attestd.config import AlertsConfig, Config
from attestd.db.store import Store
from attestd.hits import Hit

log = logging.getLogger(__name__)


class Notifier:
    """Subscribe :meth:`on_hit` to the node's Hits; :meth:`start`, then :meth:`close`."""

    def __init__(self, settings: PlanSettings, base_url: str, channels: Sequence[Channel], *,
                 retries: int = 3, retry_base_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 queue: AlertQueue | None = None) -> None:
        self.planner = Planner(settings)
        self.queue = queue
        # Whether this process looks after the alert queue (renews its rows, adopts
        # orphans): `attestd serve` from the start, any other command once it finds a
        # hit, so that a quick command never waits at exit on others' alerts.
        self.adopting = False
        self._maintained_at: float | None = None
        self.base_url = base_url
        self.channels: list[Channel] = list(channels)
        self.retries, self.retry_base_s = retries, retry_base_s
        self.clock = clock
        self.sent = 0  # messages sent (to at least one channel)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def on_hit(self, hit: Hit) -> None:
        event = event_from_hit(hit, self.base_url)
        ref = None
        if self.queue is not None:
            try:
                ref = await self.queue.add(event)
            except Exception:  # told all the same, from memory
                log.exception("alerts: could not record the hit on %s in the alert queue",
                              hit.sha256)
        self.planner.add(event, self.clock(), ref)
        self.adopting = True
        self._wake.set()

    def adopt_orphans(self) -> None:
        """Look after the alert queue from now on (the long-running server)."""
        self.adopting = True
        self._wake.set()

    def add_channel(self, channel: Channel) -> None:
        self.channels.append(channel)
        log.info("alerts: also sending to %s", channel.name)

    def remove_channel(self, channel: Channel) -> None:
        with contextlib.suppress(ValueError):
            self.channels.remove(channel)

    def start(self) -> None:
        log.info("alerts: sending to %s (%s, at most %d messages an hour)",
                 ", ".join(c.name for c in self.channels) or "nothing yet",
                 self.planner.settings.mode, self.planner.settings.max_per_hour)
        self._task = asyncio.create_task(self._run(), name="alerts")

    def poke(self) -> None:
        """Look again now (the clock moved, in tests)."""
        self._wake.set()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop: what is due goes out as usual, the rest (held by the rate limit, or
        waiting for its digest) as one message, all within ``timeout_s``. What is not
        sent by then stays in the alert queue for the next process."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiting = self.planner.waiting
        try:
            if self._task is not None:
                # Not cancelled: a message being sent, or the queue's rows being renewed,
                # finish first.
                self._stopping = True
                self._wake.set()
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            await asyncio.wait_for(self._drain(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.error("alerts: of %d hits waiting at shutdown, some were not told: the "
                      "channels did not answer within %g s (the next `attestd serve` tells "
                      "them)", waiting, timeout_s)
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _drain(self) -> None:
        while (msg := self.planner.take(self.clock())) is not None:
            await self._send(msg)
        if (msg := self.planner.flush()) is not None:
            await self._send(msg)

    async def _maintain(self, now: float) -> float | None:
        """Renew our rows' lease and adopt orphaned ones, every third of the lease;
        returns when to do it next."""
        if self.queue is None or not self.adopting:
            return None
        period = self.queue.lease.total_seconds() / 3
        if self._maintained_at is not None and now < self._maintained_at + period:
            return self._maintained_at + period
        self._maintained_at = now
        try:
            await self.queue.renew()
            adopted = await self.queue.adopt()
        except Exception as exc:  # the database may be briefly unreachable; next round
            log.warning("alerts: could not look after the alert queue: %s", exc)
            return now + period
        for ref, event in adopted:
            self.planner.add(event, now, ref)
        if adopted:
            log.warning("alerts: %d hits left untold by a process that stopped are told now",
                        len(adopted))
        return now + period

    async def _run(self) -> None:
        while not self._stopping:
            now = self.clock()
            maintain_at = await self._maintain(now)
            msg = self.planner.take(now)
            if msg is not None:
                try:
                    await self._send(msg)
                except Exception:  # a bug in one message must not end the alerts
                    log.exception("alerts: could not send a message of %d hits", msg.total)
                continue
            self._wake.clear()
            if self._stopping:
                break
            nxt = self.planner.next_at(now)
            if maintain_at is not None:
                nxt = maintain_at if nxt is None else min(nxt, maintain_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       None if nxt is None else max(0.0, nxt - now) + 0.01)

    async def _send(self, msg: Message) -> None:
        title, body = render(msg, self.base_url, self.planner.settings.max_per_hour)
        if not self.channels:
            log.warning("alerts: %d hits, and no channel to tell them to (alerts.admin_actors "
                        "are messaged only by `attestd serve`)", msg.total)
        results = await asyncio.gather(*(self._send_to(c, msg, title, body)
                                         for c in list(self.channels)))
        if results and not any(results):
            # Nobody was told: the hits wait for the next message (the rate limit
            # bounds the tries); their rows stay.
            self.planner.requeue(msg, self.clock())
            return
        self.sent += 1
        if self.queue is not None and msg.refs:
            try:
                await self.queue.done(msg.refs)
            except Exception as exc:  # told twice at worst, after a restart
                log.warning("alerts: could not clear %d told hits from the alert queue: %s",
                            len(msg.refs), exc)

    async def _send_to(self, channel: Channel, msg: Message, title: str, body: str) -> bool:
        for attempt in range(self.retries + 1):
            try:
                await channel.send(msg, title, body)
            except Exception as exc:  # never into the finder: logged and retried here
                last = attempt == self.retries
                log.warning("alerts: %s failed (attempt %d of %d%s): %s", channel.name,
                            attempt + 1, self.retries + 1, "; giving up" if last else "",
                            exc)
                if not last:
                    await asyncio.sleep(self.retry_base_s * 2 ** attempt)
                continue
            log.info("alerts: told %s of %d hits (%s)", channel.name, msg.total, msg.kind)
            return True
        return False


def plan_settings(cfg: AlertsConfig) -> PlanSettings:
    return PlanSettings(mode=cfg.mode, digest_events=cfg.digest_events,
                        digest_interval_s=cfg.digest_interval_s,
                        max_per_hour=cfg.max_per_hour, digest_max_items=cfg.digest_max_items)


@contextlib.asynccontextmanager
async def open_alerts(config: Config, store: Store | None = None
                      ) -> AsyncIterator[Notifier | None]:
    """The node's notifier, started, for ``[alerts]`` (None when nothing is configured).

    Raises ConfigError for a URL apprise does not understand (without echoing it).
    """
    cfg = config.alerts
    if not cfg.enabled:
        yield None
        return
    base = config.node.base_url
    channels: list[Channel] = [AppriseChannel(u.get_secret_value(), f"alerts.urls[{i}]")
                               for i, u in enumerate(cfg.urls, 1)]
    async with contextlib.AsyncExitStack() as stack:
        if cfg.webhooks:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            channels += [WebhookChannel(u.get_secret_value(), f"alerts.webhooks[{i}]",
                                        session, base) for i, u in enumerate(cfg.webhooks, 1)]
        notifier = Notifier(plan_settings(cfg), base, channels, retries=cfg.retries,
                            retry_base_s=cfg.retry_base_s,
                            queue=AlertQueue(store) if store is not None else None)
        notifier.start()
        stack.push_async_callback(notifier.close)
        yield notifier
