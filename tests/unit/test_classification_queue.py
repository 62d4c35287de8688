"""Large models off the request path (issue 21): with a model too slow for the web tier,
a public submission is stored at once as "classifying" and a worker classifies the
waiting ones in batches; imports can hand their rows to the worker the same way."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from shared.deployment.active_model import ActiveModel, Classification
from shared.models import Submission
from shared.seed import seed_default_categories
from shared.submissions.classification_queue import classify_pending, queue_state
from shared.submissions.importing import ImportRow, import_rows
from tests.unit.fakes import KeywordClassifier
from web.analyzer import SubmissionAnalyzer


class SlowClassifier(KeywordClassifier):
    """A model that takes ``seconds`` per call, as a large cross-encoder does on a CPU."""

    def __init__(self, seconds: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def classify(self, texts, categories):
        time.sleep(self.seconds)  # a busy model: this is what the measurement must see
        return super().classify(texts, categories)


class CountingModel:
    """What the worker's ActiveModel offers: classify a batch, with a version."""

    def __init__(self, classifier=None) -> None:
        self.classifier = classifier or KeywordClassifier()
        self.batch_sizes: list[int] = []

    def classify(self, texts, categories) -> Classification:
        self.batch_sizes.append(len(texts))
        return Classification(self.classifier.classify(texts, categories), "base:fake-model")


def analyzer_for(app, classifier, **options) -> SubmissionAnalyzer:
    active = ActiveModel(
        app.config["SORTLOOP"],
        app.extensions["sortloop_sessions"],
        load_base=lambda _config: classifier,
    )
    analyzer = SubmissionAnalyzer(active, **options)
    app.extensions["sortloop_analyzer"] = analyzer
    return analyzer


@pytest.fixture
def categories(session):
    seed_default_categories(session)
    session.commit()


def submit(client, message="The bins on Mill Street were not emptied"):
    return client.post(
        "/api/submissions", json={"message": message, "contributor_type": "resident"}
    )


def test_with_classification_on_the_worker_a_submission_is_stored_at_once_as_classifying(
    app, session, categories
):
    model = KeywordClassifier()
    analyzer_for(app, model, classify_on="worker")

    response = submit(app.test_client())

    assert response.status_code == 201
    body = response.get_json()
    assert (body["category"], body["status"]) == (None, "classifying")
    assert model.calls == 0, "the request path did not touch the model"
    stored = session.get(Submission, body["id"])
    assert stored.classification_pending and stored.category is None


def test_a_burst_of_waiting_submissions_is_announced_by_one_task_not_one_each(
    app, session, categories
):
    """Each task drains every waiting row: twenty submissions in a burst send one task
    at once and one more when the interval is over (after the last of them), not 20."""
    from web.tasks_client import Debounced

    sent: list[float] = []
    done = threading.Event()

    def send() -> None:
        sent.append(time.monotonic())
        if len(sent) == 2:
            done.set()

    app.extensions["sortloop_classify_announcer"] = Debounced(send, 0.3)
    analyzer_for(app, KeywordClassifier(), classify_on="worker")
    client = app.test_client()
    answered = [submit(client).status_code for _ in range(20)]
    last_answer = time.monotonic()

    assert answered == [201] * 20
    assert done.wait(5), "the trailing task was sent"
    assert len(sent) == 2
    assert sent[1] >= last_answer, "the second task starts after the last submission"


def test_debounced_sends_at_once_then_at_most_once_per_interval():
    from web.tasks_client import Debounced

    class Clock:
        now = 100.0

        def __call__(self) -> float:
            return self.now

    clock, sent = Clock(), []
    fired = threading.Event()

    def send() -> None:
        sent.append(clock.now)
        if len(sent) == 2:
            fired.set()

    debounced = Debounced(send, 0.2, clock=clock)
    assert debounced() is True and sent == [100.0]
    clock.now += 0.05
    assert debounced() is False  # within the interval: a timer will send
    assert debounced() is False  # already covered by that timer
    assert fired.wait(5) and len(sent) == 2
    clock.now += 10
    assert debounced() is True and len(sent) == 3  # quiet for long: at once again


def test_classified_in_the_request_the_answer_says_classified(app, categories):
    analyzer_for(app, KeywordClassifier(), classify_on="web")
    body = submit(app.test_client()).get_json()
    assert body["status"] == "classified" and body["category"] is not None


def test_auto_measures_the_model_and_sends_a_slow_one_to_the_worker(app, categories):
    analyzer = analyzer_for(app, SlowClassifier(0.05), classify_on="auto", budget_ms=20)
    assert not analyzer.classifies_on_worker(), "until measured, classify here"

    assert analyzer.measure() >= 50
    assert analyzer.classifies_on_worker()
    assert submit(app.test_client()).get_json()["status"] == "classifying"
    info = app.test_client().get(
        "/admin/api/model-info", headers={"Authorization": "Bearer unit-token"}
    )
    assert info.get_json()["classification"]["on"] == "worker"


def test_auto_keeps_a_fast_model_on_the_request_path(app, categories):
    analyzer = analyzer_for(app, KeywordClassifier(), classify_on="auto", budget_ms=1000)
    analyzer.measure()
    assert not analyzer.classifies_on_worker()
    assert submit(app.test_client()).get_json()["status"] == "classified"


def test_the_worker_classifies_every_waiting_submission_in_batches(app, session, categories):
    analyzer_for(app, KeywordClassifier(), classify_on="worker")
    client = app.test_client()
    ids = [submit(client, f"Pothole number {n} on the road").get_json()["id"] for n in range(7)]
    model = CountingModel()
    seen: list[tuple[int, int]] = []

    done = classify_pending(session, model, batch_size=3, progress=lambda d, t: seen.append((d, t)))

    assert done == 7 and model.batch_sizes == [3, 3, 1]  # a fast model: full batches
    assert seen[-1] == (7, 7)
    session.expire_all()
    for submission_id in ids:
        stored = session.get(Submission, submission_id)
        assert not stored.classification_pending
        assert stored.category is not None and stored.model_version == "base:fake-model"
    assert queue_state(session)["pending"] == 0


def test_a_slow_model_classifies_in_small_batches_so_rows_arrive_as_it_goes(
    app, session, categories
):
    """A cross-encoder on a CPU takes seconds a text: a batch of 256 would show nothing
    for minutes. After a first batch of 8 the batches are sized to take BATCH_SECONDS."""
    from shared.submissions import classification_queue

    analyzer_for(app, KeywordClassifier(), classify_on="worker")
    client = app.test_client()
    for n in range(30):
        submit(client, f"Streetlight number {n} is out")

    class Clock:
        """Two seconds of model time per text."""

        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()

    class SlowModel(CountingModel):
        def classify(self, texts, categories):
            clock.now += 2.0 * len(texts)
            return super().classify(texts, categories)

    model = SlowModel()
    done = classify_pending(session, model, batch_size=256, clock=clock)

    assert done == 30
    per_batch = int(classification_queue.BATCH_SECONDS / 2.0)
    assert model.batch_sizes[0] == classification_queue.FIRST_BATCH
    assert set(model.batch_sizes[1:-1]) == {per_batch}
    assert sum(model.batch_sizes) == 30


def test_a_failing_model_marks_the_waiting_rows_failed_instead_of_retrying_for_ever(
    app, session, categories
):
    analyzer_for(app, KeywordClassifier(), classify_on="worker")
    submission_id = submit(app.test_client()).get_json()["id"]

    assert classify_pending(session, CountingModel(KeywordClassifier(fail=True))) == 1

    session.expire_all()
    stored = session.get(Submission, submission_id)
    assert not stored.classification_pending and stored.category is None
    assert "exploded" in stored.classification_error


def test_an_admin_sees_the_queue_and_each_row_arriving(app, session, categories):
    analyzer_for(app, KeywordClassifier(), classify_on="worker")
    client = app.test_client()
    headers = {"Authorization": "Bearer unit-token"}
    submission_id = submit(client).get_json()["id"]

    page = client.get("/admin/submissions", headers=headers).get_data(as_text=True)
    assert "1 submission waiting for the worker" in page
    assert f'data-pending="{submission_id}"' in page
    waiting = client.get(f"/admin/api/classification-queue?ids={submission_id}", headers=headers)
    assert waiting.get_json()["pending"] == 1
    assert waiting.get_json()["items"][0]["status"] == "classifying"

    classify_pending(session, CountingModel())

    done = client.get(f"/admin/api/classification-queue?ids={submission_id}", headers=headers)
    assert done.get_json()["pending"] == 0
    assert done.get_json()["items"][0]["status"] == "classified"
    assert done.get_json()["items"][0]["predicted_category"]


def test_an_import_handed_to_the_worker_stores_rows_without_classifying(
    session, categories, config
):
    rows = [ImportRow(line=n, text=f"Streetlight {n} is broken") for n in range(2, 7)]
    rows.append(ImportRow(line=7, text=""))

    report = import_rows(session, None, rows, config, defer=True, batch_size=2)

    assert (report.imported, report.classified, len(report.bad_rows)) == (5, 0, 1)
    assert len(report.waiting_ids) == 5
    pending = select(func.count()).select_from(Submission).where(Submission.classification_pending)
    assert session.scalar(pending) == 5
