"""Shadow evaluation over HTTP with fake classifiers (SQLite): a run scored beside the
model in use, judged by admins' reviews, stopped or promoted; the public sees nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from shared.classifier.base import CategorySpec, Prediction
from shared.deployment.active_model import ActiveModel, Classification
from shared.deployment.shadow import emit_daily_report
from shared.deployment.shadow_model import ShadowModel
from shared.model_store.layout import run_directory
from shared.models import DeploymentEvent, NotificationEvent, Shadow, ShadowPrediction, utcnow
from tests.factories import make_category, make_run
from tests.model_files import write_adapter_directory
from tests.unit.fakes import KeywordClassifier
from web.analyzer import MicroBatcher, SubmissionAnalyzer

LABELS = ["cards", "loans"]


class SaysAlways:
    """A shadow that answers one category for every text (or fails when told to)."""

    def __init__(self, label: str, version: str) -> None:
        self.label, self.version, self.fail = label, version, False

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> list[Prediction]:
        if self.fail:
            raise RuntimeError("the shadow exploded")
        return [Prediction(self.label, 0.9, {self.label: 0.9}) for _ in texts]


@pytest.fixture
def shadow_classifier() -> SaysAlways:
    return SaysAlways("cards", "run-x")


@pytest.fixture
def analyzer(app, shadow_classifier) -> SubmissionAnalyzer:
    """The app's analyzer with fakes: keywords in use, "always cards" for any run."""
    active = ActiveModel(
        app.config["SORTLOOP"],
        app.extensions["sortloop_sessions"],
        load_base=lambda _config: KeywordClassifier(),
        load_finetuned=lambda _config, _path, _version: shadow_classifier,
    )
    shadow = ShadowModel(active)
    batcher = MicroBatcher(shadow.classify, 0.0, 8)
    analyzer = SubmissionAnalyzer(active, batcher, shadow)
    app.extensions["sortloop_analyzer"] = analyzer
    return analyzer


def _published(session, config, **fields):
    run = make_run(session, status="completed", results={"meets_criteria": True}, **fields)
    run.model_path = str(write_adapter_directory(run_directory(config.models_dir, run.id), LABELS))
    return run


@pytest.fixture
def runs(session, config):
    for name in LABELS:
        make_category(session, name=name)
    first, second = _published(session, config), _published(session, config)
    session.commit()
    return first, second


def submit(client, message: str):
    return client.post(
        "/api/submissions", json={"message": message, "contributor_type": "resident"}
    )


def decide(client, headers, submission_id: int, category: str) -> None:
    response = client.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": category},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/admin/api/shadow-model/1"),
        ("delete", "/admin/api/shadow-model"),
        ("get", "/admin/api/shadow-report"),
    ],
)
def test_shadow_endpoints_need_an_admin(client, method, path) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_a_run_in_shadow_scores_submissions_the_public_never_sees(
    client, admin_headers, session, runs, analyzer
) -> None:
    first, _ = runs
    started = client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers)
    assert started.status_code == 201, started.get_json()
    assert started.get_json()["run_id"] == first.id
    assert started.get_json()["scored"] == 0
    analyzer.refresh()  # this process picks the shadow up (the watcher does it when serving)

    answer = submit(client, "my loans are late")

    assert answer.status_code == 201
    body = answer.get_json()
    # The public answer names the served model only: nothing about the shadow.
    assert set(body) == {"id", "category", "confidence", "model_version", "status"}
    assert body["status"] == "classified"
    assert body["category"] == "loans"
    assert body["model_version"].startswith("base:")
    stored = session.scalar(select(ShadowPrediction))
    assert stored.submission_id == body["id"]
    assert (stored.served_category, stored.shadow_category) == ("loans", "cards")
    assert stored.shadow_version == f"run-{first.id}"
    listed = client.get("/admin/api/submissions", headers=admin_headers).get_json()["items"]
    assert [(item["category"], item["predicted_category"]) for item in listed] == [
        ("loans", "loans")
    ]
    info = client.get("/admin/api/model-info", headers=admin_headers).get_json()
    assert info["shadow"] == {
        "run_id": first.id,
        "version": f"run-{first.id}",
        "loaded": True,
        "load_error": None,
    }


def test_reviews_judge_both_models_and_the_report_adds_up(
    client, admin_headers, runs, analyzer
) -> None:
    first, _ = runs
    client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers)
    analyzer.refresh()
    # Keywords: "cards ..." -> cards, anything else -> loans; the shadow always says cards.
    ids = [
        submit(client, text).get_json()["id"]
        for text in ("hello there", "good day", "cards please", "loans", "not reviewed")
    ]
    decide(client, admin_headers, ids[0], "cards")  # only the shadow right
    decide(client, admin_headers, ids[1], "cards")  # only the shadow right
    decide(client, admin_headers, ids[2], "cards")  # both right (an accepted suggestion)
    decide(client, admin_headers, ids[3], "loans")  # only the model in use right

    report = client.get("/admin/api/shadow-report", headers=admin_headers)

    assert report.status_code == 200
    body = report.get_json()
    assert body["run_id"] == first.id
    assert body["scored"] == 5
    assert body["agreement"] == 0.2
    assert body["reviewed"] == 4
    assert body["accuracy_active"] == 0.5
    assert body["accuracy_shadow"] == 0.75
    assert (body["active_only_right"], body["shadow_only_right"]) == (1, 2)
    assert body["p_value"] == 1.0  # 3 discordant texts: far from evidence
    deployments = client.get("/admin/api/deployments", headers=admin_headers).get_json()
    assert deployments["shadow"]["reviewed"] == 4


def test_one_shadow_at_a_time_and_what_cannot_be_in_shadow(
    client, admin_headers, session, config, runs
) -> None:
    first, second = runs
    assert (
        client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers).status_code == 201
    )

    second_shadow = client.post(f"/admin/api/shadow-model/{second.id}", headers=admin_headers)

    assert second_shadow.status_code == 409
    assert f"run {first.id} is already in shadow" in second_shadow.get_json()["error"]
    assert (
        client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers).status_code == 409
    )
    assert client.post("/admin/api/shadow-model/999", headers=admin_headers).status_code == 404
    assert session.scalar(select(func.count()).select_from(Shadow)) == 1
    client.delete("/admin/api/shadow-model", headers=admin_headers)
    running = make_run(session, status="training")
    missing = make_run(session, status="completed", model_path="/nowhere")
    session.commit()
    for run in (running, missing):
        refused = client.post(f"/admin/api/shadow-model/{run.id}", headers=admin_headers)
        assert refused.status_code == 409, refused.get_json()
    client.post(f"/admin/api/deploy-model/{second.id}", headers=admin_headers)
    in_use = client.post(f"/admin/api/shadow-model/{second.id}", headers=admin_headers)
    assert in_use.status_code == 409
    assert "model in use" in in_use.get_json()["error"]
    assert session.scalar(select(func.count()).select_from(Shadow)) == 1  # only the first


def test_stop_ends_the_shadow_and_new_submissions_are_served_alone(
    client, admin_headers, session, runs, analyzer
) -> None:
    first, _ = runs
    client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers)
    analyzer.refresh()
    submit(client, "before the stop")

    stopped = client.delete("/admin/api/shadow-model", headers=admin_headers)

    assert stopped.status_code == 200
    assert stopped.get_json()["scored"] == 1
    assert stopped.get_json()["ended_at"]
    assert client.get("/admin/api/shadow-report", headers=admin_headers).status_code == 404
    assert client.delete("/admin/api/shadow-model", headers=admin_headers).status_code == 404
    analyzer.refresh()
    assert submit(client, "after the stop").status_code == 201
    assert session.scalar(select(func.count()).select_from(ShadowPrediction)) == 1
    assert client.get("/admin/api/model-info", headers=admin_headers).get_json()["shadow"] is None
    shadow = session.scalar(select(Shadow))
    session.refresh(shadow)
    assert (shadow.end_reason, shadow.active_lock) == ("stopped", None)
    actions = session.scalars(select(DeploymentEvent.detail).order_by(DeploymentEvent.id)).all()
    assert actions == ["put in shadow beside the model in use", "shadow stopped"]


def test_promote_is_a_deploy_through_the_gate_and_ends_the_shadow(
    client, admin_headers, session, config, runs
) -> None:
    below = _published(session, config)
    below.results = {"meets_criteria": False}
    session.commit()
    client.post(f"/admin/api/shadow-model/{below.id}", headers=admin_headers)

    refused = client.post(f"/admin/api/deploy-model/{below.id}", headers=admin_headers)

    assert refused.status_code == 409  # the same gate as any deploy
    assert client.get("/admin/api/shadow-report", headers=admin_headers).status_code == 200
    promoted = client.post(
        f"/admin/api/deploy-model/{below.id}", json={"force": True}, headers=admin_headers
    )
    assert promoted.status_code == 200
    assert promoted.get_json()["active_model"] == f"run-{below.id}"
    assert client.get("/admin/api/shadow-report", headers=admin_headers).status_code == 404
    events = session.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id)).all()
    assert [(e.action, e.detail) for e in events][-2:] == [
        ("deploy", "forced past the deploy criteria"),
        ("shadow", "shadow promoted"),
    ]
    assert session.scalar(select(Shadow.end_reason)) == "promoted"


def test_a_failing_shadow_never_fails_the_public_answer(
    client, admin_headers, session, runs, analyzer, shadow_classifier
) -> None:
    client.post(f"/admin/api/shadow-model/{runs[0].id}", headers=admin_headers)
    analyzer.refresh()
    shadow_classifier.fail = True

    answer = submit(client, "my cards")

    assert answer.status_code == 201
    assert answer.get_json()["category"] == "cards"
    assert session.scalar(select(func.count()).select_from(ShadowPrediction)) == 0


def test_a_shared_batch_gives_each_caller_its_own_shadow_slice() -> None:
    served = [Prediction(label, 0.5, {}) for label in "abc"]
    shadowed = [Prediction(label, 0.5, {}) for label in "xyz"]
    batch = Classification(served, "base:m", Classification(shadowed, "run-2"), 7)

    part = batch.part(1, 3)

    assert [p.label for p in part.predictions] == ["b", "c"]
    assert [p.label for p in part.shadow.predictions] == ["y", "z"]
    assert (part.shadow.version, part.shadow_id) == ("run-2", 7)


def test_the_daily_report_event_goes_out_once_a_day_while_a_shadow_runs(
    client, admin_headers, session, runs
) -> None:
    assert emit_daily_report(session) is None  # nothing in shadow: nothing sent
    client.post(f"/admin/api/shadow-model/{runs[0].id}", headers=admin_headers)

    first = emit_daily_report(session)
    again = emit_daily_report(session)
    next_day = emit_daily_report(session, now=utcnow() + timedelta(days=1, minutes=1))

    assert first is not None and first["run_id"] == runs[0].id
    assert again is None
    assert next_day is not None
    events = session.scalars(select(NotificationEvent).order_by(NotificationEvent.id)).all()
    assert [event.type for event in events] == ["shadow.report", "shadow.report"]
    assert events[0].run_id == runs[0].id
    assert events[0].subject["data"]["scored"] == 0
    assert set(events[0].subject["data"]) >= {
        "run_id", "since", "scored", "agreement", "reviewed", "accuracy_active",
        "accuracy_shadow", "active_only_right", "shadow_only_right", "p_value",
    }  # fmt: skip


def test_submissions_a_worker_classifies_are_scored_by_the_shadow_too(
    app, client, admin_headers, session, runs, shadow_classifier
) -> None:
    """With a heavy model in use the worker classifies the public's submissions: the
    run in shadow scores them beside it, once each (as the web tier does)."""
    from shared.submissions.classification_queue import classify_pending

    first, _ = runs
    active = ActiveModel(
        app.config["SORTLOOP"],
        app.extensions["sortloop_sessions"],
        load_base=lambda _config: KeywordClassifier(),
        load_finetuned=lambda _config, _path, _version: shadow_classifier,
    )
    app.extensions["sortloop_analyzer"] = SubmissionAnalyzer(active, classify_on="worker")
    assert (
        client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers).status_code == 201
    )
    waiting = [submit(client, text).get_json() for text in ("my loans are late", "lost my cards")]
    assert [body["status"] for body in waiting] == ["classifying", "classifying"]
    assert session.scalar(select(func.count()).select_from(ShadowPrediction)) == 0

    worker_model = ShadowModel(active)  # what the worker classifies with
    assert classify_pending(session, worker_model) == 2
    assert classify_pending(session, worker_model) == 0  # nothing waits: nothing re-scored

    stored = session.scalars(select(ShadowPrediction).order_by(ShadowPrediction.id)).all()
    assert [row.submission_id for row in stored] == [body["id"] for body in waiting]
    assert [(row.served_category, row.shadow_category) for row in stored] == [
        ("loans", "cards"),
        ("cards", "cards"),
    ]
    report = client.get("/admin/api/shadow-report", headers=admin_headers).get_json()
    assert report["scored"] == 2
