"""One database session per request, closed at teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from shared.db import make_engine, make_session_factory


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["SORTLOOP"].database_url)
    app.extensions["sortloop_engine"] = engine
    app.extensions["sortloop_sessions"] = make_session_factory(engine)
    app.teardown_appcontext(_close_session)


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["sortloop_sessions"]()
    return g.db_session


def _close_session(exception: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        if exception is not None:
            session.rollback()
        session.close()
