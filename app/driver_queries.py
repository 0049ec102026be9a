"""Selects (and single-row inserts) that never change, run straight on the driver.

SQLAlchemy's Core wraps each statement in an execution context, a result and row objects:
on PostgreSQL ~70 µs of CPU per statement on top of the driver's own ~65, more than the
query itself costs. A `DriverQuery` keeps what a read needs of it and leaves the rest: the
statement is compiled by SQLAlchemy once per dialect; each run binds its values, executes
on the DBAPI cursor of a session's connection (so it sees what the session's transaction
sees, a test's too) or of a bare connection (a read's own, when no test has put its session
in place), and passes each value through its column type's own result processor, as
SQLAlchemy would. What stays as SQLAlchemy does it: the engine's cursor events (a statement
counter sees these statements), and the driver's errors raised as SQLAlchemy's, a lost
connection invalidated first (so a database gone is still a 503).
"""

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

Processor = Callable[[Any], Any] | None

# What a read runs on (and a DriverQuery): a session, or a connection (a read's own, or the
# connection of a session in the middle of its work).
Reading = Session | Connection


@dataclass(slots=True)
class _Compiled:
    """The statement as one dialect runs it."""

    sql: str
    positions: tuple[str, ...] | None  # the parameters' order, for a positional paramstyle
    compiled: Any  # SQLAlchemy's Compiled: its construct_params fills in the defaults
    bind_processors: Mapping[str, Processor]
    # The result processors, picked (as SQLAlchemy picks them) by the column types the
    # cursor describes at the first run, and kept, as SQLAlchemy keeps a compiled
    # statement's result metadata: a cursor's description is built anew at every call
    # (~15 µs for eight columns on psycopg).
    result_processors: tuple[Processor, ...] | None = None


class DriverQuery:
    """`statement` run on the driver; rows as tuples of the values of its columns. It is a
    select, or an INSERT … RETURNING given every value it writes (none left to a default
    only SQLAlchemy's execution would compute), each bound: no expanding `IN`, no literal
    rendering."""

    def __init__(self, statement: Select[*tuple[Any, ...]] | ReturningInsert[Any]) -> None:
        self.statement = statement
        # Per dialect: one per engine (an app has one per database; a test suite a few more).
        self._compiled: dict[Dialect, _Compiled] = {}

    def all(self, on: Reading, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self._run(_connection_of(on), values, many=True)

    def first(self, on: Reading, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        rows = self._run(_connection_of(on), values, many=False)
        return rows[0] if rows else None

    def _run(
        self, connection: Connection, values: Mapping[str, Any], *, many: bool
    ) -> list[tuple[Any, ...]]:
        dialect = connection.dialect
        compiled = self._compiled.get(dialect) or self._compile(dialect)
        parameters = self._parameters(compiled, values)
        cursor = None
        try:
            cursor = connection.connection.cursor()
            # As SQLAlchemy fires them (a listener that would rewrite the statement,
            # `retval=True`, is not one this app installs).
            before = connection.dispatch.before_cursor_execute
            if before:
                before(connection, cursor, compiled.sql, parameters, None, False)
            cursor.execute(compiled.sql, parameters)
            after = connection.dispatch.after_cursor_execute
            if after:
                after(connection, cursor, compiled.sql, parameters, None, False)
            raw = cursor.fetchall() if many else cursor.fetchmany(1)
            processors = compiled.result_processors or self._processors_for(
                dialect, compiled, cursor.description
            )
        except dialect.loaded_dbapi.Error as error:
            wrapped = _as_sqlalchemy_error(connection, cursor, compiled.sql, parameters, error)
            raise wrapped from error
        finally:
            if cursor is not None:
                with suppress(dialect.loaded_dbapi.Error):  # its connection may be gone already
                    cursor.close()
        if not any(processors):
            return [tuple(row) for row in raw]
        return [
            tuple(
                value if process is None else process(value)
                for process, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a DriverQuery binds every value: no expanding or literal ones")
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "postfetch", None):
            raise ValueError("a DriverQuery inserts the values it is given, no defaults")
        bind_processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        built = _Compiled(compiled.string, positions, compiled, bind_processors)
        self._compiled[dialect] = built
        return built

    @staticmethod
    def _parameters(compiled: _Compiled, values: Mapping[str, Any]) -> Any:
        given = compiled.compiled.construct_params(dict(values))
        for name, process in compiled.bind_processors.items():
            if process is not None and name in given:  # None too: JSON writes it as null
                given[name] = process(given[name])
        if compiled.positions is None:
            return given
        return tuple(given[name] for name in compiled.positions)

    def _processors_for(
        self, dialect: Dialect, compiled: _Compiled, description: Sequence[Sequence[Any]]
    ) -> tuple[Processor, ...]:
        compiled.result_processors = processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            for column, described in zip(self.statement.exported_columns, description, strict=True)
        )
        return processors


def _connection_of(reading: Reading) -> Connection:
    return reading if isinstance(reading, Connection) else reading.connection()


def _as_sqlalchemy_error(
    connection: Connection, cursor: Any, sql: str, parameters: Any, error: Any
) -> StatementError:
    """The driver's error as SQLAlchemy raises it; a connection the error says is lost is
    invalidated first, so the pool never hands it out again."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    if lost:
        connection.invalidate(error)
    wrapped: StatementError = DBAPIError.instance(
        sql,
        parameters,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return wrapped
