"""The model endpoints of the admin API: auth, status codes and error shapes."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from shared.model_store.layout import run_directory
from shared.models import DeploymentEvent, FineTuningRun
from tests.factories import make_category, make_run
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
