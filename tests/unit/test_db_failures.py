"""Which failed writes are the record's fault (skip it) and which the database's (retry)."""

from __future__ import annotations

import errno

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from attestd.db.failures import describe_failure, is_data_fault


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("exc", "data"), [
    (IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed")), True),
    (DBAPIError("INSERT", {}, _PgError("22021")), True),  # NUL in text
    (DBAPIError("INSERT", {}, _PgError("22001")), True),  # value too long
    (UnicodeEncodeError(
        "utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
    (RecursionError("maximum recursion depth exceeded while encoding a JSON object"), True),
    (OperationalError("INSERT", {}, Exception("database or disk is full")), False),
    (OperationalError("INSERT", {}, Exception("database is locked")), False),
    (DBAPIError("INSERT", {}, _PgError("53100")), False),  # disk full
    (DBAPIError("INSERT", {}, _PgError("08006")), False),  # connection lost
    (ConnectionResetError(), False),
])
def test_data_faults_and_database_faults(exc: BaseException, data: bool) -> None:
    assert is_data_fault(exc) is data


def test_a_full_disk_is_named_with_what_to_do() -> None:
    for exc in (OSError(errno.ENOSPC, "No space left on device", "/var/lib/attestd/keys"),
                OperationalError("INSERT", {}, Exception("database or disk is full")),
                DBAPIError("INSERT", {}, _PgError("53100"))):
        line = describe_failure(exc)
        assert "disk is full" in line and "free space" in line and "\n" not in line
