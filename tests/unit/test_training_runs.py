"""Starting, cancelling, listing and reaping fine-tuning runs (core on SQLite, API in-process)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from shared.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from shared.models import FineTuningRun, utcnow
from shared.settings_store import set_setting
from shared.training.estimate import EVERY_BLOCK_COST, estimate_run_duration
from shared.training.options import (
    DEFAULT_TRAINING_CONFIG,
    update_training_settings,
    validate_training_config,
)
from shared.training.periodic import maybe_auto_train, reap_stale_runs
from shared.training.runs import cancel_training_run, list_runs, run_status, start_training_run
from tests.factories import make_category, make_run, make_training_example

CATEGORIES = ("roads", "parks", "bins")


class RecordingQueue:
    """An ``enqueue`` that remembers which runs it was asked to send."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[int] = []

    def __call__(self, run_id: int) -> list[str]:
        if self.fail:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        self.sent.append(run_id)
        return [f"validate-{run_id}", f"train-{run_id}", f"evaluate-{run_id}"]


@pytest.fixture
def examples(session):
    """Three categories with four distinct examples each (12 examples)."""
    for name in CATEGORIES:
        make_category(session, name=name, description=f"anything about {name}")
        for n in range(4):
            make_training_example(
                session,
                message=f"a message about {name} number {n} please",
                corrected_category=name,
            )
    set_setting(session, "min_training_examples", 10)
    session.commit()


def start(session, options=None, queue=None):
    return start_training_run(
        session, options or {}, base_model="test-model", enqueue=queue or RecordingQueue()
    )


def run_count(session) -> int:
    return session.scalar(select(func.count()).select_from(FineTuningRun))


# --- config -----------------------------------------------------------------------------


def test_an_empty_config_gets_the_documented_defaults():
    assert validate_training_config({}) == DEFAULT_TRAINING_CONFIG
    assert validate_training_config(None) == DEFAULT_TRAINING_CONFIG


@pytest.mark.parametrize(
    "options",
    [
        {"method": "head"},
        {"lora_r": 32},
        {"learning_rate": 1e-4},
        {"learning_rate": 5e-4},
        {"epochs": 1},
        {"epochs": 10},
        {"split": [0.8, 0.1, 0.1]},
        {"cross_validation": True},
    ],
)
def test_values_inside_the_ranges_are_accepted(options):
    config = validate_training_config(options)
    for key, value in options.items():
        assert config[key] == value


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"method": "full"}, "method"),
        ({"lora_r": 4}, "lora_r"),
        ({"lora_r": True}, "lora_r"),
        ({"lora_r": "8"}, "lora_r"),
        ({"learning_rate": 1e-3}, "learning_rate"),
        ({"learning_rate": 5e-5}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 11}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"split": [0.7, 0.3]}, "split"),
        ({"split": [0.7, 0.2, 0.2]}, "split"),
        ({"split": [1.0, 0.0, 0.0]}, "split"),
        ({"split": "0.7,0.15,0.15"}, "split"),
        ({"cross_validation": "yes"}, "cross_validation"),
        ({"batch_size": 4}, "batch_size"),
    ],
)
def test_values_outside_the_ranges_are_refused_naming_the_field(options, named):
    with pytest.raises(InvalidInput, match=named):
        validate_training_config(options)


def test_a_config_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidInput):
        validate_training_config([1, 2, 3])


# --- settings ---------------------------------------------------------------------------


def test_settings_are_stored_when_every_value_is_valid(session):
    values = update_training_settings(session, {"auto_train": True, "min_training_examples": 50})
    session.commit()
    assert values["auto_train"] is True
    assert values["min_training_examples"] == 50
    assert values["fine_tuning_enabled"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"auto_train": "yes"},
        {"min_training_examples": 0},
        {"min_training_examples": "20"},
        {"min_training_examples": True},
        {"active_model_id": 3},
        {"colour": "blue"},
        {},
    ],
)
def test_bad_settings_are_refused_and_nothing_changes(session, body):
    with pytest.raises(InvalidInput):
        update_training_settings(session, {"fine_tuning_enabled": False, **body} if body else body)
    session.rollback()
    assert update_training_settings(session, {"auto_deploy": False})["fine_tuning_enabled"] is True


def test_start_is_refused_while_fine_tuning_is_disabled(session, examples):
    set_setting(session, "fine_tuning_enabled", False)
    session.commit()
    with pytest.raises(InvalidInput, match="disabled"):
        start(session)
    assert run_count(session) == 0


def test_start_is_refused_with_too_few_examples(session, examples):
    set_setting(session, "min_training_examples", 13)
    session.commit()
    with pytest.raises(InvalidInput, match="too few training examples: 12, at least 13"):
        start(session)
    assert run_count(session) == 0


def test_start_is_refused_when_a_category_has_too_few_examples_to_train(session, examples):
    make_category(session, name="trees", description="trees")
    make_training_example(
        session, message="the tree fell over on the road", corrected_category="trees"
    )
    session.commit()
    with pytest.raises(InvalidInput, match="trees"):
        start(session)


def test_start_is_refused_when_the_split_leaves_no_test_text(session, examples):
    # Four examples a category: 5 % of 4 rounds to no test text (the default gives one).
    with pytest.raises(InvalidInput, match="No example is left for the test set"):
        start(session, {"split": [0.8, 0.15, 0.05]})
    assert run_count(session) == 0
    assert start(session).status == "queued"


# --- start ------------------------------------------------------------------------------


def test_start_commits_a_queued_run_with_its_snapshot_then_enqueues_it(session, examples):
    queue = RecordingQueue()
    run = start(session, {"epochs": 2, "lora_r": 16}, queue)
    assert queue.sent == [run.id]
    session.expire_all()
    stored = session.get(FineTuningRun, run.id)
    assert stored.status == "queued"
    assert stored.training_config["epochs"] == 2
    assert stored.training_config["lora_r"] == 16
    assert stored.base_model == "test-model"
    assert stored.label_set == sorted(CATEGORIES)
    assert len(stored.data_snapshot["example_ids"]) == 12
    assert stored.data_snapshot["task_ids"] == [
        f"validate-{run.id}",
        f"train-{run.id}",
        f"evaluate-{run.id}",
    ]
    assert stored.celery_task_id == f"validate-{run.id}"


def test_a_second_start_while_one_is_active_is_a_conflict(session, examples):
    start(session)
    with pytest.raises(Conflict):
        start(session)
    assert run_count(session) == 1


def test_when_the_broker_refuses_the_run_is_failed_and_unavailable_is_raised(session, examples):
    with pytest.raises(ServiceUnavailable):
        start(session, queue=RecordingQueue(fail=True))
    session.expire_all()
    run = session.scalars(select(FineTuningRun)).one()
    assert run.status == "failed"
    assert "broker unreachable" in run.error
    assert run.active_lock is None
    start(session)  # nothing is left active: the next start works


# --- cancel -----------------------------------------------------------------------------


def test_cancelling_a_queued_run_ends_it_cancelled_at_once(session, examples):
    run = start(session)
    revoked = []
    cancelled = cancel_training_run(session, run.id, revoke=revoked.extend)
    assert cancelled.status == "cancelled"
    assert cancelled.completed_at is not None
    assert revoked == run.data_snapshot["task_ids"]


def test_cancelling_a_running_run_sets_the_flag_the_worker_checks(session, examples):
    run = start(session)
    run.status = "training"
    session.commit()
    cancelled = cancel_training_run(session, run.id)
    assert cancelled.status == "training"
    assert cancelled.cancel_requested is True


def test_cancelling_a_finished_run_is_a_conflict(session):
    run = make_run(session, status="completed")
    session.commit()
    with pytest.raises(Conflict):
        cancel_training_run(session, run.id)


def test_cancelling_an_unknown_run_is_not_found(session):
    with pytest.raises(NotFound):
        cancel_training_run(session, 999)


# --- reaper -----------------------------------------------------------------------------


def test_the_reaper_fails_a_run_whose_heartbeat_stopped(session):
    stale = make_run(session, status="training", heartbeat_at=utcnow() - timedelta(seconds=61))
    session.commit()
    assert reap_stale_runs(session, heartbeat_timeout_seconds=60) == [stale.id]
    session.refresh(stale)
    assert stale.status == "failed"
    assert stale.error.startswith("worker lost")


def test_the_reaper_leaves_a_run_with_a_fresh_heartbeat_alone(session):
    alive = make_run(session, status="training", heartbeat_at=utcnow() - timedelta(seconds=5))
    session.commit()
    assert reap_stale_runs(session, heartbeat_timeout_seconds=60) == []
    session.refresh(alive)
    assert alive.status == "training"


def test_the_reaper_fails_a_queued_run_nobody_picked_up_for_much_longer(session):
    waiting = make_run(session, status="queued", created_at=utcnow() - timedelta(seconds=120))
    session.commit()
    assert reap_stale_runs(session, heartbeat_timeout_seconds=60) == []
    waiting.created_at = utcnow() - timedelta(hours=1)
    session.commit()
    assert reap_stale_runs(session, heartbeat_timeout_seconds=60) == [waiting.id]


# --- auto-train -------------------------------------------------------------------------


def test_auto_train_does_nothing_while_switched_off(session, examples):
    queue = RecordingQueue()
    assert maybe_auto_train(session, base_model="test-model", enqueue=queue) is None
    assert queue.sent == []


def test_auto_train_starts_one_run_when_enough_new_examples_arrived(session, examples):
    set_setting(session, "auto_train", True)
    session.commit()
    queue = RecordingQueue()
    first = maybe_auto_train(session, base_model="test-model", enqueue=queue)
    again = maybe_auto_train(session, base_model="test-model", enqueue=queue)
    assert first is not None
    assert again is None
    assert queue.sent == [first]
    assert session.get(FineTuningRun, first).created_by == "auto-train"


def test_auto_train_waits_for_new_examples_after_the_last_run(session, examples):
    set_setting(session, "auto_train", True)
    make_run(session, status="failed")
    session.commit()
    queue = RecordingQueue()
    assert maybe_auto_train(session, base_model="test-model", enqueue=queue) is None
    time.sleep(0.01)
    for n in range(10):
        make_training_example(
            session,
            message=f"a brand new message about roads {n} today",
            corrected_category="roads",
        )
    session.commit()
    assert maybe_auto_train(session, base_model="test-model", enqueue=queue) is not None


# --- reading ----------------------------------------------------------------------------


def test_status_and_history_have_the_contracts_fields(session):
    run = make_run(
        session,
        status="completed",
        results={"accuracy": 0.9, "baseline_accuracy": 0.7, "verdict": {"meets_criteria": True}},
    )
    session.commit()
    status = run_status(run)
    for key in (
        "run_id",
        "status",
        "stage",
        "progress",
        "epoch",
        "loss",
        "eta_seconds",
        "error",
        "results",
    ):
        assert key in status
    (row,) = list_runs(session)
    assert row["run_id"] == run.id
    assert row["accuracy"] == 0.9
    assert row["baseline_accuracy"] == 0.7
    assert row["meets_criteria"] is True
    assert row["is_active_model"] is False
    for key in ("created_at", "status", "num_training_examples"):
        assert key in row


# --- the API, in-process (the unit config's broker is a closed port) ---------------------


def test_start_training_answers_503_quickly_when_the_broker_is_down(
    client, session, examples, admin_headers
):
    started = time.monotonic()
    response = client.post("/admin/api/start-training", json={"epochs": 1}, headers=admin_headers)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "error" in response.get_json()
    assert elapsed < 30  # generous: the point is "seconds, not a hang"
    session.expire_all()
    assert session.scalars(select(FineTuningRun)).one().status == "failed"


@pytest.mark.parametrize(
    "body",
    [{"epochs": 0}, {"method": "full"}, {"unknown": 1}, [1, 2]],
)
def test_start_training_with_a_bad_config_is_400_and_creates_nothing(
    client, session, examples, admin_headers, body
):
    response = client.post("/admin/api/start-training", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert run_count(session) == 0


def test_training_status_of_an_unknown_run_is_404(client, admin_headers):
    response = client.get("/admin/api/training-status/12345", headers=admin_headers)
    assert response.status_code == 404
    assert "error" in response.get_json()


def test_the_training_api_needs_an_admin(client):
    assert client.get("/admin/api/runs").status_code == 401
    assert client.post("/admin/api/start-training", json={}).status_code in (400, 401)


def test_settings_round_trip_through_the_api(client, admin_headers):
    response = client.post(
        "/admin/api/settings",
        json={"auto_train": True, "min_training_examples": 30},
        headers=admin_headers,
    )
    assert response.status_code == 200
    body = client.get("/admin/api/settings", headers=admin_headers).get_json()
    assert body == {
        "fine_tuning_enabled": True,
        "min_training_examples": 30,
        "auto_train": True,
        "auto_deploy": False,
    }


def test_bad_settings_through_the_api_are_400(client, admin_headers):
    response = client.post(
        "/admin/api/settings", json={"min_training_examples": -1}, headers=admin_headers
    )
    assert response.status_code == 400
    assert (
        client.get("/admin/api/settings", headers=admin_headers).get_json()["min_training_examples"]
        == 20
    )


def test_cancel_through_the_api_works_even_when_the_broker_is_down(client, session, admin_headers):
    run = make_run(session, status="queued", data_snapshot={"task_ids": ["a", "b", "c"]})
    session.commit()

    response = client.post(f"/admin/api/cancel-training/{run.id}", headers=admin_headers)

    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"


def _completed_run(
    session,
    *,
    method,
    examples,
    seconds,
    train_seconds,
    epochs=10,
    cv=False,
    hours_ago=1,
    **fields,
):
    started = utcnow() - timedelta(hours=hours_ago)
    return make_run(
        session,
        base_model="test-model",
        status="completed",
        training_config={**DEFAULT_TRAINING_CONFIG, "method": method, "epochs": epochs,
                         "cross_validation": cv},
        num_training_examples=examples,
        started_at=started,
        completed_at=started + timedelta(seconds=seconds),
        results={"training": {"train_seconds": train_seconds, **fields}},
    )  # fmt: skip


def test_a_run_has_no_duration_estimate_before_a_similar_run_completed(session, examples):
    estimate = estimate_run_duration(session, {"method": "head"}, base_model="test-model")
    assert estimate["seconds"] is None
    assert estimate["num_examples"] == 12
    assert "no completed head run" in estimate["basis"]


def test_the_estimate_scales_the_latest_similar_run_by_examples_and_epochs(session, examples):
    _completed_run(session, method="lora", examples=24, seconds=50, train_seconds=40, hours_ago=9)
    reference = _completed_run(session, method="lora", examples=6, seconds=30, train_seconds=20)
    _completed_run(session, method="head", examples=12, seconds=5, train_seconds=1)
    _completed_run(session, method="lora", examples=12, seconds=900, train_seconds=880, cv=True)
    session.commit()

    estimate = estimate_run_duration(
        session, {"method": "lora", "epochs": 5}, base_model="test-model"
    )

    # 12 examples now vs 6: training 20 s x 2 x (5 / 10 epochs) + the other 10 s x 2
    assert estimate["seconds"] == pytest.approx(40.0)
    assert estimate["reference_run"]["run_id"] == reference.id
    assert f"run {reference.id}" in estimate["basis"]
    other_model = estimate_run_duration(session, {"method": "lora"}, base_model="other-model")
    assert other_model["seconds"] is None


def test_the_estimate_prefers_a_run_that_adapted_the_same_blocks(session, examples):
    # 12 examples over 3 categories (about 3 training texts each): an embedding lora run
    # adapts the top block only. A recent run on more data adapted every block, which
    # costs more per example, so the older top-block run is the better reference.
    top = _completed_run(
        session,
        method="lora",
        examples=12,
        seconds=30,
        train_seconds=20,
        hours_ago=9,
        adapted_blocks="top block",
    )
    every = _completed_run(
        session,
        method="lora",
        examples=12,
        seconds=90,
        train_seconds=80,
        adapted_blocks="every block",
    )
    session.commit()

    estimate = estimate_run_duration(session, {"method": "lora"}, base_model="test-model")
    assert estimate["adapted_blocks"] == "top block"
    assert estimate["reference_run"]["run_id"] == top.id
    assert estimate["seconds"] == pytest.approx(30.0)

    # With only the every-block run to go by, its training time per example is scaled down.
    session.delete(top)
    session.commit()
    estimate = estimate_run_duration(session, {"method": "lora"}, base_model="test-model")
    assert estimate["reference_run"]["run_id"] == every.id
    assert estimate["reference_run"]["adapted_blocks"] == "every block"
    assert estimate["seconds"] == pytest.approx(80 / EVERY_BLOCK_COST + 10)
    assert (
        "adapted every block of the encoder there and will adapt the top block"
        in (estimate["basis"])
    )


def test_the_estimate_counts_a_reference_run_by_all_the_examples_it_took(session, examples):
    # Once its data is checked a run's num_training_examples is its training split only;
    # today's count is every example, so the reference is counted the same way.
    run = _completed_run(session, method="head", examples=8, seconds=10, train_seconds=4)
    run.data_snapshot = {"example_ids": list(range(12))}
    session.commit()

    estimate = estimate_run_duration(session, {"method": "head"}, base_model="test-model")
    assert estimate["reference_run"]["num_examples"] == 12
    assert estimate["seconds"] == pytest.approx(10.0)


def test_the_estimate_api_refuses_bad_options_like_start_training(client, examples, admin_headers):
    ok = client.post("/admin/api/training-estimate", json={"method": "lora"}, headers=admin_headers)
    assert ok.status_code == 200 and ok.get_json()["num_examples"] == 12
    bad = client.post("/admin/api/training-estimate", json={"epochs": 99}, headers=admin_headers)
    assert bad.status_code == 400 and "epochs" in bad.get_json()["error"]
    assert client.post("/admin/api/training-estimate", json={}).status_code in (400, 401)
