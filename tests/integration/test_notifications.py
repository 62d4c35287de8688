"""Notifications end to end: the real API, PostgreSQL, Redis, a real Celery worker on the
`default` queue, a real HTTP receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from aiosmtpd.controller import Controller

from tests.integration.conftest import WorkerProcess, claimed_redis_database
from tests.webhook_receiver import Receiver, free_port, signature_is_valid

DEADLINE = 90.0  # seconds a delivery may take on a busy two-core machine
SECRET = "integration-webhook-secret"


class Mailbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(
            {"to": list(envelope.rcpt_tos), "from": envelope.mail_from,
             "content": envelope.content.decode("utf-8", "replace")}
        )  # fmt: skip
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def notify_config(config, mailbox):
    with claimed_redis_database() as broker_url:
        yield config.with_overrides(
            broker_url=broker_url,
            result_backend=broker_url,
            notify_retry_seconds=0.5,  # 0.5 s, 1 s, 2 s, ...: retries within the test
            notify_max_attempts=8,
            webhook_timeout_seconds=5.0,
            smtp_host="127.0.0.1",
            smtp_port=mailbox.port,
            smtp_tls="none",
            smtp_from="sortloop@test.example",
        )


@pytest.fixture(scope="module")
def worker(notify_config, tmp_path_factory):
    process = WorkerProcess(
        notify_config, tmp_path_factory.mktemp("notify-worker") / "worker.log", queues="default"
    )
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(notify_config, engine, worker):
    from web import create_app

    app = create_app(notify_config)
    app.config.update(TESTING=True)
    return app.test_client()


def wait_for(what: str, found: Callable[[], object], worker: WorkerProcess):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen in {DEADLINE}s\n{worker.log_text()}")


def add_webhook(client, headers, url: str, events: list[str]) -> int:
    response = client.post(
        "/admin/api/webhooks", json={"url": url, "events": events, "secret": SECRET},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def tries(client, headers, webhook_id: int) -> list[dict]:
    response = client.get(f"/admin/api/webhooks/{webhook_id}/deliveries", headers=headers)
    assert response.status_code == 200
    return list(reversed(response.get_json()["items"]))  # oldest first


def test_a_test_event_reaches_the_receiver_signed(client, admin_headers, worker) -> None:
    receiver = Receiver().start()
    try:
        webhook_id = add_webhook(client, admin_headers, receiver.url, ["run.completed"])
        sent = client.post(f"/admin/api/webhooks/{webhook_id}/test", headers=admin_headers)
        assert sent.status_code == 202

        wait_for("the test delivery", lambda: receiver.received, worker)
    finally:
        receiver.stop()
    (delivery,) = receiver.received
    assert signature_is_valid(
        delivery["body"], delivery["headers"].get("X-Sortloop-Signature"), SECRET
    )
    (event,) = receiver.events()
    assert event["id"] == sent.get_json()["event_id"]
    assert event["type"] == "notification.test"
    assert set(event) >= {"id", "type", "time", "run", "model"}
    (attempt,) = wait_for(
        "the recorded try", lambda: tries(client, admin_headers, webhook_id), worker
    )
    assert attempt["ok"] is True and attempt["status_code"] == 200 and attempt["attempt"] == 1


def test_a_receiver_that_is_down_gets_the_event_after_recorded_retries(
    client, admin_headers, worker
) -> None:
    receiver = Receiver()  # not listening yet: every POST is refused
    webhook_id = add_webhook(client, admin_headers, receiver.url, ["model.rolled_back"])

    rollback = client.post("/admin/api/rollback-model", headers=admin_headers)
    assert rollback.status_code == 200  # the dead receiver held nothing up

    wait_for("two failed tries", lambda: len(tries(client, admin_headers, webhook_id)) >= 2, worker)
    receiver.start()
    try:
        wait_for(
            "the delivery after the receiver came back",
            lambda: any(item["ok"] for item in tries(client, admin_headers, webhook_id)),
            worker,
        )
    finally:
        receiver.stop()

    attempts = tries(client, admin_headers, webhook_id)
    *failed, delivered = attempts
    assert [item["attempt"] for item in attempts] == list(range(1, len(attempts) + 1))
    assert len(failed) >= 2
    assert all(not item["ok"] and item["will_retry"] for item in failed)
    assert all(item["error"].startswith("no answer") for item in failed)
    assert delivered["ok"] and delivered["status_code"] == 200 and not delivered["will_retry"]
    assert len({item["event_id"] for item in attempts}) == 1  # the same event each time
    (delivery,) = receiver.received
    assert signature_is_valid(
        delivery["body"], delivery["headers"].get("X-Sortloop-Signature"), SECRET
    )
    (event,) = receiver.events()
    assert event["type"] == "model.rolled_back"
    assert event["id"] == delivered["event_id"]
    assert event["model"]["version"].startswith("base:")


def test_an_email_arrives_at_the_smtp_server(client, admin_headers, worker, mailbox) -> None:
    mailbox.messages.clear()
    added = client.post(
        "/admin/api/email-recipients",
        json={"address": "ops@example.org", "events": ["model.rolled_back"]},
        headers=admin_headers,
    )
    assert added.status_code == 201
    assert client.post("/admin/api/rollback-model", headers=admin_headers).status_code == 200

    (message,) = wait_for("the email", lambda: mailbox.messages, worker)

    assert message["to"] == ["ops@example.org"]
    assert message["from"] == "sortloop@test.example"
    assert "Subject: [Sortloop] rolled back to base:" in message["content"]
    assert '"type":"model.rolled_back"' in message["content"]
    recipient_id = added.get_json()["id"]
    path = f"/admin/api/email-recipients/{recipient_id}/deliveries"
    items = wait_for(
        "the recorded try", lambda: client.get(path, headers=admin_headers).get_json()["items"],
        worker,
    )  # fmt: skip
    assert [(item["ok"], item["event_type"]) for item in items] == [(True, "model.rolled_back")]


def test_the_daily_shadow_report_reaches_a_receiver(
    client, admin_headers, worker, notify_config, session, tmp_path
) -> None:
    """The beat's task, run by the real worker: while a run is in shadow it sends
    shadow.report with the report as the payload (once a day: a second tick sends nothing)."""
    from celery import Celery

    from shared import task_names
    from shared.models import Category, FineTuningRun
    from tests.model_files import write_adapter_directory

    labels = ["card_arrival", "exchange_rate"]
    for name in labels:
        session.add(Category(name=name, description=name.replace("_", " ")))
    run = FineTuningRun(status="completed", base_model="all-MiniLM-L6-v2", results={})
    session.add(run)
    session.flush()
    run.model_path = str(write_adapter_directory(tmp_path / "shadow-model", labels))
    session.commit()
    celery = Celery(broker=notify_config.broker_url, backend=notify_config.result_backend)
    celery.conf.update(**task_names.messaging_settings())
    receiver = Receiver().start()
    try:
        add_webhook(client, admin_headers, receiver.url, ["shadow.report"])
        started = client.post(f"/admin/api/shadow-model/{run.id}", headers=admin_headers)
        assert started.status_code == 201, started.get_json()

        sent = celery.send_task(task_names.SHADOW_REPORT, queue=task_names.DEFAULT_QUEUE)
        assert sent.get(timeout=DEADLINE)["run_id"] == run.id
        wait_for("the shadow report", lambda: receiver.received, worker)
        again = celery.send_task(task_names.SHADOW_REPORT, queue=task_names.DEFAULT_QUEUE)
        assert again.get(timeout=DEADLINE) is None  # already sent today
    finally:
        receiver.stop()
        celery.close()
    (delivery,) = receiver.received
    assert signature_is_valid(
        delivery["body"], delivery["headers"].get("X-Sortloop-Signature"), SECRET
    )
    (event,) = receiver.events()
    assert event["type"] == "shadow.report"
    assert event["run"]["id"] == run.id
    assert event["data"]["run_id"] == run.id
    assert event["data"]["scored"] == 0
    assert {"since", "agreement", "accuracy_active", "accuracy_shadow", "p_value"} <= set(
        event["data"]
    )
