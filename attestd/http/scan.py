"""The pict-rs external-validation endpoint (drop-in for pictrs-safety's route shape).

pict-rs POSTs the stored bytes; any 2xx accepts the upload, anything else rejects it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging

from aiohttp import web

from attestd.config import PictrsConfig
from attestd.errors import RequestError
from attestd.http.appkeys import CONFIG, PIPELINE
from attestd.http.body import read_upload
from attestd.http.proxies import client_of
from attestd.logs import REPEAT_KEY
from attestd.model import CheckOutcome

# Status for an unreadable image the policy rejects, by what was wrong with it.
_UNREADABLE_STATUS = {"empty": 400, "corrupt": 400, "unsupported": 415, "too_large": 413,
                      "timeout": 422, "crashed": 422, "polyglot": 415}
# Status for an image rejected unhashed (policy.on_unhashable): 503 when a later try may
# be answered (hashing went on, or the decoders were busy), 422 when the file is the cause.
_UNHASHABLE_STATUS = {"deadline": 503, "busy": 503, "timeout": 422, "crashed": 422,
                      "budget": 422}

IP_CALLER = "IPADDR"

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/scan/{caller}", scan_as_caller)
    app.router.add_post("/api/v1/scan", scan_by_address)


async def scan_as_caller(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG].pictrs
    caller = request.match_info["caller"]
    client = client_of(request)
    actor = authorise_caller(cfg, caller, client.address, via_untrusted_hop=client.untrusted_hop)
    return await _scan(request, actor)


async def scan_by_address(request: web.Request) -> web.Response:
    client = client_of(request)
    actor = authorise_caller(request.app[CONFIG].pictrs, IP_CALLER, client.address,
                             via_untrusted_hop=client.untrusted_hop)
    return await _scan(request, actor)


def authorise_caller(cfg: PictrsConfig, caller: str, remote: str | None, *,
                     via_untrusted_hop: bool = False) -> str:
    """The audit name of an allowed caller; raises RequestError 401 otherwise.

    ``via_untrusted_hop``: the request carries forwarding headers that no trusted proxy
    vouches for. It came through something (a proxy in front of the node), so its address
    is that relay's, not pict-rs's, and never authorises it."""
    if caller == IP_CALLER:
        if via_untrusted_hop:
            raise RequestError(401, "this request came through a proxy (it carries "
                                    "X-Forwarded-For/Forwarded/X-Real-IP) that is not in "
                                    "server.trusted_proxies, so its address authorises "
                                    "nothing; let pict-rs call the private listener directly "
                                    "or use a caller name from pictrs.allowed_callers")
        if remote and _address_allowed(remote, cfg.allowed_ips):
            return f"pictrs:{remote}"
        raise RequestError(401, f"the address {remote} is not in pictrs.allowed_ips; add its "
                                "network there or use a caller name from pictrs.allowed_callers")
    # Compare against every name, in constant time, so timing reveals nothing about them.
    given = caller.encode()
    ok = False
    for allowed in cfg.allowed_callers:
        ok |= hmac.compare_digest(given, allowed.encode())
    if not ok:
        raise RequestError(401, "unknown caller; configure this name in pictrs.allowed_callers")
    # The name is a secret: the audit log keeps only a digest that tells callers apart.
    return f"pictrs:{hashlib.sha256(given).hexdigest()[:8]}"


def _address_allowed(remote: str, networks: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in _parsed(networks))


@functools.lru_cache(maxsize=8)
def _parsed(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    # Parsed once per configuration, not on every check.
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


async def _scan(request: web.Request, actor: str) -> web.Response:
    cfg = request.app[CONFIG]
    data, _claimed = await read_upload(request, cfg.pictrs.max_body_bytes,
                                       cfg.server.body_timeout_s)
    if not data:
        raise RequestError(400, "the body is empty: send the image bytes")
    outcome = await request.app[PIPELINE].check(data, actor=actor)
    status = status_for(outcome)
    if outcome.decision != "accept":
        log_rejection(outcome, status)
    headers = {"Retry-After": "10"} if status == 503 else None
    return web.json_response(outcome.as_json(), status=status, headers=headers)


def log_rejection(outcome: CheckOutcome, status: int) -> None:
    """One line per rejected upload: what decided, never who asked (caller names are
    secrets). Unreadable or unhashable junk, the usual flood, is thinned out."""
    kind = outcome.unreadable_kind or outcome.unhashable_kind
    extra = {REPEAT_KEY: f"rejected_{kind}"} if kind else None
    log.info("rejected %s %d: %s by %s%s", outcome.sha256[:16], status,
             outcome.label or "unjudged", outcome.source, f" ({kind})" if kind else "",
             extra=extra)


def status_for(outcome: CheckOutcome) -> int:
    """200 accepts; a reject is 406, or a 4xx naming what was wrong with unreadable bytes,
    or (not hashed) 503 to try again or 422 when the file itself cannot be hashed."""
    if outcome.decision == "accept":
        return 200
    if outcome.unhashable_kind is not None:
        return _UNHASHABLE_STATUS.get(outcome.unhashable_kind, 503)
    if outcome.unreadable_kind is not None:
        return _UNREADABLE_STATUS[outcome.unreadable_kind]
    return 406
