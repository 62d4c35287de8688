"""Webhooks and email recipients: add, list, delete, send a test, read the tries.

Nothing here sends anything: a test is an event row, and the worker's `default` queue
delivers it (``worker.tasks_notifications``)."""

from __future__ import annotations

from flask import jsonify

from shared.notifications.subscriptions import (
    create_email_recipient,
    create_webhook,
    delete_email_recipient,
    delete_webhook,
    deliveries,
    get_email_recipient,
    get_webhook,
    list_email_recipients,
    list_webhooks,
    recipient_to_dict,
    send_test,
    webhook_to_dict,
)
from web import api_requests, api_schemas
from web.admin_api import bp
from web.auth import admin_required, current_actor
from web.db import get_session


@bp.get("/webhooks")
@bp.alt_response(200, schema=api_schemas.Items, description="the webhooks", success=True)
@admin_required
def webhooks():
    session = get_session()
    return jsonify({"items": [webhook_to_dict(hook, session) for hook in list_webhooks(session)]})


@bp.post("/webhooks")
@bp.alt_response(
    201,
    schema=api_schemas.WebhookCreated,
    description="the webhook, with its secret (shown this once)",
    success=True,
)
@admin_required
@bp.arguments(api_requests.NewWebhook)
def add_webhook(body: dict):
    webhook, secret = create_webhook(
        get_session(), body["url"], body["events"], body["secret"], current_actor()
    )
    return jsonify({**webhook_to_dict(webhook), "secret": secret}), 201


@bp.delete("/webhooks/<int:webhook_id>")
@bp.alt_response(204, description="deleted, with its delivery record", success=True)
@admin_required
def remove_webhook(webhook_id: int):
    delete_webhook(get_session(), webhook_id)
    return "", 204


@bp.post("/webhooks/<int:webhook_id>/test")
@bp.alt_response(
    202, schema=api_schemas.TestQueued, description="a test event is on its way", success=True
)
@admin_required
def test_webhook(webhook_id: int):
    event = send_test(get_session(), "webhook", webhook_id)
    return jsonify({"event_id": event.uid}), 202


@bp.get("/webhooks/<int:webhook_id>/deliveries")
@bp.alt_response(200, schema=api_schemas.Items, description="every try, newest first", success=True)
@admin_required
def webhook_deliveries(webhook_id: int):
    session = get_session()
    get_webhook(session, webhook_id)
    return jsonify({"items": deliveries(session, "webhook", webhook_id)})


@bp.get("/email-recipients")
@bp.alt_response(200, schema=api_schemas.Items, description="the recipients", success=True)
@admin_required
def email_recipients():
    session = get_session()
    recipients = list_email_recipients(session)
    return jsonify({"items": [recipient_to_dict(item, session) for item in recipients]})


@bp.post("/email-recipients")
@bp.alt_response(201, schema=api_schemas.EmailRecipient, description="the recipient", success=True)
@admin_required
@bp.arguments(api_requests.NewEmailRecipient)
def add_email_recipient(body: dict):
    recipient = create_email_recipient(
        get_session(), body["address"], body["events"], current_actor()
    )
    return jsonify(recipient_to_dict(recipient)), 201


@bp.delete("/email-recipients/<int:recipient_id>")
@bp.alt_response(204, description="deleted, with its delivery record", success=True)
@admin_required
def remove_email_recipient(recipient_id: int):
    delete_email_recipient(get_session(), recipient_id)
    return "", 204


@bp.post("/email-recipients/<int:recipient_id>/test")
@bp.alt_response(
    202, schema=api_schemas.TestQueued, description="a test email is on its way", success=True
)
@admin_required
def test_email_recipient(recipient_id: int):
    event = send_test(get_session(), "email", recipient_id)
    return jsonify({"event_id": event.uid}), 202


@bp.get("/email-recipients/<int:recipient_id>/deliveries")
@bp.alt_response(200, schema=api_schemas.Items, description="every try, newest first", success=True)
@admin_required
def email_recipient_deliveries(recipient_id: int):
    session = get_session()
    get_email_recipient(session, recipient_id)
    return jsonify({"items": deliveries(session, "email", recipient_id)})
