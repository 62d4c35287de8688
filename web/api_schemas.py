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
JsonObject = _answer("JsonObject")
