"""Webhooks and email recipients: checked input, events recorded with the change they
report, fanned out only to who wants them, signed bodies, and the page that manages them."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from sqlalchemy import select

from shared.deployment.audit import record_event
from shared.models import NotificationDelivery, NotificationEvent, Webhook
from shared.notifications.dispatch import (
    Job,
    dispatch_pending,
    record_attempt,
    retry_wait,
    webhook_delivery,
)
from shared.notifications.events import delivery_body, emit_event, sign
from shared.training.lifecycle import finish_run
from tests.factories import make_run
from tests.unit.test_training_pages import csrf_token, logged_in  # noqa: F401

HOOK = {"url": "https://hooks.example.org/sortloop", "events": ["run.completed"]}


def events_of(session) -> list[NotificationEvent]:
    session.expire_all()
    return list(session.scalars(select(NotificationEvent).order_by(NotificationEvent.id)))


def test_a_webhook_is_created_with_its_secret_shown_once(client, admin_headers, session) -> None:
    created = client.post(
        "/admin/api/webhooks", json={**HOOK, "secret": "s3cret-value"}, headers=admin_headers
    )
    assert created.status_code == 201
    body = created.get_json()
    assert body["url"] == HOOK["url"] and body["events"] == ["run.completed"]
    assert body["secret"] == "s3cret-value"
    listed = client.get("/admin/api/webhooks", headers=admin_headers).get_json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in listed[0]


def test_a_webhook_without_a_secret_gets_a_random_one(client, admin_headers) -> None:
    first = client.post("/admin/api/webhooks", json=HOOK, headers=admin_headers).get_json()
    second = client.post("/admin/api/webhooks", json=HOOK, headers=admin_headers).get_json()
    assert len(first["secret"]) == 64 and first["secret"] != second["secret"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**HOOK, "url": "ftp://example.org/x"}, "http:// or https://"),
        ({**HOOK, "url": "javascript:alert(1)"}, "http:// or https://"),
        ({**HOOK, "url": "https://"}, "no host"),
        ({**HOOK, "url": "https://user:pw@example.org/"}, "user name or password"),
        ({**HOOK, "url": "https://example.org:99999999/"}, "not a valid URL"),
        ({**HOOK, "url": "https://exa mple.org/"}, "spaces"),
        ({**HOOK, "url": ""}, "url"),
        ({"url": HOOK["url"]}, "events"),
        ({**HOOK, "events": []}, "events"),
        ({**HOOK, "events": ["run.exploded"]}, "events"),
        ({**HOOK, "secret": "short"}, "secret must have 8 to 200"),
    ],
)
def test_a_bad_webhook_is_refused_and_nothing_is_stored(
    client, admin_headers, session, body, message
) -> None:
    response = client.post("/admin/api/webhooks", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert session.scalars(select(Webhook)).all() == []


def test_deleting_a_webhook_removes_it_and_its_tries(client, admin_headers, session) -> None:
    hook = client.post("/admin/api/webhooks", json=HOOK, headers=admin_headers).get_json()
    event = emit_event(session, "run.completed", run=make_run(session, status="completed"))
    session.commit()
    record_attempt(session, Job("webhook", event.id, hook["id"]), 1, ok=True, will_retry=False)
    session.commit()
    assert (
        client.delete(f"/admin/api/webhooks/{hook['id']}", headers=admin_headers).status_code == 204
    )
    assert (
        client.delete(f"/admin/api/webhooks/{hook['id']}", headers=admin_headers).status_code == 404
    )
    assert (
        client.get(
            f"/admin/api/webhooks/{hook['id']}/deliveries", headers=admin_headers
        ).status_code
        == 404
    )
    session.expire_all()
    assert session.scalars(select(NotificationDelivery)).all() == []


def test_a_run_that_ends_records_its_event_with_the_run(session) -> None:
    run = make_run(session, status="training")
    session.commit()
    assert finish_run(session, run.id, "failed", error="train failed: out of memory")
    session.commit()
    (event,) = events_of(session)
    assert event.type == "run.failed"
    body = json.loads(delivery_body(event))
    assert set(body) >= {"id", "type", "time", "run", "model"}
    assert body["type"] == "run.failed" and body["id"] == event.uid
    assert body["run"]["id"] == run.id and body["run"]["error"] == "train failed: out of memory"


def test_a_rolled_back_change_leaves_no_event(session) -> None:
    run = make_run(session, status="training")
    session.commit()
    finish_run(session, run.id, "cancelled")
    session.rollback()
    assert events_of(session) == []


@pytest.mark.parametrize(
    ("action", "outcome", "expected"),
    [
        ("deploy", "ok", "model.deployed"),
        ("rollback", "ok", "model.rolled_back"),
        ("deploy", "skipped", "auto_deploy.skipped"),
        ("load", "failed", "model.load_failed"),
        ("deploy", "failed", None),
        ("import", "ok", None),
    ],
)
def test_audited_changes_become_events(session, action, outcome, expected) -> None:
    run = make_run(session, status="completed")
    record_event(
        session, action, actor="admin", outcome=outcome, run_id=run.id,
        from_version="base:minilm", to_version=run.version, detail="why",
    )  # fmt: skip
    session.commit()
    assert [event.type for event in events_of(session)] == ([expected] if expected else [])


def test_events_go_only_to_the_webhooks_that_want_them(session) -> None:
    wants = Webhook(url="https://a.example/", events=["run.completed"], secret="x" * 16)
    other = Webhook(url="https://b.example/", events=["model.deployed"], secret="y" * 16)
    session.add_all([wants, other])
    session.flush()
    completed = emit_event(session, "run.completed", run=make_run(session, status="completed"))
    test = emit_event(session, "notification.test", only_to=f"webhook:{other.id}")
    session.commit()

    jobs = dispatch_pending(session, email=True)
    session.commit()

    assert jobs == [Job("webhook", completed.id, wants.id), Job("webhook", test.id, other.id)]
    assert dispatch_pending(session, email=True) == []  # each event is fanned out once


def test_the_signature_is_the_hmac_of_the_exact_body(session) -> None:
    hook = Webhook(url="https://a.example/", events=["run.completed"], secret="k" * 20)
    session.add(hook)
    event = emit_event(session, "run.completed", run=make_run(session, status="completed"))
    session.commit()
    delivery = webhook_delivery(session, event.id, hook.id)
    expected = hmac.new(b"k" * 20, delivery.body, hashlib.sha256).hexdigest()
    assert sign(delivery.body, hook.secret) == f"sha256={expected}"
    assert delivery.body == delivery_body(event)  # the same bytes at every try


def test_each_retry_waits_twice_as_long_up_to_an_hour() -> None:
    assert [retry_wait(10, attempt) for attempt in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_wait(10, 30) == 3600


def test_an_email_recipient_needs_a_real_address(client, admin_headers) -> None:
    refused = client.post(
        "/admin/api/email-recipients",
        json={"address": "not an address", "events": ["run.failed"]},
        headers=admin_headers,
    )
    assert refused.status_code == 400
    created = client.post(
        "/admin/api/email-recipients",
        json={"address": "ops@example.org", "events": ["run.failed"]},
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert created.get_json()["address"] == "ops@example.org"


def test_the_page_adds_tests_and_deletes_a_webhook(logged_in, session) -> None:  # noqa: F811
    token = csrf_token(logged_in, "/admin/notifications")
    added = logged_in.post(
        "/admin/notifications/webhooks",
        data={"csrf_token": token, "url": "https://hooks.example.org/x", "events": ["run.failed"]},
        follow_redirects=True,
    )
    html = added.get_data(as_text=True)
    assert "Its secret (shown this once)" in html
    assert "https://hooks.example.org/x" in html
    (hook,) = session.scalars(select(Webhook)).all()

    tested = logged_in.post(
        f"/admin/notifications/webhooks/{hook.id}/test",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "A test is on its way" in tested.get_data(as_text=True)
    (event,) = events_of(session)
    assert event.type == "notification.test" and event.only_to == f"webhook:{hook.id}"

    refused = logged_in.post(
        "/admin/notifications/webhooks",
        data={"csrf_token": token, "url": "gopher://x", "events": ["run.failed"]},
        follow_redirects=True,
    )
    assert "url must start with http:// or https://" in refused.get_data(as_text=True)

    logged_in.post(f"/admin/notifications/webhooks/{hook.id}/delete", data={"csrf_token": token})
    session.expire_all()
    assert session.scalars(select(Webhook)).all() == []
