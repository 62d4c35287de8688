"""The model registry: deploy only what may be deployed, one active model, an audit trail."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shared.classifier.identity import base_model_version
from shared.deployment import audit, registry
from shared.errors import Conflict, NotFound
from shared.model_store.layout import run_directory
from shared.models import DeploymentEvent, FineTuningRun
from shared.settings_store import get_setting, set_setting
from shared.training.results import meets_criteria
from tests.factories import make_category, make_run
from tests.model_files import write_adapter_directory

LABELS = ["cards", "loans"]


@pytest.fixture
def categories(session):
    for name in LABELS:
        make_category(session, name=name)
    session.commit()


def published_run(session, config, *, status="completed", meets_criteria=True) -> FineTuningRun:
    run = make_run(
        session, status=status, results={"accuracy": 0.9, "meets_criteria": meets_criteria}
    )
    run.model_path = str(write_adapter_directory(run_directory(config.models_dir, run.id), LABELS))
    session.commit()
    return run


def events(session) -> list[DeploymentEvent]:
    return list(session.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id)))


def active_runs(session) -> list[int]:
    return list(session.scalars(select(FineTuningRun.id).where(FineTuningRun.is_active_model)))


def test_deploying_a_completed_run_makes_it_the_one_active_model(
    session, config, categories
) -> None:
    run = published_run(session, config)

    result = registry.deploy_model(session, config, run.id, actor="alice")

    assert result.active_model == f"run-{run.id}"
    assert get_setting(session, "active_model_id") == run.id
    assert active_runs(session) == [run.id]
    [event] = events(session)
    assert (event.action, event.run_id, event.actor, event.outcome) == (
        "deploy",
        run.id,
        "alice",
        "ok",
    )
    assert (event.from_version, event.to_version) == (
        base_model_version(config.base_model),
        f"run-{run.id}",
    )


def test_deploying_another_run_replaces_the_active_one(session, config, categories) -> None:
    first, second = published_run(session, config), published_run(session, config)
    registry.deploy_model(session, config, first.id, actor="alice")

    registry.deploy_model(session, config, second.id, actor="bob")

    assert active_runs(session) == [second.id]
    assert get_setting(session, "active_model_id") == second.id
    assert events(session)[-1].from_version == f"run-{first.id}"


def test_an_imported_run_can_be_deployed(session, config, categories) -> None:
    run = published_run(session, config, status="imported")
    assert registry.deploy_model(session, config, run.id, actor="alice").run_id == run.id


@pytest.mark.parametrize("status", ["queued", "training", "evaluating", "failed", "cancelled"])
def test_a_run_that_is_not_completed_cannot_be_deployed(
    session, config, categories, status
) -> None:
    run = make_run(session, status=status)
    session.commit()

    with pytest.raises(Conflict, match=status):
        registry.deploy_model(session, config, run.id, actor="alice")

    assert get_setting(session, "active_model_id") is None
    assert events(session) == []


def test_unknown_run_is_not_found(session, config) -> None:
    with pytest.raises(NotFound):
        registry.deploy_model(session, config, 999, actor="alice")


def test_a_run_that_failed_the_criteria_needs_force(session, config, categories) -> None:
    run = published_run(session, config, meets_criteria=False)

    with pytest.raises(Conflict, match="force"):
        registry.deploy_model(session, config, run.id, actor="alice")
    assert active_runs(session) == []

    registry.deploy_model(session, config, run.id, actor="alice", force=True)
    assert active_runs(session) == [run.id]
    assert "forced" in events(session)[-1].detail


def test_the_verdict_is_read_where_the_engine_writes_it(session) -> None:
    nested = make_run(session, status="completed", results={"verdict": {"meets_criteria": False}})
    flat = make_run(session, status="completed", results={"meets_criteria": True})
    unjudged = make_run(session, status="completed", results=None)
    assert [meets_criteria(run.results) for run in (nested, flat, unjudged)] == [False, True, None]


def test_missing_adapter_files_are_refused_and_recorded_as_a_failed_deploy(
    session, config, categories
) -> None:
    current = published_run(session, config)
    registry.deploy_model(session, config, current.id, actor="alice")
    broken = make_run(session, status="completed", results={"meets_criteria": True})
    session.commit()

    with pytest.raises(Conflict, match="cannot be deployed"):
        registry.deploy_model(session, config, broken.id, actor="alice")

    assert active_runs(session) == [current.id]
    assert get_setting(session, "active_model_id") == current.id
    failed = events(session)[-1]
    assert (failed.action, failed.run_id, failed.outcome) == ("deploy", broken.id, "failed")
    assert "does not exist" in failed.detail


def test_an_adapter_for_categories_this_installation_lacks_is_refused(session, config) -> None:
    make_category(session, name="cards")
    run = published_run(session, config)  # trained on cards and loans; loans is missing here

    with pytest.raises(Conflict, match="loans"):
        registry.deploy_model(session, config, run.id, actor="alice")
    assert active_runs(session) == []


def test_rollback_returns_to_the_base_model(session, config, categories) -> None:
    run = published_run(session, config)
    registry.deploy_model(session, config, run.id, actor="alice")

    result = registry.rollback_to_baseline(session, config, actor="bob")

    assert result.active_model == "base"
    assert get_setting(session, "active_model_id") is None
    assert active_runs(session) == []
    event = events(session)[-1]
    assert (event.action, event.run_id, event.actor) == ("rollback", run.id, "bob")
    assert (event.from_version, event.to_version) == (
        f"run-{run.id}",
        base_model_version(config.base_model),
    )


def test_history_lists_every_event_newest_first(session, config, categories) -> None:
    run = published_run(session, config)
    registry.deploy_model(session, config, run.id, actor="alice")
    registry.rollback_to_baseline(session, config, actor="alice")
    registry.deploy_model(session, config, run.id, actor="alice")

    history = [audit.event_to_dict(event) for event in audit.deployment_history(session)]

    assert [entry["action"] for entry in history] == ["deploy", "rollback", "deploy"]
    assert history[0]["created_at"] >= history[-1]["created_at"]


def test_auto_deploy_only_when_the_setting_is_on_and_the_run_meets_the_criteria(
    session, config, categories
) -> None:
    good = published_run(session, config, meets_criteria=True)
    bad = published_run(session, config, meets_criteria=False)
    assert registry.maybe_auto_deploy(session, config, good.id) is None  # off by default

    set_setting(session, "auto_deploy", True)
    session.commit()
    assert registry.maybe_auto_deploy(session, config, bad.id) is None
    assert registry.maybe_auto_deploy(session, config, good.id).run_id == good.id
    assert events(session)[-1].actor == "auto-deploy"


def test_auto_deploy_never_replaces_a_model_in_use_that_the_run_did_not_beat(
    session, config, categories
) -> None:
    set_setting(session, "auto_deploy", True)
    in_use = published_run(session, config)
    registry.deploy_model(session, config, in_use.id, actor="alice")

    def candidate(**compared) -> FineTuningRun:
        run = published_run(session, config)
        run.results = {**run.results, "in_use": {"run_id": in_use.id, **compared}}
        session.commit()
        return run

    def scored(new_right: int, in_use_right: int) -> FineTuningRun:
        """A run compared on 40 texts, 31 right in both models plus the ones only one gets."""
        return candidate(
            num_test=40,
            accuracy=(31 + in_use_right) / 40,
            new_accuracy=(31 + new_right) / 40,
            new_right=new_right,
            in_use_right=in_use_right,
            new_is_better=new_right > in_use_right,
        )

    worse = scored(new_right=1, in_use_right=3)
    assert registry.maybe_auto_deploy(session, config, worse.id) is None
    assert active_runs(session) == [in_use.id]
    skipped = events(session)[-1]
    assert (skipped.action, skipped.outcome, skipped.actor, skipped.run_id) == (
        "deploy",
        "skipped",
        "auto-deploy",
        worse.id,
    )
    assert (skipped.from_version, skipped.to_version) == (in_use.version, worse.version)
    assert skipped.detail == (
        f"on the 40 test texts the model in use (run {in_use.id}) did not train on, this run "
        "scored 0.800 and the model in use 0.850: the model in use stays"
    )

    # Compared with another model than the one in use now: never compared, so it stays.
    unknown = published_run(session, config)
    assert registry.maybe_auto_deploy(session, config, unknown.id) is None
    assert active_runs(session) == [in_use.id]
    assert "never compared with the model in use" in events(session)[-1].detail
    broken = candidate(error="cannot read adapter")
    assert registry.maybe_auto_deploy(session, config, broken.id) is None
    assert events(session)[-1].detail.endswith("could not be scored: cannot read adapter")

    better = scored(new_right=3, in_use_right=1)
    assert registry.maybe_auto_deploy(session, config, better.id).run_id == better.id
    assert active_runs(session) == [better.id]
    assert (events(session)[-1].outcome, events(session)[-1].actor) == ("ok", "auto-deploy")


def test_published_models_list_their_files_and_verdicts(session, config, categories) -> None:
    run = published_run(session, config)
    make_run(session, status="failed")
    session.commit()

    [model] = registry.list_published_models(session, config)

    assert (model["run_id"], model["files_present"], model["meets_criteria"]) == (
        run.id,
        True,
        True,
    )
