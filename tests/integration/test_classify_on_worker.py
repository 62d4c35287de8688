"""Large models off the request path, end to end: a tiny random-weight NLI model (the
code path of bart-large-mnli) measured too slow for the web tier's budget, public
submissions answered at once as "classifying", and a real worker filling every row;
`import-submissions --on-worker` hands its rows to the same worker."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from shared.classifier.identity import base_model_version
from shared.classifier.tiny import build_tiny_nli_model
from shared.cli import cli
from shared.models import Category, Submission
from shared.seed import seed_default_categories
from tests.integration.conftest import WorkerProcess, claimed_redis_database

DEADLINE = 120.0


@pytest.fixture(scope="module")
def nli_config(config, tmp_path_factory):
    with claimed_redis_database() as broker_url:  # its own queue: no other worker takes it
        yield config.with_overrides(
            broker_url=broker_url,
            result_backend=broker_url,
            base_model=build_tiny_nli_model(tmp_path_factory.mktemp("tiny-nli")),
            base_model_kind="nli",
            models_dir=str(tmp_path_factory.mktemp("nli-models")),
            classify_on="auto",
            web_classify_budget_ms=0.0,  # any measured model is "too slow" here
            worker_batch_size=4,
        )


@pytest.fixture(scope="module")
def inference_worker(nli_config, tmp_path_factory):
    worker = WorkerProcess(
        nli_config, tmp_path_factory.mktemp("inference") / "worker.log", queues="default,inference"
    )
    worker.start()
    worker.wait_ready()
    yield worker
    worker.stop()


@pytest.fixture
def nli_app(nli_config, engine, session, inference_worker):
    from web import create_app

    seed_default_categories(session)
    session.commit()
    app = create_app(nli_config)
    app.config.update(TESTING=True)
    return app


def wait_until_classified(client, headers, ids: list[int], worker) -> list[dict]:
    query = ",".join(str(submission_id) for submission_id in ids)
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:  # polling with a deadline: the worker is async
        body = client.get(f"/admin/api/classification-queue?ids={query}", headers=headers)
        items = body.get_json()["items"]
        if len(items) == len(ids) and all(item["status"] != "classifying" for item in items):
            return sorted(items, key=lambda item: item["id"])
        time.sleep(0.3)  # poll: the worker classifies the waiting rows at its own pace
    pytest.fail(f"not classified in {DEADLINE}s: {items}\n{worker.log_text()}")


def test_a_slow_model_classifies_public_submissions_on_the_worker(
    nli_app, nli_config, admin_headers, session, inference_worker
):
    analyzer = nli_app.extensions["sortloop_analyzer"]
    assert analyzer.measure() > 0 and analyzer.classifies_on_worker()
    client = nli_app.test_client()
    texts = [f"The bins on street number {n} were not emptied again" for n in range(6)]

    answers = [
        client.post("/api/submissions", json={"message": text, "contributor_type": "resident"})
        for text in texts
    ]

    assert [answer.status_code for answer in answers] == [201] * 6
    assert {(a.get_json()["category"], a.get_json()["status"]) for a in answers} == {
        (None, "classifying")
    }
    items = wait_until_classified(
        client, admin_headers, [a.get_json()["id"] for a in answers], inference_worker
    )
    names = set(session.scalars(select(Category.name)))
    assert all(item["status"] == "classified" for item in items)
    assert all(item["category"] in names for item in items)
    assert {item["model_version"] for item in items} == {base_model_version(nli_config.base_model)}
    assert "task=classify_pending" in inference_worker.log_text()


def test_an_import_on_the_worker_is_classified_there_with_progress(
    nli_app, nli_config, session, tmp_path, inference_worker
):
    path = tmp_path / "import.csv"
    path.write_text(
        "text\n" + "".join(f"Pothole number {n} on Mill Street\n" for n in range(10)),
        encoding="utf-8",
    )
    env = {
        "DATABASE_URL": nli_config.database_url,
        "CELERY_BROKER_URL": nli_config.broker_url,
        "CELERY_RESULT_BACKEND": nli_config.result_backend,
        "MODELS_DIR": nli_config.models_dir,
        "BASE_MODEL": nli_config.base_model,
        "BASE_MODEL_KIND": "nli",
    }

    result = CliRunner().invoke(
        cli, ["import-submissions", str(path), "--on-worker", "--wait-timeout", "120"], env=env
    )

    assert result.exit_code == 0, result.output
    assert "imported 10 of 10 rows (10 classified" in result.output
    session.expire_all()
    waiting = select(func.count()).select_from(Submission).where(Submission.classification_pending)
    assert session.scalar(waiting) == 0
    versions = set(session.scalars(select(Submission.model_version)))
    assert versions == {base_model_version(nli_config.base_model)}
