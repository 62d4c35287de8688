"""Database engines and sessions. Nothing connects at import: callers build what they need."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_RETRY_DELAY = 0.25  # seconds; doubles up to MAX_RETRY_DELAY
MAX_RETRY_DELAY = 5.0
CONNECT_TIMEOUT_SECONDS = 10  # a database that does not answer is an outage, not a hang
# SQLSTATEs of a transaction PostgreSQL ended so that another could finish (a deadlock, a
# serialization failure): the database is up, and the same work repeated succeeds once
# the other transaction is done. Retried like an outage, and named for what it is.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


class DatabaseOutage(Exception):
    """The database stayed unreachable for longer than the caller would wait."""


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached (a restart, a failover, a
    dropped connection), as opposed to a refused statement, which retrying cannot fix."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.OperationalError | exc.InterfaceError | exc.DisconnectionError)


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL ending this transaction for another's sake (a
    deadlock or a serialization failure): retryable, but not an outage."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) in CONFLICT_SQLSTATES


def retry_through_outage(
    transaction: Callable[[], T],
    *,
    patience: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``transaction`` (a whole unit of work in its own session, safe to repeat) and
    repeat it with backoff while the database is unreachable, for up to ``patience``
    seconds; then raise DatabaseOutage saying what could not be written. A transaction
    PostgreSQL ended for another's sake (``is_conflict``: a deadlock) is repeated the
    same way, and logged and reported as a conflict, not as the database being down."""
    started = clock()
    delay = FIRST_RETRY_DELAY
    while True:
        try:
            return transaction()
        except Exception as error:
            if not is_outage(error):
                raise
            conflict = is_conflict(error)
            waited = clock() - started
            if waited >= patience:
                state = (
                    "kept ending this work in conflicts with other transactions"
                    if conflict
                    else "was unreachable"
                )
                raise DatabaseOutage(
                    f"the database {state} for more than {patience:g} s ({what})"
                ) from error
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            logger.warning(
                "database %s what=%s waited=%.1fs retry_in=%.2fs error=%s",
                "conflict" if conflict else "unreachable", what, waited, delay, reason[:200],
            )  # fmt: skip
            sleep(min(delay, max(0.0, patience - waited)))
            delay = min(delay * 2, MAX_RETRY_DELAY)


def make_engine(database_url: str) -> Engine:
    """An engine for the URL; SQLite gets foreign keys and a busy timeout like PostgreSQL has."""
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    # pre-ping: a connection the server dropped (restart, failover) is replaced, not used.
    return create_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success, rolls back on error and always closes."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def database_is_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return True
    except Exception:
        return False
