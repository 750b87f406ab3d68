"""Running statements on a unit of work's connection: SQLAlchemy's, or psycopg's beneath it.

The hot path's statements (processor/storage/statements.py) go to psycopg directly, with
binary parameters; their errors are raised as SQLAlchemy's, so that callers decide on
`sa.exc.DBAPIError` and its `.orig` whichever way a statement went.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa


def pairs(keys: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Two parallel arrays of the pairs' first and second items (one parameter each)."""
    firsts: list[str] = []
    seconds: list[str] = []
    for first, second in keys:
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def keys_in(table: sa.Table, first: str, second: str, keys: Sequence[tuple[str, str]], name: str) -> sa.ColumnElement[bool]:
    """(first, second) IN (the given pairs), bound as two arrays: one statement for any count."""
    firsts, seconds = pairs(keys)
    unnest = sa.func.unnest(
        sa.bindparam(f"{name}_a", firsts, type_=sa.ARRAY(sa.Text)),
        sa.bindparam(f"{name}_b", seconds, type_=sa.ARRAY(sa.Text)),
    ).table_valued("a", "b").render_derived(name=f"{name}_pairs")
    return sa.tuple_(table.c[first], table.c[second]).in_(sa.select(unnest.c.a, unnest.c.b))


def driver_cursor(connection: sa.Connection) -> Any:
    """A psycopg cursor on the connection's own transaction."""
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


@contextmanager
def as_sqlalchemy_errors(statement: str) -> Iterator[None]:
    """psycopg errors of a statement run on the driver connection, raised as SQLAlchemy's."""
    try:
        yield
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error) from error


def fetch(connection: sa.Connection, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run one statement on the driver connection (binary parameters) and return its rows."""
    cursor = driver_cursor(connection)
    with as_sqlalchemy_errors(statement):
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []
