"""A stand-in for the parts of Lemmy 0.19's HTTP API the follow-up uses (Lemmy itself
cannot run here), read from Lemmy 0.19.20's source:

- routes (src/api_routes_http.rs): ``POST /api/v3/user/login``, ``GET
  /api/v3/admin/list_all_media``, ``GET /api/v3/search``, ``POST /api/v3/post/report``,
  ``/comment/report``, ``/post/remove``, ``/comment/remove``, ``/user/ban``,
  ``/admin/purge/{post,comment,person}``;
- auth (crates/api/src/lib.rs read_auth_token, src/session_middleware.rs):
  ``Authorization: Bearer <jwt>`` or the ``jwt`` cookie; a bad token is ignored, and a
  route needing a user then answers 401 ``{"error": "incorrect_login"}``;
- errors (crates/utils/src/error.rs): ``{"error": "snake_case"}`` (``"message"`` added
  for types that carry one), status 400, 401 for incorrect_login, 404 when the database
  found no row (a ban of a person who is gone: ``couldnt_update_user``); a body or query
  that does not deserialize is actix-web's plain-text 400;
- bodies (crates/api_common/src): Login {username_or_email, password, totp_2fa_token?}
  -> {jwt, registration_created, verify_email_sent}; ListMedia {page, limit <= 50} ->
  {images: [{local_image: {local_user_id, pictrs_alias, pictrs_delete_token, published},
  person}]} newest first, admins only (``not_an_admin``); Search {q, type_: Url | Posts
  | Comments, listing_type, limit} -> {type_, comments, posts, communities, users}: Url
  matches post.url exactly, Posts name/body and Comments content by ILIKE %q% (removed
  comments left out); RemovePost {post_id, removed, reason} -> {post_view}; PurgePost
  {post_id, reason} -> {success: true} or 400 couldnt_find_post; BanPerson {person_id,
  ban, remove_data, reason, expires} -> {person_view, banned}; PurgePerson {person_id,
  reason} -> {success: true}; CreatePostReport {post_id, reason} -> {post_report_view}.

Faults can be injected: the next N requests answer 503 (a proxy in front of a Lemmy that
is restarting: text, not JSON). Every request is recorded (method, path, body).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

LIMIT_MAX = 50
PAGE_MAX = 100
BODY: web.RequestKey[Any] = web.RequestKey("body", object)
USER: web.RequestKey[Any] = web.RequestKey("user", object)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _err(error: str, status: int = 400, message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["message"] = message
    return web.json_response(body, status=status)


@dataclass
class LemmyStandIn:
    base: str = "https://lemmy.test"
    persons: dict[int, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> account
    images: list[dict[str, Any]] = field(default_factory=list)
    posts: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # jwt -> user name
    fail_next: int = 0
    fail_on: dict[str, int] = field(default_factory=dict)  # path -> next N requests fail
    _ids: int = 100

    # -- building the instance -----------------------------------------------------------

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    def person(self, name: str, *, password: str | None = None, admin: bool = False,
               local: bool = True) -> int:
        pid = self._id()
        self.persons[pid] = {
            "id": pid, "name": name, "display_name": None, "avatar": None, "banned": False,
            "published": _now(), "updated": None, "actor_id": f"{self.base}/u/{name}",
            "bio": None, "local": local, "banner": None, "deleted": False,
            "matrix_user_id": None, "bot_account": False, "ban_expires": None,
            "instance_id": 1}
        if local:
            self.users[name] = {"person_id": pid, "local_user_id": pid + 10_000,
                                "password": password, "admin": admin}
        return pid

    def upload(self, person_id: int, alias: str) -> None:
        user = next(u for u in self.users.values() if u["person_id"] == person_id)
        self.images.insert(0, {"local_user_id": user["local_user_id"], "pictrs_alias": alias,
                               "pictrs_delete_token": secrets.token_hex(8),
                               "published": _now()})

    def image_url(self, alias: str) -> str:
        return f"{self.base}/pictrs/image/{alias}"

    def post(self, creator: int, *, url: str | None = None, body: str | None = None,
             name: str = "a post") -> int:
        pid = self._id()
        self.posts[pid] = {"id": pid, "name": name, "url": url, "body": body,
                           "creator_id": creator, "community_id": 1, "removed": False,
                           "locked": False, "published": _now(), "updated": None,
                           "deleted": False, "nsfw": False, "thumbnail_url": None,
                           "ap_id": f"{self.base}/post/{pid}", "local": True,
                           "language_id": 0, "featured_community": False,
                           "featured_local": False}
        return pid

    def comment(self, creator: int, post_id: int, content: str) -> int:
        cid = self._id()
        self.comments[cid] = {"id": cid, "creator_id": creator, "post_id": post_id,
                              "content": content, "removed": False, "published": _now(),
                              "updated": None, "deleted": False,
                              "ap_id": f"{self.base}/comment/{cid}", "local": True,
                              "path": f"0.{cid}", "distinguished": False, "language_id": 0}
        return cid

    def mutations(self) -> list[tuple[str, str, Any]]:
        """The requests that would change Lemmy (everything but login and reads)."""
        return [r for r in self.requests if r[0] == "POST" and r[1] != "/api/v3/user/login"]

    # -- the API -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._session])
        r = app.router
        r.add_post("/api/v3/user/login", self._login)
        r.add_get("/api/v3/admin/list_all_media", self._list_all_media)
        r.add_get("/api/v3/search", self._search)
        r.add_post("/api/v3/post/report", self._report("post"))
        r.add_post("/api/v3/comment/report", self._report("comment"))
        r.add_post("/api/v3/post/remove", self._remove("post"))
        r.add_post("/api/v3/comment/remove", self._remove("comment"))
        r.add_post("/api/v3/admin/purge/post", self._purge("post"))
        r.add_post("/api/v3/admin/purge/comment", self._purge("comment"))
        r.add_post("/api/v3/user/ban", self._ban)
        r.add_post("/api/v3/admin/purge/person", self._purge_person)
        return app

    @web.middleware
    async def _session(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:  # actix-web's own answer, before Lemmy's handler
                return web.Response(status=400, text="Json deserialize error: expected value")
        self.requests.append((request.method, request.path, body))
        if self.fail_next > 0 or self.fail_on.get(request.path, 0) > 0:
            if self.fail_next > 0:
                self.fail_next -= 1
            else:
                self.fail_on[request.path] -= 1
            return web.Response(status=503, text="<html>503 Service Temporarily "
                                                 "Unavailable</html>", content_type="text/html")
        request[BODY] = body
        token = None
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):]
        elif "jwt" in request.cookies:
            token = request.cookies["jwt"]
        # Lemmy ignores a token it does not know: the request goes on without a user.
        request[USER] = self.users.get(self.tokens.get(token or "", ""))
        return await handler(request)  # type: ignore[no-any-return]

    async def _login(self, request: web.Request) -> web.Response:
        b: dict[str, Any] = request[BODY] or {}
        user = self.users.get(str(b.get("username_or_email", "")))
        if user is None or user["password"] is None or user["password"] != b.get("password"):
            return _err("incorrect_login", 401)
        jwt = "eyJ" + secrets.token_urlsafe(24)
        self.tokens[jwt] = str(b["username_or_email"])
        return web.json_response({"jwt": jwt, "registration_created": False,
                                  "verify_email_sent": False})

    def _admin(self, request: web.Request) -> web.Response | None:
        user = request[USER]
        if user is None:
            return _err("incorrect_login", 401)
        if not user["admin"]:
            return _err("not_an_admin")
        return None

    async def _list_all_media(self, request: web.Request) -> web.Response:
        if (refused := self._admin(request)) is not None:
            return refused
        page = int(request.query.get("page", "1"))
        limit = int(request.query.get("limit", "10"))
        if not 1 <= limit <= LIMIT_MAX:
            return _err("unknown", message=f"Fetch limit is > {LIMIT_MAX}")
        if not 1 <= page <= PAGE_MAX:
            return _err("unknown", message=f"Page limit is > {PAGE_MAX}")
        by_local = {u["local_user_id"]: u["person_id"] for u in self.users.values()}
        chosen = self.images[(page - 1) * limit:page * limit]
        return web.json_response({"images": [
            {"local_image": img, "person": self.persons[by_local[img["local_user_id"]]]}
            for img in chosen]})

    def _post_view(self, post: dict[str, Any]) -> dict[str, Any]:
        return {"post": post, "creator": self.persons[post["creator_id"]],
                "community": {"id": 1, "name": "pics", "actor_id": f"{self.base}/c/pics"},
                "image_details": None, "creator_banned_from_community": False,
                "banned_from_community": False, "creator_is_moderator": False,
                "creator_is_admin": False, "counts": {"post_id": post["id"], "comments": 0},
                "subscribed": "NotSubscribed", "saved": False, "read": False, "hidden": False,
                "creator_blocked": False, "my_vote": None, "unread_comments": 0}

    def _comment_view(self, comment: dict[str, Any]) -> dict[str, Any]:
        return {"comment": comment, "creator": self.persons[comment["creator_id"]],
                "post": self.posts[comment["post_id"]],
                "community": {"id": 1, "name": "pics", "actor_id": f"{self.base}/c/pics"},
                "counts": {"comment_id": comment["id"]}, "creator_banned_from_community": False,
                "banned_from_community": False, "creator_is_moderator": False,
                "creator_is_admin": False, "subscribed": "NotSubscribed", "saved": False,
                "creator_blocked": False, "my_vote": None}

    async def _search(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "")
        type_ = request.query.get("type_", "All")
        if type_ not in ("All", "Comments", "Posts", "Communities", "Users", "Url"):
            return web.Response(status=400, text=f"Query deserialize error: unknown "
                                                 f"variant `{type_}`")
        posts: list[dict[str, Any]] = []
        comments: list[dict[str, Any]] = []
        if type_ == "Url":
            posts = [p for p in self.posts.values() if p["url"] == q]
        if type_ in ("Posts", "All"):
            posts = [p for p in self.posts.values()
                     if q.lower() in p["name"].lower() or q.lower() in (p["body"] or "").lower()]
        if type_ in ("Comments", "All"):
            comments = [c for c in self.comments.values() if q.lower() in c["content"].lower()
                        and not (c["removed"] or c["deleted"])]
        return web.json_response({"type_": type_,
                                  "comments": [self._comment_view(c) for c in comments],
                                  "posts": [self._post_view(p) for p in posts],
                                  "communities": [], "users": []})

    def _report(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if request[USER] is None:
                return _err("incorrect_login", 401)
            b: dict[str, Any] = request[BODY] or {}
            table = self.posts if kind == "post" else self.comments
            if b.get(f"{kind}_id") not in table:
                return _err(f"couldnt_find_{kind}")
            if not b.get("reason"):
                return _err("report_reason_required")
            report = {"id": self._id(), f"{kind}_id": b[f"{kind}_id"], "reason": b["reason"],
                      "resolved": False, "published": _now()}
            self.reports.append(report)
            return web.json_response({f"{kind}_report_view": {f"{kind}_report": report}})
        return handler

    def _remove(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if request[USER] is None:
                return _err("incorrect_login", 401)
            b: dict[str, Any] = request[BODY] or {}
            table = self.posts if kind == "post" else self.comments
            item = table.get(b.get(f"{kind}_id", -1))
            if item is None:
                return _err(f"couldnt_find_{kind}")
            item["removed"] = bool(b.get("removed"))
            if kind == "post":
                return web.json_response({"post_view": self._post_view(item)})
            return web.json_response({"comment_view": self._comment_view(item),
                                      "recipient_ids": []})
        return handler

    def _purge(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if (refused := self._admin(request)) is not None:
                return refused
            b: dict[str, Any] = request[BODY] or {}
            table = self.posts if kind == "post" else self.comments
            if table.pop(b.get(f"{kind}_id", -1), None) is None:
                return _err(f"couldnt_find_{kind}")
            if kind == "post":
                for cid in [c for c, v in self.comments.items() if v["post_id"] == b["post_id"]]:
                    del self.comments[cid]
            return web.json_response({"success": True})
        return handler

    async def _ban(self, request: web.Request) -> web.Response:
        if (refused := self._admin(request)) is not None:
            return refused
        b: dict[str, Any] = request[BODY] or {}
        person = self.persons.get(b.get("person_id", -1))
        if person is None:
            return _err("couldnt_update_user", 404)
        person["banned"] = bool(b.get("ban"))
        if b.get("remove_data"):
            for p in self.posts.values():
                if p["creator_id"] == person["id"]:
                    p["removed"] = True
            for c in self.comments.values():
                if c["creator_id"] == person["id"]:
                    c["removed"] = True
        return web.json_response({"person_view": {"person": person, "counts": {},
                                                  "is_admin": False},
                                  "banned": person["banned"]})

    async def _purge_person(self, request: web.Request) -> web.Response:
        if (refused := self._admin(request)) is not None:
            return refused
        b: dict[str, Any] = request[BODY] or {}
        person = self.persons.get(b.get("person_id", -1))
        if person is None:
            return _err("couldnt_find_person")
        person.update(banned=True, deleted=True, bio=None, avatar=None)
        return web.json_response({"success": True})
