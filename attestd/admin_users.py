"""Admin logins for the browser pages: scrypt password hashes and server-side sessions.

A session is a random secret in an HttpOnly cookie; the database keeps only its digest,
so a copy of the database logs nobody in. Each session carries its own CSRF token and
the csam_suspect images its admin chose, one at a time, to see.

Each login has a role: ``admin`` may do everything; ``moderator`` may review (see, confirm,
mark ok, quarantine) but change nothing else (trust, peers, overrides, tokens, workers,
followers, logins).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from attestd.db import schema as t
from attestd.errors import AttestdError
from attestd.jobs.store import token_digest
from attestd.model import as_utc, utcnow

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
SESSION_TTL = timedelta(hours=12)
# Cost parameters for hashlib.scrypt: about 50 ms and 16 MiB per attempt.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

Role = Literal["admin", "moderator"]
ROLES: tuple[Role, ...] = get_args(Role)


class PasswordRejected(AttestdError):
    """The password does not meet the rules (too short, too long)."""


@dataclass(frozen=True, slots=True)
class AdminSession:
    name: str
    csrf_token: str
    expires_at: datetime
    revealed: frozenset[str]
    role: Role = "admin"


def hash_password(password: str) -> str:
    """A self-describing scrypt hash of ``password`` with a fresh salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; compared in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=64 * 1024 * 1024, dklen=32)


# Checked against when the name is unknown, so a wrong name costs as long as a wrong
# password and the timing does not tell which names exist.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class AdminUsers:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def set_password(self, name: str, password: str, role: Role | None = None) -> bool:
        """Create ``name`` or change its password (and its role, when given; a new login
        is an admin unless told otherwise); every session of it ends. True if new."""
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD_CHARS:
            raise PasswordRejected(f"the password must be at least {MIN_PASSWORD_CHARS} characters")
        if len(password) > MAX_PASSWORD_CHARS:
            raise PasswordRejected(f"the password must be at most {MAX_PASSWORD_CHARS} characters")
        hashed = hash_password(password)
        now = utcnow()
        async with self.engine.begin() as conn:
            changes: dict[str, object] = {"password_hash": hashed, "updated_at": now}
            if role is not None:
                changes["role"] = role
            res = await conn.execute(update(t.admin_users).where(t.admin_users.c.name == name)
                                     .values(**changes))
            new = not res.rowcount
            if new:
                await conn.execute(insert(t.admin_users).values(
                    name=name, password_hash=hashed, created_at=now, updated_at=now,
                    role=role or "admin"))
            await conn.execute(delete(t.admin_sessions).where(t.admin_sessions.c.name == name))
        return new

    async def remove(self, name: str) -> bool:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.admin_sessions).where(t.admin_sessions.c.name == name))
            gone = (await conn.execute(delete(t.admin_users).where(
                t.admin_users.c.name == name))).rowcount
        return bool(gone)

    async def names(self) -> list[str]:
        return [name for name, _ in await self.roles()]

    async def roles(self) -> list[tuple[str, Role]]:
        """Every login and its role, by name."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.admin_users.c.name, t.admin_users.c.role)
                                       .order_by(t.admin_users.c.name))).all()
        return [(str(name), _role(role)) for name, role in rows]

    async def check(self, name: str, password: str) -> bool:
        """True if ``name`` exists and ``password`` is its password."""
        async with self.engine.connect() as conn:
            stored = (await conn.execute(select(t.admin_users.c.password_hash).where(
                t.admin_users.c.name == name))).scalar()
        ok = verify_password(password, stored or _DUMMY_HASH)
        return ok and stored is not None

    async def start_session(self, name: str) -> tuple[str, AdminSession]:
        """A new session for ``name``: the cookie secret (shown once) and the session."""
        secret = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            role = (await conn.execute(select(t.admin_users.c.role).where(
                t.admin_users.c.name == name))).scalar()
            session = AdminSession(name, secrets.token_urlsafe(32), utcnow() + SESSION_TTL,
                                   frozenset(), _role(role))
            # Expired sessions are swept here rather than by a timer.
            await conn.execute(delete(t.admin_sessions).where(
                t.admin_sessions.c.expires_at < utcnow()))
            await conn.execute(insert(t.admin_sessions).values(
                token_sha256=token_digest(secret), name=name, csrf_token=session.csrf_token,
                created_at=utcnow(), expires_at=session.expires_at, revealed=[]))
        return secret, session

    async def session(self, secret: str) -> AdminSession | None:
        """The live session for a cookie secret, or None (unknown or expired). The role is
        the login's current one, so a change applies to sessions already open."""
        s, u = t.admin_sessions, t.admin_users
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(s, u.c.role).join(u, u.c.name == s.c.name).where(
                s.c.token_sha256 == token_digest(secret)))).first()
        if row is None:
            return None
        expires = as_utc(row.expires_at)
        if expires is None or expires <= utcnow():
            return None
        return AdminSession(row.name, row.csrf_token, expires, frozenset(row.revealed or ()),
                            _role(row.role))

    async def reveal(self, secret: str, sha256: str) -> None:
        """Record that this session's admin opted in to see ``sha256``."""
        digest = token_digest(secret)
        async with self.engine.begin() as conn:
            current = (await conn.execute(select(t.admin_sessions.c.revealed).where(
                t.admin_sessions.c.token_sha256 == digest))).scalar()
            revealed = sorted({*(current or ()), sha256})[-200:]
            await conn.execute(update(t.admin_sessions).where(
                t.admin_sessions.c.token_sha256 == digest).values(revealed=revealed))

    async def set_flash(self, secret: str, level: str, message: str) -> None:
        """The message this session's next page shows once (any node process)."""
        async with self.engine.begin() as conn:
            await conn.execute(update(t.admin_sessions).where(
                t.admin_sessions.c.token_sha256 == token_digest(secret))
                .values(flash=[level, message[:2000]]))

    async def pop_flash(self, secret: str) -> tuple[str, str] | None:
        """This session's waiting message, taken so it is shown once."""
        digest = token_digest(secret)
        s = t.admin_sessions
        async with self.engine.begin() as conn:
            flash = (await conn.execute(select(s.c.flash).where(
                s.c.token_sha256 == digest))).scalar()
            if not flash:
                return None
            await conn.execute(update(s).where(s.c.token_sha256 == digest).values(flash=None))
        return str(flash[0]), str(flash[1])

    async def end_session(self, secret: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.admin_sessions).where(
                t.admin_sessions.c.token_sha256 == token_digest(secret)))


def _role(stored: object) -> Role:
    """A stored role; anything unknown counts as the least one (fail closed)."""
    return "admin" if stored == "admin" else "moderator"
