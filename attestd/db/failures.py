"""Telling a record's fault from the database's: which failed writes are worth retrying."""

from __future__ import annotations

import errno

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)

# SQLSTATE classes that name the data: 22 data exception (bad encoding, NUL, too long,
# out of range), 23 integrity constraint violation. Everything else (08 connection,
# 53 disk full or out of memory, 57 shutdown, 40 deadlock, …) is the database's state.
_DATA_SQLSTATE_CLASSES = ("22", "23")


def is_data_fault(exc: BaseException) -> bool:
    """True when writing failed because of what was written (retrying the same record
    fails again), False when the database could not write (down, locked, full)."""
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate:
            return str(sqlstate)[:2] in _DATA_SQLSTATE_CLASSES
        return isinstance(exc, IntegrityError | DataError)
    if isinstance(exc, StatementError):  # raised while binding parameters, before the driver
        return exc.orig is None or is_data_fault(exc.orig)
    # Values no driver can encode (a lone surrogate), JSON no encoder can write.
    return isinstance(exc, ValueError | TypeError | RecursionError | OverflowError)


def describe_failure(exc: BaseException) -> str:
    """One line saying what failed and what to do, for a person at a terminal."""
    orig = getattr(exc, "orig", None)
    first = (str(orig if orig is not None else exc) or type(exc).__name__).splitlines()[0][:300]
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or sqlstate == "53100" \
            or "disk is full" in first or "No space left" in first:
        return (f"the disk is full ({first}): free space where the database and "
                "node.data_dir live, then run the command again")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (f"cannot listen: {first}; another process (pict-rs, or an attestd already "
                "running?) has that port: stop it, or choose another with server.port or "
                "server.public_listen")
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                                  errno.ETIMEDOUT, errno.ENETUNREACH):
        return (f"cannot reach the database ({first}): check that PostgreSQL is running "
                "and that [database] url names its host and port")
    if isinstance(exc, OSError):
        if exc.filename:
            return f"cannot use {exc.filename}: {exc.strerror or first}"
        return first
    if isinstance(exc, OperationalError | InterfaceError):
        return (f"the database failed: {first}; check that it is running and writable "
                "and that [database] url names it")
    return f"the database refused the command: {first}"
