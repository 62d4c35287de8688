"""One readiness rule: the dashboard, start-training and the worker's data check agree.

The case of issue 19: 21 examples, and category ``d`` has 3 texts of which 2 are the
same. Training drops the copy, which leaves ``d`` with 2 examples: too few to train.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import sessionmaker

from shared.models import FineTuningRun
from shared.training.readiness import check_readiness
from tests.factories import make_category, make_run, make_training_example
from worker import pipeline

TOPICS = {
    "a": "the bus number {} was late again at the central stop",
    "b": "pothole number {} on the main road is getting deeper",
    "c": "the park bench number {} by the pond is broken",
}
REASON = "Category 'd' has 2 example(s); at least 3 are needed to train."


@pytest.fixture
def twenty_one_examples_with_a_copy_in_d(session) -> list[int]:
    for name in ("a", "b", "c", "d"):
        make_category(session, name=name, description=f"topic {name}")
    ids = [
        make_training_example(session, message=text.format(n), corrected_category=name).id
        for name, text in TOPICS.items()
        for n in range(6)
    ]
    for message in ("the street lamp on my road is out", "the street lamp on my road is out"):
        ids.append(make_training_example(session, message=message, corrected_category="d").id)
    ids.append(
        make_training_example(
            session, message="a lamp post near the school flickers", corrected_category="d"
        ).id
    )
    session.commit()
    assert len(ids) == 21
    return ids


def test_readiness_judges_the_data_after_duplicates_are_dropped():
    rows = [(1, "the street lamp is out", "d"), (2, "the street lamp is out", "d")]
    rows += [(3, "a lamp post flickers at night", "d")]
    rows += [(10 + n, f"bus number {n} was late", "a") for n in range(6)]
    readiness = check_readiness(rows, minimum=5)
    assert readiness.report.ok  # every example: d has 3
    assert not readiness.ready
    assert readiness.excluded["duplicate"] == [2]
    assert readiness.usable_per_category["d"] == 2
    assert REASON in readiness.reason()


def test_dashboard_start_training_and_worker_refuse_the_same_data(
    twenty_one_examples_with_a_copy_in_d, client, admin_headers, session, config
):
    stats = client.get("/admin/api/training-stats", headers=admin_headers).get_json()
    assert stats["ready"] is False
    assert any(REASON in error for error in stats["quality"]["blocking_errors"])

    response = client.post("/admin/api/start-training", json={}, headers=admin_headers)
    assert response.status_code == 400
    assert REASON in response.get_json()["error"]
    assert session.query(FineTuningRun).count() == 0

    # A run that got past the web anyway (an older web, a changed setting) stops at the
    # worker's data check, for the same reason.
    run = make_run(
        session,
        status="queued",
        data_snapshot={
            "example_ids": twenty_one_examples_with_a_copy_in_d,
            "categories": [{"name": name, "description": name} for name in "abcd"],
        },
        training_config={"split": [0.7, 0.15, 0.15]},
    )
    session.commit()
    sessions = sessionmaker(bind=session.get_bind(), expire_on_commit=False)
    outcome = pipeline.run_step(
        sessions, run.id, pipeline.VALIDATE, models_dir=config.models_dir,
        heartbeat_timeout_seconds=60,
    )  # fmt: skip
    assert outcome["outcome"] == "failed"
    assert REASON in outcome["error"]
    session.expire_all()
    assert session.get(FineTuningRun, run.id).status == "failed"
