"""The admin pages at /admin/: server-rendered (Jinja2), every asset served by the node.

Moderator wellness is the default: review previews are still, greyscale and blurred on
the server (the clear picture never reaches the browser until a deliberate click), one
image is revealed at a time, and an image labelled csam_suspect is not sent at all, not
even blurred, unless the admin opts in for that one image (which is audited).

Pages and forms are for full admins unless registered with ``reviewer=True`` (the
dashboard and the review pages), which moderators may use too.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from attestd import admin_queries, overrides
from attestd.errors import RequestError
from attestd.federation import manage
from attestd.http import admin_api
from attestd.http.admin_auth import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    Admin,
    LoginBusy,
    admin_from_request,
    clear_session_cookie,
    require_admin,
    require_reviewer,
    secure_cookies,
    set_session_cookie,
    users,
)
from attestd.http.admin_context import ADMIN_STATE, AdminState, federated
from attestd.http.appkeys import CONFIG, FEDERATION, METRICS, SERVICES, STORE
from attestd.jobs.store import JobStore
from attestd.login_failures import LoginFailures
from attestd.model import AuditEntry, utcnow
from attestd.review import REVIEW_KINDS
from attestd.trust import TRUST_LEVELS
from scanner import UnreadableImage

ROOT = "/admin"
_HERE = Path(__file__).parent
PREVIEW_SIDE = 320
CLEAR_SIDE = 1024
# Content-Security-Policy: nothing but the node's own scripts, styles and images.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_env.filters["when"] = lambda d: "never" if d is None else (
    d.strftime("%Y-%m-%d %H:%M") if isinstance(d, datetime) else str(d)[:16].replace("T", " "))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The session's waiting message, taken from the database when its page is served.
FLASH = web.RequestKey("flash", object)


def add_routes(app: web.Application) -> None:
    app[ADMIN_STATE] = AdminState()
    r = app.router
    r.add_get(ROOT, _to_root)
    r.add_get(f"{ROOT}/login", login_page)
    r.add_post(f"{ROOT}/login", login)
    r.add_post(f"{ROOT}/logout", logout)
    # Moderators: the dashboard and review only.
    r.add_get(f"{ROOT}/", _page(dashboard, reviewer=True))
    r.add_get(f"{ROOT}/review", _page(review_page, reviewer=True))
    r.add_post(f"{ROOT}/review/{{sha256}}/action", _form(review_act, "review", reviewer=True))
    r.add_post(f"{ROOT}/review/{{sha256}}/reveal", _form(review_reveal, "review", reviewer=True))
    r.add_get(f"{ROOT}/review/{{sha256}}/preview",
              _page(lambda rq, a: review_image(rq, a, False), reviewer=True))
    r.add_get(f"{ROOT}/review/{{sha256}}/image",
              _page(lambda rq, a: review_image(rq, a, True), reviewer=True))
    # Full admins only.
    r.add_get(f"{ROOT}/peers", _page(peers_page))
    r.add_post(f"{ROOT}/peers/follow", _form(peer_follow, "peers"))
    r.add_post(f"{ROOT}/peers/trust", _form(peer_trust, "peers"))
    r.add_post(f"{ROOT}/peers/remove", _form(peer_remove, "peers"))
    r.add_get(f"{ROOT}/followers", _page(followers_page))
    r.add_post(f"{ROOT}/followers/answer", _form(follower_answer, "followers"))
    r.add_get(f"{ROOT}/overrides", _page(overrides_page))
    r.add_post(f"{ROOT}/overrides", _form(override_add, "overrides"))
    r.add_post(f"{ROOT}/overrides/{{id}}/remove", _form(override_remove, "overrides"))
    r.add_get(f"{ROOT}/audit", _page(audit_page))
    r.add_get(f"{ROOT}/audit.csv", _page(audit_csv))
    r.add_static(f"{ROOT}/static", _HERE / "static", name="admin_static", append_version=True)
    app.on_response_prepare.append(_security_headers)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == ROOT or request.path.startswith(f"{ROOT}/"):
        for k, v in _HEADERS.items():
            response.headers.setdefault(k, v)
        if request.path.startswith(f"{ROOT}/static/"):
            response.headers["Cache-Control"] = "public, max-age=86400"


async def _to_root(_: web.Request) -> web.Response:
    return _redirect(f"{ROOT}/")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def render(request: web.Request, template: str, *, status: int = 200,
           admin: Admin | None = None, **context: Any) -> web.Response:
    """A page from ``templates/``; the flash message for this session is shown once."""
    flash = None
    if admin is not None and admin.secret is not None:
        flash = request.get(FLASH)
    html = _env.get_template(template).render(
        admin=admin, csrf=admin.session.csrf_token if admin and admin.session else "",
        csrf_field=CSRF_FIELD, flash=flash, path=request.path,
        static=lambda name: str(request.app.router["admin_static"].url_for(filename=name)),
        **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _page(fn: Callable[[web.Request, Admin], Awaitable[web.StreamResponse]], *,
          reviewer: bool = False) -> Handler:
    """A GET page for a logged-in browser (a full admin's unless ``reviewer``); anyone
    else goes to the login page, a moderator on an admin's page gets 403."""
    async def handler(request: web.Request) -> web.StreamResponse:
        admin = await admin_from_request(request)
        if admin is None or admin.session is None:
            nxt = request.path_qs if request.path.startswith(f"{ROOT}/") else f"{ROOT}/"
            raise web.HTTPSeeOther(f"{ROOT}/login?{urlencode({'next': nxt})}")
        if not reviewer:
            await require_admin(request)
        if admin.secret is not None:
            request[FLASH] = await users(request).pop_flash(admin.secret)
        return await fn(request, admin)
    return handler


def _form(fn: Callable[[web.Request, Admin, Any], Awaitable[str]], back: str, *,
          reviewer: bool = False) -> Handler:
    """A form POST (a full admin's unless ``reviewer``): session, role and CSRF token
    checked first, then the action; what it did (or why it could not) is shown once on
    the page it returns to."""
    async def handler(request: web.Request) -> web.StreamResponse:
        # 401 without a session, 403 on a bad token or for a moderator on an admin's form.
        admin = await (require_reviewer if reviewer else require_admin)(request)
        if admin.session is None or admin.secret is None:
            raise RequestError(403, "the admin pages need a browser session; scripts use "
                                    "/api/v1/admin/")
        form = await request.post()
        try:
            message = await fn(request, admin, form)
            level = "ok"
        except RequestError as exc:
            message, level = exc.message, "error"
        await users(request).set_flash(admin.secret, level, message)
        return _redirect(f"{ROOT}/{back}")
    return handler


# -- login --------------------------------------------------------------------------------

def _safe_next(value: str | None) -> str:
    """Only this node's admin pages: a login must never redirect elsewhere."""
    if value and value.startswith(f"{ROOT}/") and "//" not in value and "\\" not in value:
        return value
    return f"{ROOT}/"


async def login_page(request: web.Request, *, error: str | None = None, status: int = 200,
                     next_url: str | None = None) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", status=status, error=error, login_csrf=token,
                      next=_safe_next(next_url or request.query.get("next")))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path=f"{ROOT}/login", httponly=True,
                        samesite="Strict", secure=secure_cookies(request), max_age=3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    given = str(form.get(CSRF_FIELD, ""))
    if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise RequestError(403, "missing or wrong CSRF token: reload the login page and try again")
    name = str(form.get("name", ""))[:100]
    password = str(form.get("password", ""))[:1024]
    throttle = request.app[ADMIN_STATE].throttle
    remote = request.remote or "?"
    metrics = request.app[METRICS]
    if throttle.shared is None:
        throttle.shared = LoginFailures(request.app[STORE].engine)
    await throttle.refresh(remote, name)
    if throttle.delay_s(remote, name) > 0:
        metrics.admin_logins_delayed.inc()
    try:
        # Wrong passwords make later attempts wait (up to 30 s), never lock the name.
        async with throttle.attempt(remote, name):
            ok = bool(name) and await users(request).check(name, password)
    except LoginBusy as exc:
        return await login_page(request, error=f"{exc}.", status=429,
                                next_url=str(form.get("next", "")))
    if not ok:
        await throttle.record_failure(remote, name)
        metrics.admin_login_failures.inc()
        await request.app[STORE].write_audit([AuditEntry(
            actor=f"admin-ui:{name}", action="login_failed", reason=f"from {remote}")])
        return await login_page(request, error="Wrong name or password.", status=401,
                                next_url=str(form.get("next", "")))
    await throttle.record_success(remote, name)
    secret, _ = await users(request).start_session(name)
    await request.app[STORE].write_audit([AuditEntry(
        actor=f"admin-ui:{name}", action="login", reason=f"from {remote}")])
    response = _redirect(_safe_next(str(form.get("next", ""))))
    set_session_cookie(request, response, secret)
    response.del_cookie(LOGIN_CSRF_COOKIE, path=f"{ROOT}/login")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    admin = await require_reviewer(request)
    if admin.secret is not None:
        await users(request).end_session(admin.secret)
    response = _redirect(f"{ROOT}/login")
    clear_session_cookie(response)
    return response


# -- dashboard ----------------------------------------------------------------------------

def hour_bars(per_hour: list[tuple[datetime, dict[str, int]]], height: int = 80
              ) -> list[dict[str, Any]]:
    """Stacked bar geometry (accepted below, rejected above) for the checks-per-hour chart."""
    peak = max((sum(c.values()) for _, c in per_hour), default=0) or 1
    bars = []
    for i, (hour, counts) in enumerate(per_hour):
        acc, rej = counts.get("accept", 0), counts.get("reject", 0)
        other = sum(counts.values()) - acc - rej
        h_acc = round(height * acc / peak)
        h_rej = round(height * rej / peak)
        h_other = round(height * other / peak)
        bars.append({"x": i * 12, "hour": hour.strftime("%H:00"), "accept": acc, "reject": rej,
                     "other": other, "h_acc": h_acc, "h_rej": h_rej, "h_other": h_other,
                     "y_acc": height - h_acc, "y_rej": height - h_acc - h_rej,
                     "y_other": height - h_acc - h_rej - h_other})
    return bars


async def dashboard(request: web.Request, admin: Admin) -> web.Response:
    svc = request.app[SERVICES]
    act = await admin_queries.activity(svc.store.engine, 24)
    shares = sorted(((admin_queries.SOURCE_KINDS.get(k, k), n, n / act.total)
                     for k, n in act.by_source.items()), key=lambda x: -x[1]) if act.total else []
    return render(request, "dashboard.html", admin=admin, activity=act, bars=hour_bars(act.per_hour),
                  shares=shares, queue_depth=await svc.store.queue_depth(),
                  review_open=await svc.review.open_count(),
                  workers=await JobStore(svc.store).list_workers(),
                  peers=await request.app[FEDERATION].peers.all(), now=utcnow(),
                  login_alert=request.app[ADMIN_STATE].throttle.alert())


# -- review -------------------------------------------------------------------------------

async def review_page(request: web.Request, admin: Admin) -> web.Response:
    kind = request.query.get("kind") or None
    if kind not in (None, *REVIEW_KINDS):
        kind = None
    review = request.app[SERVICES].review
    assert admin.session is not None
    items = await review.items(kind, limit=200)
    withheld = await review.never_shown_of([it.sha256 for it in items])
    lemmy_url = request.app[CONFIG].review.lemmy_url
    cards = []
    for item in items:
        never_shown = item.sha256 in withheld
        hidden = never_shown and item.sha256 not in admin.session.revealed
        cards.append({
            "item": item,
            "withheld": hidden,
            "opted_in": never_shown and item.sha256 in admin.session.revealed,
            "has_copy": item.kind != "unreadable" and await review.has_copy(item.sha256),
            "lemmy": admin_api.lemmy_links(lemmy_url, item, never_shown),
        })
    return render(request, "review.html", admin=admin, cards=cards, kind=kind,
                  kinds=REVIEW_KINDS, bad_labels=admin_api.BAD_LABELS)


async def review_act(request: web.Request, admin: Admin, form: Any) -> str:
    sha = admin_api.sha_param(request.match_info["sha256"])
    action = str(form.get("action", ""))
    result = await admin_api.review_action(
        request, admin.actor, sha, action, str(form.get("label", "")),
        admin_api.note_param(str(form.get("note", ""))))
    done = {"confirm": f"confirmed {result.get('label')} and attested",
            "mark_ok": "marked ok: allowed, and our verdicts withdrawn",
            "quarantine": f"blocked and quarantined to {result.get('quarantined_to')}",
            "dismiss": "dismissed; the upload is still refused"}
    if action == "mark_ok" and result.get("dismissed"):
        return (f"{sha[:12]}…: dismissed, not allowed: no decoder can read these bytes, so "
                "they are still refused")
    return f"{sha[:12]}…: {done.get(action, action)}"


async def review_reveal(request: web.Request, admin: Admin, form: Any) -> str:
    """The explicit opt-in to see one image labelled csam_suspect; audited."""
    sha = admin_api.sha_param(request.match_info["sha256"])
    if await request.app[SERVICES].review.get(sha) is None:
        raise RequestError(404, "no such review item")
    assert admin.secret is not None
    await users(request).reveal(admin.secret, sha)
    await request.app[STORE].write_audit([AuditEntry(
        actor=admin.actor, action="review_reveal", sha256=sha,
        reason="chose to see an image labelled csam_suspect")])
    return f"{sha[:12]}…: you chose to see this image; it is still blurred until you reveal it"


async def review_image(request: web.Request, admin: Admin, clear: bool) -> web.Response:
    """A still JPEG of a queued image: obscured, or clear for the one the admin revealed."""
    sha = admin_api.sha_param(request.match_info["sha256"])
    review = request.app[SERVICES].review
    item = await review.get(sha)
    if item is None or item.resolved_at is not None:
        raise RequestError(404, "no open review item for this image")
    assert admin.session is not None
    if await review.never_shown(sha) and sha not in admin.session.revealed:
        raise RequestError(403, "this image is labelled csam_suspect and is not shown unless "
                                "you choose to see it on the review page")
    data = await review.copy(sha)
    if data is None:
        raise RequestError(404, "no copy of this image was kept")
    try:
        jpeg = await request.app[SERVICES].pool.preview(
            data, side=CLEAR_SIDE if clear else PREVIEW_SIDE, obscured=not clear)
    except UnreadableImage as exc:
        raise RequestError(422, f"no preview: {exc.reason}") from None
    if clear:
        await request.app[STORE].write_audit([AuditEntry(
            actor=admin.actor, action="review_view", sha256=sha)])
    return web.Response(body=jpeg, content_type="image/jpeg")


# -- peers and followers ------------------------------------------------------------------

async def peers_page(request: web.Request, admin: Admin) -> web.Response:
    return render(request, "peers.html", admin=admin,
                  peers=await request.app[FEDERATION].peers.all(), levels=TRUST_LEVELS)


async def peer_follow(request: web.Request, admin: Admin, form: Any) -> str:
    target = str(form.get("target", "")).strip()
    if not target or len(target) > 2048:
        raise RequestError(400, "give the peer's actor URL or @name@host")
    actor_url = await admin_api.follow(request, admin.actor, target, str(form.get("trust", "")),
                                       form.get("perceptual_ok") == "on")
    return f"following {actor_url}; waiting for them to accept"


async def peer_trust(request: web.Request, admin: Admin, form: Any) -> str:
    peer = str(form.get("actor", ""))
    level = str(form.get("trust", ""))
    await admin_api.change_trust(request, admin.actor, peer, level,
                                 form.get("perceptual_ok") == "on")
    return f"{peer}: trust {level}"


async def peer_remove(request: web.Request, admin: Admin, form: Any) -> str:
    peer = str(form.get("actor", ""))
    if await manage.unfollow(federated(request.app), peer, actor=admin.actor) is None:
        raise RequestError(404, f"{peer} is not a peer")
    return f"unfollowed {peer}; its attestations no longer count"


async def followers_page(request: web.Request, admin: Admin) -> web.Response:
    rows, next_after = await admin_api.followers_slice(request, admin_api.FOLLOWERS_PAGE)
    query = {k: v for k, v in request.query.items() if k in ("limit", "state")}
    newer = f"{ROOT}/followers?{urlencode(query, doseq=False)}" if request.query.get(
        "after") else None
    older = (f"{ROOT}/followers?{urlencode({**query, 'after': next_after})}"
             if next_after else None)
    return render(request, "followers.html", admin=admin, followers=rows, next_page=older,
                  first_page=newer, state=request.query.get("state", ""))


async def follower_answer(request: web.Request, admin: Admin, form: Any) -> str:
    follower = str(form.get("actor", ""))
    accept = form.get("answer") == "approve"
    await admin_api.answer(request, admin.actor, follower, accept)
    return f"{follower}: {'accepted' if accept else 'rejected'}"


# -- overrides and audit ------------------------------------------------------------------

async def overrides_page(request: web.Request, admin: Admin) -> web.Response:
    return render(request, "overrides.html", admin=admin,
                  overrides=await request.app[STORE].list_overrides())


async def override_add(request: web.Request, admin: Admin, form: Any) -> str:
    action = str(form.get("action", ""))
    if action not in ("allow", "block"):
        raise RequestError(400, "choose allow or block")
    sha = admin_api.sha_param(str(form.get("sha256", "")))
    note = admin_api.note_param(str(form.get("note", "")))
    store = request.app[STORE]
    ov, frames = await overrides.set_override(store, action, sha, await store.get_hashes(sha),
                                              note, admin.actor, "admin page")
    extra = f" and {frames} perceptual hash set(s)" if frames else ""
    return f"override {ov.id}: {action} {sha[:12]}…{extra}"


async def override_remove(request: web.Request, admin: Admin, form: Any) -> str:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise RequestError(400, "not an override id")
    removed = await overrides.remove_override(request.app[STORE], admin.actor,
                                              override_id=int(raw))
    if removed is None:
        raise RequestError(404, f"no override {raw}")
    return f"removed override {raw} ({removed.action} {removed.sha256[:12]}…)"


async def audit_page(request: web.Request, admin: Admin) -> web.Response:
    q = request.query.get("q", "")[:admin_queries.AUDIT_QUERY_MAX_CHARS]
    before = admin_api.int_param(request, "before", 0, 0, 2**62)
    limit = 100
    entries = await admin_queries.audit_entries(request.app[STORE].engine, q=q, limit=limit,
                                                before=before)
    older = (f"{ROOT}/audit?{urlencode({'q': q, 'before': entries[-1]['id']})}"
             if len(entries) == limit else None)
    return render(request, "audit.html", admin=admin, entries=entries, q=q, older=older,
                  csv_url=f"{ROOT}/audit.csv?q={quote(q)}")


async def audit_csv(request: web.Request, admin: Admin) -> web.Response:
    q = request.query.get("q", "")[:admin_queries.AUDIT_QUERY_MAX_CHARS]
    return admin_api.audit_csv(await admin_queries.audit_entries(
        request.app[STORE].engine, q=q, limit=admin_api.AUDIT_MAX_ROWS))

