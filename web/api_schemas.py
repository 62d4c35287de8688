"""Marshmallow schemas of the JSON API's answers, for the OpenAPI document (web.api_spec).

They name the fields API.md promises; every answer may carry more (``unknown = INCLUDE``
documents that as ``additionalProperties``). Values whose type depends on the state
(null before a run has results, say) are ``Raw``.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields


class Answer(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE


def _answer(schema_name: str, **schema_fields: fields.Field) -> type[Answer]:
    return type(schema_name, (Answer,), dict(schema_fields))


def _required(*names: str) -> dict[str, fields.Field]:
    return {name: fields.Raw(required=True, allow_none=True) for name in names}


Id = fields.Integer(required=True)

SubmissionCreated = _answer(
    "SubmissionCreated",
    id=Id,
    status=fields.String(metadata={"description": "classified, classifying or failed"}),
    **_required("category", "confidence", "model_version"),
)
ClassificationQueue = _answer(
    "ClassificationQueue",
    pending=fields.Integer(required=True),
    items=fields.List(fields.Dict(), required=True),
    **_required("oldest"),
)
Page = _answer(
    "Page", items=fields.List(fields.Dict(), required=True), total=fields.Integer(required=True)
)
CategorySaved = _answer(
    "CategorySaved",
    id=Id,
    **_required("category", "training_example_id", "is_correction"),
)
BulkSaved = _answer(
    "BulkSaved",
    saved=fields.Integer(required=True),
    category=fields.String(required=True),
    items=fields.List(fields.Dict(), required=True),
)
Cleared = _answer("Cleared", cleared=fields.Integer(required=True))
ExamplesDeleted = _answer("ExamplesDeleted", deleted=fields.Integer(required=True))
ExamplesRelabelled = _answer(
    "ExamplesRelabelled",
    relabelled=fields.Integer(required=True),
    category=fields.String(required=True),
    items=fields.List(fields.Dict(), required=True),
)
Items = _answer("Items", items=fields.List(fields.Dict(), required=True))
Category = _answer("Category", **_required("name", "description"))
TrainingStats = _answer(
    "TrainingStats",
    **_required("total", "corrections", "confirmations", "per_category", "quality", "ready"),
)
RunStarted = _answer("RunStarted", run_id=Id, status=fields.String(required=True))
RunStatus = _answer(
    "RunStatus",
    run_id=Id,
    **_required("status", "stage", "progress", "epoch", "loss", "eta_seconds", "error", "results"),
)
RunSummary = _answer(
    "RunSummary", run_id=Id, **_required("created_at", "status", "num_training_examples")
)
ActiveModel = _answer("ActiveModel", active_model=fields.String(required=True))
ModelInfo = _answer("ModelInfo", **_required("kind", "version", "base_model", "run_id", "metrics"))
Imported = _answer("Imported", run_id=Id)
TaskQueued = _answer("TaskQueued", task_id=fields.String(required=True))
TaskState = _answer(
    "TaskState", task_id=fields.String(required=True), state=fields.String(required=True)
)
ComparisonQueued = _answer(
    "ComparisonQueued",
    task_id=fields.String(required=True),
    a=fields.String(required=True),
    b=fields.String(required=True),
    status_url=fields.String(required=True),
)
ComparisonState = _answer(
    "ComparisonState",
    task_id=fields.String(required=True),
    state=fields.String(required=True),
    **_required("result", "error"),
)
RunLog = _answer("RunLog", run_id=Id, lines=fields.List(fields.Dict(), required=True))
Webhook = _answer(
    "Webhook",
    id=Id,
    url=fields.String(required=True),
    events=fields.List(fields.String(), required=True),
)
WebhookCreated = _answer(
    "WebhookCreated",
    id=Id,
    url=fields.String(required=True),
    events=fields.List(fields.String(), required=True),
    secret=fields.String(required=True),
)
EmailRecipient = _answer(
    "EmailRecipient",
    id=Id,
    address=fields.String(required=True),
    events=fields.List(fields.String(), required=True),
)
TestQueued = _answer("TestQueued", event_id=fields.String(required=True))
ShadowReport = _answer(
    "ShadowReport",
    run_id=Id,
    since=fields.String(required=True),
    scored=fields.Integer(required=True),
    reviewed=fields.Integer(required=True),
    active_only_right=fields.Integer(required=True),
    shadow_only_right=fields.Integer(required=True),
    **_required("agreement", "accuracy_active", "accuracy_shadow", "p_value"),
)
JsonObject = _answer("JsonObject")
