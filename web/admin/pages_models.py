"""Model deployment page (issue 6): the model panel and the import form.

The panel's state (the model in use, the published models, the deployment history) is
rendered here, on the server, from the database: the page reads right without
JavaScript, and web/static/models.js refreshes it after a deploy by fetching the same
fragment (``GET /admin/models/state``). The panel is included by the training dashboard
too, so the template asks for its state itself (``model_panel_state()``).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template

from shared.classifier.identity import BASE_VERSION_PREFIX, RUN_VERSION_PREFIX
from shared.deployment.audit import deployment_history, event_to_dict
from shared.deployment.registry import describe_deployed_model, list_published_models
from shared.deployment.shadow import active_shadow
from web.admin import bp
from web.admin.formatting import when
from web.analyzer import get_analyzer
from web.auth import admin_required
from web.db import get_session


@bp.get("/models")
@admin_required
def models():
    return render_template("admin/models.html")


@bp.get("/models/state")
@admin_required
def model_state():
    """The panel's state alone, for models.js to swap in after a change."""
    return render_template("admin/_model_state.html")


@bp.app_template_global("model_panel_state")
def model_panel_state() -> dict[str, Any]:
    """What the model panel shows: the deployed model (the database's word), what this
    process serves, the published models and the history in words."""
    session = get_session()
    config = current_app.config["SORTLOOP"]
    active = describe_deployed_model(session, config)
    serving = get_analyzer().get_model_info()
    return {
        "active": active,
        "switching": serving["loaded"] and serving["version"] != active["version"],
        "load_error": serving["load_error"],
        "models": list_published_models(session, config),
        "events": [describe_event(event_to_dict(e)) for e in deployment_history(session)],
        # One shadow at a time: while one runs, no row offers another.
        "shadow_running": active_shadow(session) is not None,
    }


def model_name(version: str | None) -> str:
    """``run-3`` → ``run 3``; ``base:all-MiniLM-L6-v2`` → ``the base model (all-MiniLM-L6-v2)``."""
    if not version:
        return "an unknown model"
    if version.startswith(RUN_VERSION_PREFIX):
        return f"run {version[len(RUN_VERSION_PREFIX) :]}"
    if version.startswith(BASE_VERSION_PREFIX):
        return f"the base model ({version[len(BASE_VERSION_PREFIX) :]})"
    return version


def describe_event(event: dict[str, Any]) -> dict[str, Any]:
    """One history row in words: when, who, what happened (and whether it failed)."""
    action, outcome, detail = event["action"], event["outcome"], event["detail"]
    run = (
        f"run {event['run_id']}" if event["run_id"] is not None else model_name(event["to_version"])
    )
    before = model_name(event["from_version"])
    note = detail if isinstance(detail, str) else None
    if action == "deploy" and outcome == "ok":
        what = f"Deployed {run}, replacing {before}."
        if note:
            what += " It did not meet the deploy criteria: deployed anyway."
            note = None
    elif action == "deploy" and outcome == "skipped":
        what = f"Auto-deploy did not deploy {run}: {before} stays in use."
    elif action == "deploy":
        what = f"Could not deploy {run}."
    elif action == "rollback":
        what = (
            "Rolled back: the base model was already in use."
            if note and "already" in note
            else f"Rolled back from {before} to the base model."
        )
        note = None
    elif action == "import":
        filename = detail.get("filename") if isinstance(detail, dict) else None
        what = f"Imported {run}" + (f" from {filename}." if filename else ".")
    elif action == "load":
        what = f"A web process could not load {run} and kept {before}."
    elif action == "reclassify" and isinstance(detail, dict):
        verb = "Previewed" if outcome == "dry-run" else "Applied"
        what = (
            f"{verb} re-classification with {model_name(event['to_version'])}: "
            f"{detail.get('changed', 0)} of {detail.get('examined', 0)} unreviewed submissions "
            + ("would change." if outcome == "dry-run" else "changed.")
        )
    else:
        what = f"{action.capitalize()} ({outcome})."
    return {
        "id": event["id"],
        "when": when(event["created_at"]),
        "who": event["actor"],
        "what": what,
        "note": note,
        "failed": outcome == "failed",
    }
