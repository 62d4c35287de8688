"""Shadow evaluation against PostgreSQL with the real classifiers: a run in shadow scores
real submissions beside the model in use, admins' reviews move its report (checked
against the rows themselves), promote deploys it with the audit trail, and the database
refuses a second shadow."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from shared.model_store.layout import run_directory
from shared.models import Category, DeploymentEvent, FineTuningRun, Shadow, utcnow
from shared.stats import mcnemar_exact_p_value
from tests.model_files import write_adapter_directory

CATEGORIES = {
    "card_arrival": "when will my new bank card arrive in the post",
    "exchange_rate": "currency exchange rates and converting money",
    "lost_or_stolen_phone": "my phone was lost or stolen",
}
TEXTS = [
    "My card still hasn't arrived after two weeks",
    "What rate do you use to convert euros to dollars?",
    "Someone stole my phone, what should I do?",
    "How long does delivery of a replacement card take?",
    "Is the exchange rate better on weekends?",
    "I left my phone on the bus",
]
# What the admins decide for the first four (the last two stay unreviewed).
DECISIONS = ["card_arrival", "exchange_rate", "lost_or_stolen_phone", "exchange_rate"]


@pytest.fixture
def app_config(models_config):
    return models_config


@pytest.fixture
def runs(session, models_config):
    for name, description in CATEGORIES.items():
        session.add(Category(name=name, description=description))
    runs = []
    for seed in (1, 2):
        run = FineTuningRun(
            status="completed", base_model="all-MiniLM-L6-v2", results={"meets_criteria": True}
        )
        session.add(run)
        session.flush()
        directory = run_directory(models_config.models_dir, run.id)
        run.model_path = str(write_adapter_directory(directory, list(CATEGORIES), seed=seed))
        runs.append(run)
    session.commit()
    return runs


def _figures_from_rows(session, shadow_id: int) -> dict:
    """The report recomputed in plain Python from the stored rows (independent of the SQL)."""
    rows = session.execute(
        text(
            "SELECT p.served_category, p.shadow_category, s.category, s.reviewed_at "
            "FROM shadow_predictions p JOIN submissions s ON s.id = p.submission_id "
            "WHERE p.shadow_id = :shadow"
        ),
        {"shadow": shadow_id},
    ).all()
    reviewed = [row for row in rows if row.reviewed_at is not None]
    active_only = sum(r.served_category == r.category != r.shadow_category for r in reviewed)
    shadow_only = sum(r.shadow_category == r.category != r.served_category for r in reviewed)
    return {
        "scored": len(rows),
        "agreement": round(sum(r.served_category == r.shadow_category for r in rows) / len(rows), 4),
        "reviewed": len(reviewed),
        "accuracy_active": round(sum(r.served_category == r.category for r in reviewed) / len(reviewed), 4),
        "accuracy_shadow": round(sum(r.shadow_category == r.category for r in reviewed) / len(reviewed), 4),
        "active_only_right": active_only,
        "shadow_only_right": shadow_only,
        "p_value": mcnemar_exact_p_value(active_only, shadow_only),
    }  # fmt: skip


def test_a_shadow_scores_real_submissions_and_reviews_move_its_report(
    app, client, admin_headers, session, runs
) -> None:
    first, _ = runs
    started = client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers)
    assert started.status_code == 201, started.get_json()
    app.extensions["sortloop_analyzer"].refresh()  # the watcher's job in a serving process

    ids = []
    for message in TEXTS:
        answer = client.post(
            "/api/submissions", json={"message": message, "contributor_type": "resident"}
        )
        assert answer.status_code == 201
        assert set(answer.get_json()) == {"id", "category", "confidence", "model_version", "status"}
        assert answer.get_json()["model_version"].startswith("base:")  # the public's model
        ids.append(answer.get_json()["id"])
        served_version = answer.get_json()["model_version"]
    before = client.get("/admin/api/shadow-report", headers=admin_headers).get_json()
    assert (before["scored"], before["reviewed"], before["p_value"]) == (6, 0, None)

    for submission_id, category in zip(ids, DECISIONS, strict=False):
        decided = client.post(
            f"/admin/api/submissions/{submission_id}/category",
            json={"category": category},
            headers=admin_headers,
        )
        assert decided.status_code == 200

    report = client.get("/admin/api/shadow-report", headers=admin_headers).get_json()
    shadow_id = session.scalar(select(Shadow.id).where(Shadow.run_id == first.id))
    expected = _figures_from_rows(session, shadow_id)
    assert {key: report[key] for key in expected} == expected
    assert report["reviewed"] == 4
    assert report["run_id"] == first.id
    versions = session.execute(
        text("SELECT DISTINCT served_version, shadow_version FROM shadow_predictions")
    ).all()
    assert [tuple(v) for v in versions] == [(served_version, f"run-{first.id}")]


def test_one_shadow_at_a_time_in_the_api_and_in_the_database(
    client, admin_headers, session, runs
) -> None:
    first, second = runs
    assert (
        client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers).status_code == 201
    )

    refused = client.post(f"/admin/api/shadow-model/{second.id}", headers=admin_headers)

    assert refused.status_code == 409
    assert "already in shadow" in refused.get_json()["error"]
    session.add(Shadow(run_id=second.id, started_at=utcnow(), active_lock=True))
    with pytest.raises(IntegrityError):  # the database refuses a second one by itself
        session.commit()
    session.rollback()
    assert session.scalars(select(Shadow.run_id)).all() == [first.id]


def test_promote_deploys_through_the_gate_and_writes_the_audit_events(
    client, admin_headers, session, runs
) -> None:
    first, _ = runs
    client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers)

    promoted = client.post(f"/admin/api/deploy-model/{first.id}", headers=admin_headers)

    assert promoted.status_code == 200, promoted.get_json()
    assert client.get("/admin/api/shadow-report", headers=admin_headers).status_code == 404
    session.expire_all()
    assert session.get(FineTuningRun, first.id).is_active_model is True
    events = session.execute(
        select(DeploymentEvent.action, DeploymentEvent.to_version, DeploymentEvent.detail)
        .where(DeploymentEvent.run_id == first.id)
        .order_by(DeploymentEvent.id)
    ).all()
    assert [tuple(event) for event in events] == [
        ("shadow", f"run-{first.id}", "put in shadow beside the model in use"),
        ("deploy", f"run-{first.id}", None),
        ("shadow", None, "shadow promoted"),
    ]
    shadow = session.scalar(select(Shadow))
    assert (shadow.end_reason, shadow.active_lock) == ("promoted", None)
    assert (
        client.post(f"/admin/api/shadow-model/{first.id}", headers=admin_headers).status_code == 409
    )
