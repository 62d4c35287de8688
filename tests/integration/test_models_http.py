"""Model files over HTTP against PostgreSQL: export → import → deploy, compare, re-classify."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from sqlalchemy import func, select

from shared.classifier import CategorySpec, load_finetuned_classifier
from shared.model_store.layout import run_directory
from shared.models import Category, DeploymentEvent, FineTuningRun, TrainingExample
from tests.model_files import archive_files, write_adapter_directory, zip_bytes

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
]


@pytest.fixture
def app_config(models_config):
    return models_config


@pytest.fixture
def original_run(session, models_config):
    """A completed run with a published adapter and a recorded test split."""
    for name, description in CATEGORIES.items():
        session.add(Category(name=name, description=description))
    test_ids = []
    for text, label in zip(
        TEXTS,
        ["card_arrival", "exchange_rate", "lost_or_stolen_phone", "card_arrival", "exchange_rate"],
        strict=True,
    ):
        example = TrainingExample(
            message=text, corrected_category=label, contributor_type="resident"
        )
        session.add(example)
        session.flush()
        test_ids.append(example.id)
    run = FineTuningRun(
        status="completed",
        base_model="all-MiniLM-L6-v2",
        results={"accuracy": 0.8, "baseline_accuracy": 0.6, "meets_criteria": True},
        data_snapshot={"split": {"train": [], "val": [], "test": test_ids}},
    )
    session.add(run)
    session.flush()
    directory = run_directory(models_config.models_dir, run.id)
    run.model_path = str(write_adapter_directory(directory, list(CATEGORIES), seed=3))
    session.commit()
    return run


def _import(client, headers, data: bytes, name: str = "model.zip"):
    return client.post(
        "/admin/api/import-model",
        data={"archive": (io.BytesIO(data), name)},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_export_import_deploy_round_trip_predicts_the_same_labels(
    client, admin_headers, session, models_config, original_run
) -> None:
    exported = client.get(f"/admin/api/export-model/{original_run.id}", headers=admin_headers)
    assert exported.status_code == 200
    with zipfile.ZipFile(io.BytesIO(exported.data)) as archive:
        assert set(archive.namelist()) == {
            "adapter_model.safetensors",
            "adapter_config.json",
            "metrics.json",
            "training_data.json",
            "README.md",
        }

    imported = _import(client, admin_headers, exported.data)
    assert imported.status_code == 201, imported.get_json()
    new_id = imported.get_json()["run_id"]
    assert new_id != original_run.id

    deployed = client.post(f"/admin/api/deploy-model/{new_id}", headers=admin_headers)
    assert deployed.status_code == 200, deployed.get_json()
    assert deployed.get_json()["active_model"] == f"run-{new_id}"

    info = client.get("/admin/api/model-info", headers=admin_headers).get_json()
    assert (info["kind"], info["run_id"]) == ("finetuned", new_id)

    categories = [CategorySpec(name, text) for name, text in CATEGORIES.items()]
    original = load_finetuned_classifier(
        models_config.base_model, original_run.model_path, version="original"
    )
    expected = [p.label for p in original.classify(TEXTS, categories)]
    answers = [
        client.post("/api/submissions", json={"message": text, "contributor_type": "resident"})
        for text in TEXTS
    ]
    assert [a.status_code for a in answers] == [201] * len(TEXTS)
    assert {a.get_json()["model_version"] for a in answers} == {f"run-{new_id}"}
    assert [a.get_json()["category"] for a in answers] == expected

    history = client.get("/admin/api/deployments", headers=admin_headers).get_json()
    assert [event["action"] for event in history["events"]] == ["deploy", "import"]


def test_unsafe_upload_is_refused_with_nothing_written(
    client, admin_headers, session, models_config, original_run
) -> None:
    before = sorted(p.name for p in run_directory(models_config.models_dir, 0).parent.iterdir())
    evil = zip_bytes({**archive_files(list(CATEGORIES)), "../../evil.py": b"print('owned')"})

    response = _import(client, admin_headers, evil)

    assert response.status_code == 400
    assert "outside" in response.get_json()["error"]
    after = sorted(p.name for p in run_directory(models_config.models_dir, 0).parent.iterdir())
    assert after == before
    assert session.scalar(select(func.count()).select_from(FineTuningRun)) == 1
    assert session.scalar(select(func.count()).select_from(DeploymentEvent)) == 0


def test_an_archive_for_another_base_model_is_refused(
    client, admin_headers, session, original_run
) -> None:
    files = archive_files(list(CATEGORIES), base_model="facebook/bart-large-mnli")
    response = _import(client, admin_headers, zip_bytes(files))
    assert response.status_code == 400
    assert "base model" in response.get_json()["error"]


def test_compare_models_scores_both_on_the_recorded_test_split(
    client, admin_headers, original_run
) -> None:
    response = client.get(
        f"/admin/api/compare-models?a=base&b={original_run.id}", headers=admin_headers
    )

    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["num_examples"] == len(TEXTS)
    assert 0.0 <= result["a"]["accuracy"] <= 1.0 and 0.0 <= result["b"]["accuracy"] <= 1.0
    assert set(result["b"]["per_category_f1"]) == set(CATEGORIES)
    assert 0.0 <= result["p_value"] <= 1.0


def test_compare_on_the_worker_delivers_the_same_comparison(
    client, admin_headers, original_run, celery_worker_process
) -> None:
    queued = client.post(
        "/admin/api/compare-models", json={"a": "base", "b": original_run.id}, headers=admin_headers
    )
    assert queued.status_code == 202, queued.get_json()
    status_url = queued.get_json()["status_url"]

    status = None
    for _ in range(240):
        status = client.get(status_url, headers=admin_headers).get_json()
        if status["state"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.5)  # poll: the worker runs the task at its own pace (bounded loop)

    assert status["state"] == "SUCCESS", (status, celery_worker_process.log_text())
    result = status["result"]
    assert result["b"]["run_id"] == original_run.id and result["a"]["model"] == "base"
    assert result["num_examples"] == len(TEXTS)
    assert set(result["b"]["per_category_f1"]) == set(CATEGORIES)
    in_request = client.get(
        f"/admin/api/compare-models?a=base&b={original_run.id}", headers=admin_headers
    ).get_json()
    assert result["a"]["accuracy"] == in_request["a"]["accuracy"]
    assert result["b"]["accuracy"] == in_request["b"]["accuracy"]
    assert result["p_value"] == in_request["p_value"]


def test_deploy_with_a_reclassify_preview_reports_the_moves(
    client, admin_headers, session, original_run, celery_worker_process
) -> None:
    for text in TEXTS:
        client.post("/api/submissions", json={"message": text, "contributor_type": "resident"})

    deployed = client.post(
        f"/admin/api/deploy-model/{original_run.id}",
        json={"reclassify": "preview"},
        headers=admin_headers,
    )
    assert deployed.status_code == 200, deployed.get_json()
    task_id = deployed.get_json()["reclassify_task_id"]

    status = None
    for _ in range(120):
        status = client.get(f"/admin/api/reclassify/{task_id}", headers=admin_headers).get_json()
        if status["state"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.5)  # poll: the worker runs the task at its own pace (bounded loop)
    assert status["state"] == "SUCCESS", (status, celery_worker_process.log_text())
    summary = status["summary"]
    assert summary["dry_run"] is True
    assert summary["examined"] == len(TEXTS)
    assert summary["model_version"] == f"run-{original_run.id}"
    latest = client.get("/admin/api/deployments", headers=admin_headers).get_json()
    assert latest["reclassification"]["changed"] == summary["changed"]
