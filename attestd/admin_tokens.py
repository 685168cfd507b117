"""Admin API bearer tokens: created once, shown once, stored only as digests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from attestd.db import schema as t
from attestd.errors import AttestdError
from attestd.jobs.store import token_digest
from attestd.model import utcnow


class TokenExists(AttestdError):
    """An admin token with that name exists already."""


@dataclass(frozen=True, slots=True)
class AdminToken:
    name: str
    created_at: datetime
    last_used_at: datetime | None


class AdminTokens:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, name: str) -> str:
        """A new token for ``name``; the only time the secret is seen."""
        token = "atd_" + secrets.token_urlsafe(32)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(t.admin_tokens).values(
                    name=name, token_sha256=token_digest(token), created_at=utcnow()))
        except IntegrityError:
            raise TokenExists(f"an admin token named {name!r} exists; revoke it first or "
                              "pick another name") from None
        return token

    async def name_for(self, token: str) -> str | None:
        """The token's name, or None. Looked up by digest, so the comparison never
        touches the secret and its timing reveals nothing about it."""
        digest = token_digest(token)
        async with self.engine.begin() as conn:
            name = (await conn.execute(select(t.admin_tokens.c.name).where(
                t.admin_tokens.c.token_sha256 == digest))).scalar()
            if name is not None:
                await conn.execute(update(t.admin_tokens).where(
                    t.admin_tokens.c.token_sha256 == digest).values(last_used_at=utcnow()))
        return None if name is None else str(name)

    async def list(self) -> list[AdminToken]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.admin_tokens).order_by(t.admin_tokens.c.name))).all()
        return [AdminToken(r.name, r.created_at, r.last_used_at) for r in rows]

    async def revoke(self, name: str) -> bool:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(delete(t.admin_tokens).where(
                t.admin_tokens.c.name == name))).rowcount
        return bool(gone)
