"""Which run is deployed: the one place that reads and writes it.

The truth is the run row's ``is_active_model`` flag: a partial unique index lets at
most one run hold it, and it goes away with the row. ``set_deployed`` also mirrors the
deployed run's id into the ``active_model_id`` setting in the same transaction (the
settings table is what operators read with one query); no code reads that mirror.
The registry (deploy, rollback), the model in use in each process, the pipeline's
"model in use" comparison and the API all ask ``deployed_run``.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.models import FineTuningRun
from shared.settings_store import set_setting


def deployed_run(session: Session) -> FineTuningRun | None:
    """The deployed run, or None when the base model is in use."""
    return session.scalar(select(FineTuningRun).where(FineTuningRun.is_active_model.is_(True)))


def set_deployed(session: Session, run: FineTuningRun | None) -> None:
    """Make ``run`` the deployed one (None: the base model). The caller commits."""
    # Clear first and flush: the partial unique index allows one active run at any moment.
    session.execute(
        update(FineTuningRun)
        .where(FineTuningRun.is_active_model.is_(True))
        .values(is_active_model=False)
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    if run is not None:
        run.is_active_model = True
    set_setting(session, "active_model_id", None if run is None else run.id)
    session.flush()
