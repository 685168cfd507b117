"""The node's parts that admin actions work on, gathered from the running application."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from attestd.errors import RequestError
from attestd.federation.manage import Federated
from attestd.http.admin_auth import LoginThrottle
from attestd.http.appkeys import CONFIG, FEDERATION, SERVICES
from attestd.review_actions import Reviewer
from attestd.sweep.model import SweepError
from attestd.sweep.quarantine import Quarantine, open_quarantine


@dataclass
class AdminState:
    """Admin state that lives as long as the application (set up before it starts)."""

    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    quarantine: Quarantine | None = None
    quarantine_opened: bool = False


ADMIN_STATE = web.AppKey("admin-state", AdminState)


def reviewer(app: web.Application) -> Reviewer:
    svc = app[SERVICES]
    return Reviewer(svc.store, app[FEDERATION].publisher, svc.review, svc.hits)


def federated(app: web.Application) -> Federated:
    fed = app[FEDERATION]
    return Federated(app[SERVICES].store, fed.store, fed.peers, fed.publisher.identity)


def quarantine_target(app: web.Application) -> Quarantine | None:
    """Where a reviewer's quarantine goes (``sweep.quarantine``), or None if unset."""
    state = app[ADMIN_STATE]
    if not state.quarantine_opened:
        try:
            ev = app[CONFIG].evidence
            state.quarantine = open_quarantine(app[CONFIG].sweep,
                                               encrypt_to=ev.recipient if ev.enabled else "")
        except SweepError as exc:
            raise RequestError(409, str(exc)) from None
        state.quarantine_opened = True
    return state.quarantine
