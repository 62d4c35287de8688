"""The model registry: which fine-tuned models exist, which one is active, and the audit trail.

Deploying changes only the database (``shared.deployment.deployed``, in one
transaction with a DeploymentEvent recorded by ``shared.deployment.audit``). Every web process notices the change with a
cheap check (``shared.deployment.active_model``) and loads the new model beside the old one before
swapping, so a deploy or rollback needs no restart. The checks here are the cheap
structural ones (files present, config and safetensors header parse, base model and
categories compatible); a model that still fails to load in a web process is recorded
there as a ``load`` event with outcome ``failed`` and the old model keeps serving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.classifier.identity import base_model_label, base_model_version
from shared.config import Config
from shared.deployment.audit import deployment_history, record_event
from shared.deployment.deployed import deployed_run, set_deployed
from shared.deployment.shadow import end_shadow_of_deployed_run
from shared.errors import Conflict, NotFound
from shared.model_store.checks import active_category_names, verify_adapter_directory
from shared.model_store.layout import finetuned_root, run_model_path
from shared.models import FineTuningRun
from shared.settings_store import get_setting
from shared.training.results import improvement_over_baseline, meets_criteria, metric

logger = logging.getLogger(__name__)

BASE = "base"
AUTO_DEPLOY = "auto-deploy"  # the actor of automatic deploys
DEPLOYABLE_STATUSES = ("completed", "imported")


@dataclass(frozen=True)
class DeployResult:
    """What a deploy or rollback changed: the active model's version and the audit event."""

    active_model: str
    run_id: int | None
    event_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"active_model": self.active_model, "run_id": self.run_id, "event_id": self.event_id}


def active_version(session: Session, config: Config) -> str:
    """The version string predictions of the active model carry."""
    run = deployed_run(session)
    return base_model_version(config.base_model) if run is None else run.version


def describe_deployed_model(session: Session, config: Config) -> dict[str, Any]:
    """The deployed model as the database says (what every process serves once its check
    has swapped): kind, run id, version, base model, headline metrics, and who put it in
    use when (the latest successful deploy or rollback)."""
    run = deployed_run(session)
    since = next(
        (
            event
            for event in deployment_history(session, limit=200)
            if event.action in ("deploy", "rollback") and event.outcome == "ok"
        ),
        None,
    )
    return {
        "kind": "base" if run is None else "finetuned",
        "run_id": None if run is None else run.id,
        "version": base_model_version(config.base_model) if run is None else run.version,
        "base_model": base_model_label(config.base_model),
        "accuracy": None if run is None else metric(run.results, "accuracy"),
        "improvement_over_baseline": None
        if run is None
        else improvement_over_baseline(run.results),
        "imported_from": None if run is None else imported_from(run),
        "since": None if since is None else _iso(since.created_at),
        "by": None if since is None else since.actor,
    }


def imported_from(run: FineTuningRun) -> str | None:
    """The archive's file name an imported run came from (None for a run trained here)."""
    source = (run.results or {}).get("imported_from")
    return source.get("filename") if isinstance(source, dict) else None


def list_published_models(session: Session, config: Config) -> list[dict[str, Any]]:
    """Runs that have a model to deploy (completed or imported), newest first, with file state."""
    runs = session.scalars(
        select(FineTuningRun)
        .where(FineTuningRun.status.in_(DEPLOYABLE_STATUSES))
        .order_by(FineTuningRun.id.desc())
    )
    models = []
    for run in runs:
        path = run_model_path(run, config.models_dir)
        models.append(
            {
                "run_id": run.id,
                "version": run.version,
                "status": run.status,
                "created_at": _iso(run.created_at),
                "meets_criteria": meets_criteria(run.results),
                "is_active_model": run.is_active_model,
                "files_present": path.is_dir(),
                "label_set": run.label_set,
                "accuracy": metric(run.results, "accuracy"),
                "improvement_over_baseline": improvement_over_baseline(run.results),
                "imported_from": imported_from(run),
            }
        )
    return models


def orphan_model_directories(session: Session, config: Config) -> list[str]:
    """Published directories on the volume that no run row knows (for operators)."""
    root = finetuned_root(config.models_dir)
    if not root.is_dir():
        return []
    known = {
        str(run_model_path(run, config.models_dir).resolve())
        for run in session.scalars(select(FineTuningRun))
    }
    return sorted(
        path.name
        for path in root.iterdir()
        if path.is_dir() and not path.name.startswith(".") and str(path.resolve()) not in known
    )


def deploy_model(
    session: Session, config: Config, run_id: int, actor: str, *, force: bool = False
) -> DeployResult:
    """Make run ``run_id`` the active model; commits, with a DeploymentEvent either way.

    Only a completed or imported run; one whose verdict failed the deploy criteria only
    with ``force``. Unknown run → NotFound; refused → Conflict (nothing changed); files
    missing or unreadable → Conflict with a ``failed`` event recorded.
    """
    run = session.get(FineTuningRun, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if run.status not in DEPLOYABLE_STATUSES:
        raise Conflict(
            f"run {run_id} is {run.status}: only a completed or imported run can be deployed"
        )
    verdict = meets_criteria(run.results)
    if verdict is False and not force:
        raise Conflict(
            f"run {run_id} did not meet the deploy criteria; deploy it anyway with "
            '{"force": true}'
        )
    previous = active_version(session, config)
    try:
        verify_adapter_directory(
            run_model_path(run, config.models_dir), config, active_category_names(session)
        )
    except (OSError, ValueError) as error:
        record_event(
            session, "deploy", run_id=run.id, from_version=previous, to_version=run.version,
            actor=actor, outcome="failed", detail=str(error),
        )  # fmt: skip
        session.commit()
        logger.warning("deploy refused run_id=%s actor=%s reason=%s", run.id, actor, error)
        raise Conflict(f"run {run_id} cannot be deployed: {error}") from None
    detail = "forced past the deploy criteria" if verdict is False else None
    try:
        set_deployed(session, run)
        event = record_event(
            session, "deploy", run_id=run.id, from_version=previous, to_version=run.version,
            actor=actor, detail=detail,
        )  # fmt: skip
        end_shadow_of_deployed_run(session, run, actor)  # deploying the shadow promotes it
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("another deploy changed the active model at the same time; retry") from None
    logger.info("model deployed run_id=%s from=%s actor=%s", run.id, previous, actor)
    return DeployResult(active_model=run.version, run_id=run.id, event_id=event.id)


def rollback_to_baseline(session: Session, config: Config, actor: str) -> DeployResult:
    """Return to the base model (detach the adapter); commits with a DeploymentEvent."""
    previous_run = deployed_run(session)
    previous = active_version(session, config)
    target = base_model_version(config.base_model)
    detail = None if previous_run is not None else "the base model was already active"
    set_deployed(session, None)
    event = record_event(
        session,
        "rollback",
        run_id=previous_run.id if previous_run is not None else None,
        from_version=previous,
        to_version=target,
        actor=actor,
        detail=detail,
    )
    session.commit()
    logger.info("model rolled back to base from=%s actor=%s", previous, actor)
    return DeployResult(active_model=BASE, run_id=None, event_id=event.id)


def maybe_auto_deploy(session: Session, config: Config, run_id: int) -> DeployResult | None:
    """Deploy a run that met the criteria when the ``auto_deploy`` setting is on.

    The criteria compare the run with the base model. When a fine-tuned model is in
    use, the run must also have beaten that model on its test texts (the evaluation
    scored both, ``results["in_use"]``); otherwise the model in use stays, and a
    ``skipped`` deploy event says why, so an automatic retrain never silently
    replaces a better model. The pipeline calls this after a run completes; it
    never raises for a refused deploy (the reason is logged and, for broken files,
    recorded as a failed event).
    """
    if not get_setting(session, "auto_deploy"):
        return None
    run = session.get(FineTuningRun, run_id)
    if run is None or run.status != "completed" or meets_criteria(run.results) is not True:
        return None
    current = deployed_run(session)
    if current is not None and current.id != run.id:
        reason = _not_better_than_model_in_use(run, current)
        if reason is not None:
            record_event(
                session,
                "deploy",
                run_id=run.id,
                from_version=current.version,
                to_version=run.version,
                actor=AUTO_DEPLOY,
                outcome="skipped",
                detail=reason,
            )
            session.commit()
            logger.info("auto-deploy skipped run_id=%s reason=%s", run.id, reason)
            return None
    try:
        return deploy_model(session, config, run_id, actor=AUTO_DEPLOY)
    except (Conflict, NotFound) as error:
        logger.warning("auto-deploy skipped run_id=%s reason=%s", run_id, error)
        return None


def _not_better_than_model_in_use(run: FineTuningRun, current: FineTuningRun) -> str | None:
    """None when ``run`` beat ``current`` on its test texts, else why it may not replace it."""
    compared = (run.results or {}).get("in_use")
    if not isinstance(compared, dict) or compared.get("run_id") != current.id:
        return (
            f"this run was never compared with the model in use (run {current.id}): it was "
            "put in use after the run was evaluated; compare them and deploy by hand"
        )
    if compared.get("error"):
        return f"the model in use (run {current.id}) could not be scored: {compared['error']}"
    if compared.get("new_is_better") is not True:
        return (
            f"on the {compared.get('num_test')} test texts the model in use (run "
            f"{current.id}) did not train on, this run scored "
            f"{float(compared.get('new_accuracy') or 0):.3f} and the model in use "
            f"{float(compared.get('accuracy') or 0):.3f}: the model in use stays"
        )
    return None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
