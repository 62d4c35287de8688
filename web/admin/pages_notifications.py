"""Notifications page: webhooks and email recipients, each with "send a test" and its
latest tries. Forms post back here (post/redirect/get); the page needs no JavaScript."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from shared.errors import SortloopError
from shared.notifications.events import EVENT_TYPES, SIGNATURE_HEADER
from shared.notifications.subscriptions import (
    create_email_recipient,
    create_webhook,
    delete_email_recipient,
    delete_webhook,
    deliveries,
    list_email_recipients,
    list_webhooks,
    send_test,
)
from web.admin import bp
from web.auth import admin_required, current_actor
from web.db import get_session

TRIES_SHOWN = 10
KINDS = {"webhooks": "webhook", "email": "email"}


@bp.get("/notifications")
@admin_required
def notifications():
    session = get_session()
    hooks = [
        (hook, deliveries(session, "webhook", hook.id, limit=TRIES_SHOWN))
        for hook in list_webhooks(session)
    ]
    recipients = [
        (recipient, deliveries(session, "email", recipient.id, limit=TRIES_SHOWN))
        for recipient in list_email_recipients(session)
    ]
    return render_template(
        "admin/notifications.html",
        webhooks=hooks,
        recipients=recipients,
        event_types=EVENT_TYPES,
        signature_header=SIGNATURE_HEADER,
        email_on=bool(current_app.config["SORTLOOP"].smtp_host),
    )


@bp.post("/notifications/webhooks")
@admin_required
def add_webhook_form():
    try:
        webhook, secret = create_webhook(
            get_session(),
            request.form.get("url", ""),
            request.form.getlist("events"),
            request.form.get("secret") or None,
            current_actor(),
        )
    except SortloopError as error:
        flash(str(error), "error")
    else:
        flash(
            f"Webhook {webhook.id} added. Its secret (shown this once): {secret}"
            if not request.form.get("secret")
            else f"Webhook {webhook.id} added.",
            "info",
        )
    return redirect(url_for("admin.notifications"))


@bp.post("/notifications/email")
@admin_required
def add_email_form():
    try:
        recipient = create_email_recipient(
            get_session(),
            request.form.get("address", ""),
            request.form.getlist("events"),
            current_actor(),
        )
    except SortloopError as error:
        flash(str(error), "error")
    else:
        flash(f"{recipient.address} will be emailed.", "info")
    return redirect(url_for("admin.notifications"))


@bp.post("/notifications/<any(webhooks, email):kind>/<int:target_id>/test")
@admin_required
def send_test_form(kind: str, target_id: int):
    try:
        send_test(get_session(), KINDS[kind], target_id)
    except SortloopError as error:
        flash(str(error), "error")
    else:
        flash("A test is on its way; its tries appear below (reload the page).", "info")
    return redirect(url_for("admin.notifications"))


@bp.post("/notifications/<any(webhooks, email):kind>/<int:target_id>/delete")
@admin_required
def delete_target_form(kind: str, target_id: int):
    try:
        if kind == "webhooks":
            delete_webhook(get_session(), target_id)
        else:
            delete_email_recipient(get_session(), target_id)
    except SortloopError as error:
        flash(str(error), "error")
    else:
        flash("Deleted.", "info")
    return redirect(url_for("admin.notifications"))
