"""Training dashboard, run details and settings pages (issue 5).

The dashboard renders the data stats and the controls on the server; web/static/training.js
starts runs, follows the active one through the status API and fills the history.
"""

from __future__ import annotations

import re

from flask import Response, flash, redirect, render_template, request, url_for

from shared.classifier.identity import base_model_label
from shared.errors import InvalidInput
from shared.training.examples import doubts_since, training_stats
from shared.training.options import (
    DEFAULT_TRAINING_CONFIG,
    EDITABLE_SETTINGS,
    training_settings,
    update_training_settings,
)
from shared.training.run_log import read_run_log, run_log_text
from shared.training.runs import (
    get_run,
    list_runs,
    run_status,
    running_run,
)
from shared.training_config import (
    EPOCH_RANGE,
    LEARNING_RATE_RANGE,
    LORA_RANKS,
    METHOD_NOTES,
    METHODS,
)
from web.admin import bp, charts
from web.auth import admin_required
from web.db import get_session

QUALITY_LINKS = (
    ("duplicates", "duplicate_ids", "duplicate texts"),
    ("near_duplicates", "near_duplicate_ids", "near duplicates"),
    ("conflicts", "conflict_ids", "same text, different categories"),
    ("too_short", "too_short_ids", "too short"),
    ("too_long", "too_long_ids", "too long"),
)


def _ids_query(ids: list[int]) -> str:
    return ",".join(str(example_id) for example_id in ids[:500])


@bp.get("/training")
@admin_required
def training():
    session = get_session()
    stats = training_stats(session)
    settings = training_settings(session)
    running = running_run(session)
    quality = stats["quality"]
    indicators = [
        {
            "label": label,
            "count": quality.get(key, 0),
            "ids": _ids_query(quality.get(ids_key) or []),
        }
        for key, ids_key, label in QUALITY_LINKS
    ]
    return render_template(
        "admin/training.html",
        stats=stats,
        settings=settings,
        indicators=indicators,
        distribution=charts.bars(sorted(stats["per_category"].items())),
        active_run_id=running.id if running else None,
        defaults=DEFAULT_TRAINING_CONFIG,
        methods=METHODS,
        method_notes=METHOD_NOTES,
        lora_ranks=LORA_RANKS,
        learning_rate_range=LEARNING_RATE_RANGE,
        epoch_range=EPOCH_RANGE,
        runs=list_runs(session),
    )


@bp.get("/training/history")
@admin_required
def training_history():
    """The history's rows alone, for training.js to swap in when a run changes."""
    return render_template("admin/_run_history_rows.html", runs=list_runs(get_session()))


@bp.get("/training/runs/<int:run_id>")
@admin_required
def run_detail(run_id: int):
    session = get_session()
    run = run_status(get_run(session, run_id))
    log_lines = read_run_log(session, run_id)
    results = run["results"] or {}
    labels = results.get("labels") or sorted((results.get("per_category_f1") or {}).keys())
    per_category_f1 = results.get("per_category_f1") or {}
    issues = doubts_since(session, (results.get("training") or {}).get("label_issues") or [])
    return render_template(
        "admin/run_detail.html",
        run=run,
        results=results,
        issues=issues,
        # Those an admin can still act on, and those already acted on since the run.
        open_issues=[issue for issue in issues if issue["now"] == "unchanged"],
        done_issues=sum(issue["now"] in ("relabelled", "deleted") for issue in issues),
        labels=labels,
        f1_bars=charts.bars(
            [(label, per_category_f1.get(label, 0.0)) for label in labels],
            maximum=1.0,
            percent=True,
            second=results.get("baseline_per_category_f1") or None,
        ),
        heatmap=charts.heatmap(results.get("confusion_matrix") or []),
        baseline_heatmap=charts.heatmap(results.get("baseline_confusion_matrix") or []),
        loss=charts.loss_chart(results),
        loss_rows=charts.loss_per_epoch(results),
        base_model=base_model_label(run["base_model"]) if run["base_model"] else "–",
        quality=run["quality"] or {},
        log_lines=log_lines,
    )


@bp.get("/training/runs/<int:run_id>/log.txt")
@admin_required
def run_log_download(run_id: int):
    """The run's log as a text file."""
    session = get_session()
    get_run(session, run_id)
    return Response(
        run_log_text(read_run_log(session, run_id)),
        mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="sortloop-run-{run_id}.log"'},
    )


@bp.route("/settings", methods=["GET", "POST"])
@admin_required
def settings():
    session = get_session()
    if request.method == "POST":
        values: dict[str, object] = {}
        for key, kind in EDITABLE_SETTINGS.items():
            if kind is bool:
                values[key] = request.form.get(key) == "on"
            else:
                raw = (request.form.get(key) or "").strip()
                whole = re.fullmatch(r"-?[0-9]{1,18}", raw)
                values[key] = int(raw) if whole else raw
        try:
            update_training_settings(session, values)
        except InvalidInput as error:
            session.rollback()
            flash(str(error), "error")
            return render_template(
                "admin/settings.html", settings=training_settings(session), form=values
            ), 400
        session.commit()
        flash("Settings saved.", "info")
        return redirect(url_for("admin.settings"))
    return render_template("admin/settings.html", settings=training_settings(session), form=None)
