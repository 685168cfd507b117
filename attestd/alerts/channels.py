"""Where alerts go: each channel sends one message and raises AlertSendError when it
could not. Channels are named by service and position (``E-Mail (alerts.urls[1])``):
their URLs hold passwords and tokens and are never logged."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import aiohttp
from uuid6 import uuid7

from attestd import __version__
from attestd.alerts.dm import direct_message
from attestd.alerts.message import Message, webhook_payload
from attestd.errors import AttestdError, ConfigError
from attestd.model import utcnow


class AlertSendError(AttestdError):
    """A channel could not send a message (the text never includes its URL)."""


class Channel(Protocol):
    name: str

    async def send(self, msg: Message, title: str, body: str) -> None: ...


class AppriseChannel:
    """One apprise URL (its own Apprise object, so a failure is retried for it alone)."""

    def __init__(self, url: str, position: str) -> None:
        import apprise  # loads its ~200 plugins: only when alerts are configured

        # Apprise logs a URL it cannot read as it is, secret and all: not here.
        apprise_log = logging.getLogger("apprise")
        was_disabled, apprise_log.disabled = apprise_log.disabled, True
        try:
            plugin = apprise.Apprise.instantiate(url)
        finally:
            apprise_log.disabled = was_disabled
        if plugin is None:
            scheme = url.split("://", 1)[0] if "://" in url else "(none)"
            raise ConfigError(f"{position}: apprise cannot use this URL (scheme {scheme!r}): "
                              "see https://github.com/caronc/apprise/wiki for each service's "
                              "URL, and `apprise -vv -b test 'URL'` says what is wrong")
        self.name = f"{plugin.service_name} ({position})"
        self._apprise = apprise.Apprise()
        self._apprise.add(plugin)

    async def send(self, msg: Message, title: str, body: str) -> None:
        ok = await self._apprise.async_notify(body=body, title=title)
        if not ok:
            raise AlertSendError(f"{self.name}: the service did not accept the message "
                                 "(apprise's log above says why)")


class WebhookChannel:
    """A JSON POST of :func:`~attestd.alerts.message.webhook_payload` (docs/alerts.md)."""

    def __init__(self, url: str, position: str, session: aiohttp.ClientSession,
                 base_url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{position}: a webhook must be an http:// or https:// URL")
        self.name = f"webhook ({position})"
        self._url, self._session, self._base_url = url, session, base_url

    async def send(self, msg: Message, title: str, body: str) -> None:
        payload = json.dumps(webhook_payload(msg, self._base_url, utcnow()),
                             separators=(",", ":"), ensure_ascii=False)
        try:
            async with self._session.post(
                    self._url, data=payload.encode("utf-8"), allow_redirects=False,
                    headers={"Content-Type": "application/json",
                             "User-Agent": f"attestd/{__version__}"},
                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if not 200 <= resp.status < 300:
                    raise AlertSendError(f"{self.name}: answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AlertSendError(f"{self.name}: {type(exc).__name__}") from None


# (inboxes, activity) -> queued for signed delivery by the node's deliverer.
Enqueue = Callable[[Sequence[str], dict[str, Any]], Awaitable[None]]
ActorLookup = Callable[[str], Awaitable[dict[str, Any]]]


class DirectMessageChannel:
    """A Note to the admin accounts, through the node's delivery queue (signed, retried,
    parked like every delivery; never the public outbox).

    Each send looks the accounts up afresh (a moved inbox is followed), falling back on
    the inbox last found when the lookup fails. An account whose inbox cannot be found
    fails the send, and the retry goes to those accounts only (each message's reached
    accounts are remembered for a while).
    """

    _REMEMBER = 256

    def __init__(self, *, actor: str, base: str, recipients: Sequence[str],
                 lookup: ActorLookup, enqueue: Enqueue) -> None:
        self.name = f"fediverse message ({len(recipients)} admin accounts)"
        self._actor, self._base = actor, base
        self._recipients = tuple(dict.fromkeys(recipients))
        self._lookup, self._enqueue = lookup, enqueue
        self._reached: OrderedDict[int, tuple[Message, set[str]]] = OrderedDict()
        self._known: dict[str, str] = {}  # actor -> the inbox last found

    async def send(self, msg: Message, title: str, body: str) -> None:
        seen = self._reached.get(id(msg))
        reached = seen[1] if seen is not None and seen[0] is msg else set()
        inboxes: dict[str, str] = {}
        missing: list[str] = []
        for r in self._recipients:
            if r in reached:
                continue
            try:
                doc = await self._lookup(r)
                inbox = doc.get("inbox")
                if not (isinstance(inbox, str) and inbox.startswith(("http://", "https://"))):
                    raise AlertSendError("its actor document names no inbox")
            except Exception as exc:  # unreachable or malformed: said below, retried
                if r in self._known:
                    inboxes[r] = self._known[r]
                else:
                    missing.append(f"{r} ({exc})")
                continue
            inboxes[r] = self._known[r] = inbox
        if inboxes:
            uid = uuid7()
            await self._enqueue(list(inboxes.values()), direct_message(
                text=f"{title}\n\n{body}", actor=self._actor, recipients=self._recipients,
                note_id=f"{self._base}/alerts/{uid}",
                activity_id=f"{self._base}/activities/{uid}", published=utcnow()))
            reached |= set(inboxes)
            self._reached[id(msg)] = (msg, reached)
            while len(self._reached) > self._REMEMBER:
                self._reached.popitem(last=False)
        if missing:
            raise AlertSendError(f"{self.name}: could not find the inbox of "
                                 + "; ".join(missing))
