"""A stand-in fediverse server on loopback: serves one actor, signs requests as it, and
records what reaches its inbox (verifying our signatures with the library under test)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from activitypub import parse_signature_header, public_key_pem, sign_request, verify_request
from activitypub.fetch import Fetcher, Keyring, make_session
from tests.conftest import free_port


@dataclass
class Peer:
    """One actor at http://127.0.0.1:PORT/users/NAME."""

    name: str = "alice"
    port: int = field(default_factory=free_port)
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    received: list[dict[str, Any]] = field(default_factory=list)
    inbox_status: int = 202
    verify_signatures: bool = True
    _runner: web.AppRunner | None = None
    _session: Any = None
    _keyring: Keyring | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def actor_id(self) -> str:
        return f"{self.base}/users/{self.name}"

    @property
    def key_id(self) -> str:
        return f"{self.actor_id}#main-key"

    @property
    def inbox(self) -> str:
        return f"{self.actor_id}/inbox"

    def actor_document(self) -> dict[str, Any]:
        return {"@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
                "id": self.actor_id, "type": "Person", "preferredUsername": self.name,
                "inbox": self.inbox, "outbox": f"{self.actor_id}/outbox",
                "publicKey": {"id": self.key_id, "owner": self.actor_id,
                              "publicKeyPem": public_key_pem(self.key)}}

    async def start(self) -> Peer:
        app = web.Application()
        app.router.add_get(f"/users/{self.name}", self._actor)
        app.router.add_post(f"/users/{self.name}/inbox", self._inbox)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = make_session(allow_private=True)
        self._keyring = Keyring(Fetcher(self._session, key_id=self.key_id, private_key=self.key,
                                        allow_private=True))
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _actor(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.actor_document()),
                            content_type="application/activity+json")

    async def _inbox(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.verify_signatures:
            assert self._keyring is not None
            params = parse_signature_header(request.headers["Signature"])
            owner, key = await self._keyring.public_key(params.key_id)
            verify_request(method="POST", path=request.path, query=request.query_string,
                           headers=dict(request.headers), body=body, params=params,
                           public_key=key)
        self.received.append(json.loads(body))
        return web.Response(status=self.inbox_status)

    def signed_post(self, url: str, activity: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(activity).encode()
        headers = sign_request(method="POST", url=url, key_id=self.key_id, private_key=self.key,
                               body=body, headers={"Content-Type": "application/activity+json"})
        return body, headers
