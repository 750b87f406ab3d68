"""What a PostgreSQL error means for a batch: wait (unavailable), run again (a conflict with
another processor), or neither (it belongs to a record of the batch)."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from psycopg import errors as pg_errors

# Conflicts another processor can cause; the batch is rolled back and run again from the start.
CONFLICTS = (pg_errors.UniqueViolation, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
# SQLSTATE classes of a database that is unavailable (connection exception, insufficient
# resources, operator intervention): the caller waits and runs the same batch again, nothing is
# skipped. Any other error belongs to a record of the batch, even an OperationalError such as
# 54000 (a limit exceeded): retrying it would stall the partition for good.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` means PostgreSQL cannot be reached right now (wait and retry)."""
    if isinstance(error, sa.exc.TimeoutError):  # no pooled connection in time
        return True
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    if not isinstance(error, psycopg.Error):
        return False
    if error.sqlstate is None:  # raised by the client itself: no connection, or a closed one
        return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
    return error.sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES


def is_conflict(error: BaseException) -> bool:
    """Whether `error` is a conflict with a concurrent batch (roll back, run the batch again)."""
    return isinstance(error, sa.exc.DBAPIError) and isinstance(error.orig, CONFLICTS)


def describe(error: BaseException) -> str:
    """The error's own type and message (the driver's, under SQLAlchemy's wrapper), unbounded."""
    cause = error.orig if isinstance(error, sa.exc.DBAPIError) else error
    return f"{type(cause).__name__}: {cause}"
