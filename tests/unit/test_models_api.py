"""The model endpoints of the admin API: auth, status codes and error shapes."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from shared.model_store.layout import run_directory
from shared.models import DeploymentEvent, FineTuningRun
from tests.factories import make_category, make_run, make_training_example
from tests.model_files import archive_files, write_adapter_directory, zip_bytes

LABELS = ["cards", "loans"]


@pytest.fixture
def published(session, config):
    for name in LABELS:
        make_category(session, name=name)
    run = make_run(session, status="completed", results={"meets_criteria": False})
    run.model_path = str(write_adapter_directory(run_directory(config.models_dir, run.id), LABELS))
    session.commit()
    return run


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/admin/api/deploy-model/1"),
        ("post", "/admin/api/rollback-model"),
        ("get", "/admin/api/deployments"),
        ("get", "/admin/api/export-model/1"),
        ("post", "/admin/api/import-model"),
        ("get", "/admin/api/compare-models?a=base&b=1"),
        ("post", "/admin/api/compare-models"),
        ("get", "/admin/api/compare-models/abc-123"),
        ("post", "/admin/api/reclassify"),
    ],
)
def test_model_endpoints_need_an_admin(client, method, path) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_deploy_refuses_a_run_below_the_criteria_unless_forced(
    client, admin_headers, published
) -> None:
    refused = client.post(f"/admin/api/deploy-model/{published.id}", headers=admin_headers)
    assert refused.status_code == 409
    assert "force" in refused.get_json()["error"]

    forced = client.post(
        f"/admin/api/deploy-model/{published.id}", json={"force": True}, headers=admin_headers
    )
    assert forced.status_code == 200
    assert forced.get_json()["active_model"] == f"run-{published.id}"


def test_deploy_with_a_malformed_force_flag_is_a_400(client, admin_headers, published) -> None:
    response = client.post(
        f"/admin/api/deploy-model/{published.id}", json={"force": "yes"}, headers=admin_headers
    )
    assert response.status_code == 400


def test_deploy_of_an_unknown_run_is_a_404(client, admin_headers) -> None:
    assert client.post("/admin/api/deploy-model/999", headers=admin_headers).status_code == 404


def test_rollback_answers_base_and_history_shows_it(client, admin_headers, published) -> None:
    client.post(
        f"/admin/api/deploy-model/{published.id}", json={"force": True}, headers=admin_headers
    )

    response = client.post("/admin/api/rollback-model", headers=admin_headers)

    assert response.get_json()["active_model"] == "base"
    history = client.get("/admin/api/deployments", headers=admin_headers).get_json()
    assert [event["action"] for event in history["events"]] == ["rollback", "deploy"]
    assert history["models"][0]["run_id"] == published.id


def test_export_streams_a_zip(client, admin_headers, published) -> None:
    response = client.get(f"/admin/api/export-model/{published.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.data[:2] == b"PK"


def test_import_without_a_file_is_a_400(client, admin_headers) -> None:
    response = client.post("/admin/api/import-model", headers=admin_headers)
    assert response.status_code == 400
    assert "archive" in response.get_json()["error"]


def test_unsafe_import_is_a_400_and_leaves_nothing(
    client, admin_headers, session, published
) -> None:
    bad = zip_bytes({**archive_files(LABELS), "../evil.json": b"{}"})
    response = client.post(
        "/admin/api/import-model",
        data={"archive": (io.BytesIO(bad), "evil.zip")},
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "outside" in response.get_json()["error"]
    assert session.scalar(select(func.count()).select_from(FineTuningRun)) == 1
    assert session.scalar(select(func.count()).select_from(DeploymentEvent)) == 0


def test_compare_needs_both_models(client, admin_headers) -> None:
    response = client.get("/admin/api/compare-models?a=base", headers=admin_headers)
    assert response.status_code == 400


def test_reclassify_answers_503_when_the_broker_is_down(client, admin_headers) -> None:
    response = client.post("/admin/api/reclassify", json={"dry_run": True}, headers=admin_headers)
    assert response.status_code == 503


def test_models_page_shows_the_panel_and_the_import_form(client, admin_headers) -> None:
    page = client.get("/admin/models", headers=admin_headers)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "data-model-panel" in html
    assert 'name="archive"' in html
    assert "models.js" in html


# --- comparison on the worker: enqueue by name, poll the result ------------------------


@pytest.fixture
def queue(app):
    """The web client's Celery on an in-memory broker and result backend: what web sends
    is read back from the `default` queue, and results are stored as a worker would."""
    from celery import Celery

    from shared import task_names

    client = Celery("sortloop-web-test", broker="memory://", backend="cache+memory://")
    client.conf.update(**task_names.messaging_settings())
    app.extensions["sortloop_celery"] = client
    yield client
    client.close()


def _queued_messages(client) -> list:
    with client.connection_for_read() as connection:
        simple = connection.SimpleQueue("default")
        messages = []
        while True:
            try:
                message = simple.get(block=False)
            except simple.Empty:
                break
            messages.append(message)
            message.ack()
        simple.close()
    return messages


@pytest.fixture
def comparable(session, published):
    """The published run with a recorded test split in its categories."""
    ids = [
        make_training_example(session, message=text, corrected_category=label).id
        for text, label in [("where is my card", "cards"), ("a loan please", "loans")]
    ]
    published.data_snapshot = {"split": {"train": [], "val": [], "test": ids}}
    session.commit()
    return published


def test_compare_on_the_worker_is_queued_by_name_and_polled(
    client, admin_headers, comparable, queue
) -> None:
    response = client.post(
        "/admin/api/compare-models", json={"a": "base", "b": comparable.id}, headers=admin_headers
    )

    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert (answer["a"], answer["b"]) == ("base", str(comparable.id))
    assert answer["status_url"] == f"/admin/api/compare-models/{answer['task_id']}"
    assert response.headers["Location"] == answer["status_url"]
    [message] = _queued_messages(queue)
    assert message.headers["task"] == "sortloop.compare_models"
    assert message.headers["id"] == answer["task_id"]
    assert message.decode()[1] == {"a": "base", "b": str(comparable.id)}

    waiting = client.get(answer["status_url"], headers=admin_headers).get_json()
    assert waiting["state"] == "PENDING" and waiting["result"] is None

    result = {"a": {"accuracy": 0.5}, "b": {"accuracy": 1.0}, "p_value": 1.0}
    queue.backend.store_result(answer["task_id"], result, "SUCCESS")
    done = client.get(answer["status_url"], headers=admin_headers).get_json()
    assert done["state"] == "SUCCESS"
    assert done["result"] == result


def test_a_failed_comparison_reports_its_error(client, admin_headers, queue) -> None:
    queue.backend.mark_as_failure("abc-123", ValueError("a model could not be loaded"))
    status = client.get("/admin/api/compare-models/abc-123", headers=admin_headers).get_json()
    assert status["state"] == "FAILURE"
    assert "could not be loaded" in status["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"a": "base"}, 400, "give the models"),
        ({"a": "base", "b": "latest"}, 400, "not a run id"),
        ({"a": "nope", "b": "1"}, 400, "not a run id"),
        ({"a": "base", "b": "999"}, 404, "does not exist"),
    ],
)
def test_compare_on_the_worker_refuses_bad_input_and_queues_nothing(
    client, admin_headers, comparable, queue, body, status, words
) -> None:
    response = client.post("/admin/api/compare-models", json=body, headers=admin_headers)
    assert response.status_code == status
    assert words in response.get_json()["error"]
    assert _queued_messages(queue) == []


def test_a_run_without_a_test_split_is_refused_before_queueing(
    client, admin_headers, published, queue
) -> None:
    response = client.post(
        "/admin/api/compare-models", json={"b": str(published.id)}, headers=admin_headers
    )
    assert response.status_code == 400
    assert "no recorded test examples" in response.get_json()["error"]
    assert _queued_messages(queue) == []


def test_compare_on_the_worker_answers_503_when_the_broker_is_down(
    client, admin_headers, comparable
) -> None:
    response = client.post(
        "/admin/api/compare-models", json={"b": str(comparable.id)}, headers=admin_headers
    )
    assert response.status_code == 503


def test_a_malformed_task_id_is_a_400(client, admin_headers) -> None:
    response = client.get("/admin/api/compare-models/not%20an%20id", headers=admin_headers)
    assert response.status_code == 400
