"""Request schemas of the JSON API: webargs validates each request with them before the
view runs (a refusal is a 400 with the API's error shape) and the OpenAPI document
describes the same fields, bounds and choices.

Text goes through ``shared.inputs.clean_text`` (NFC, stripped; NUL, unpaired surrogates,
invisible-only text refused); whole numbers in query strings through
``parse_whole_number`` (ASCII digits only), bounded where the database bounds them.
Rules that need the database or the config (known categories, contributor types) stay
with the code that owns them.
"""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from flask_smorest.fields import Upload
from marshmallow import fields, validate

from shared.errors import InvalidInput
from shared.inputs import MAX_ID, MAX_PAGE, check_storable, clean_text, parse_whole_number
from shared.notifications.events import EVENT_TYPES
from shared.notifications.subscriptions import MAX_SECRET_LENGTH, MAX_URL_LENGTH
from shared.search import MAX_QUERY_LENGTH
from shared.submissions.categories import MAX_NAME_LENGTH
from shared.submissions.records import (
    MAX_BULK,
    MAX_MESSAGE_LENGTH,
    MAX_PER_PAGE,
    MAX_SIMILAR,
    ORDERS,
)
from shared.training.examples import MAX_IDS_FILTER, parse_ids
from shared.training.options import EDITABLE_SETTINGS, MAX_MIN_TRAINING_EXAMPLES
from shared.training_config import EPOCH_RANGE, LEARNING_RATE_RANGE, LORA_RANKS, METHODS


class RequestSchema(ma.Schema):
    """Fields nobody asked for are ignored, as before the schemas."""

    class Meta:
        unknown = ma.EXCLUDE

    error_messages = {"type": "send a JSON object"}


class Text(fields.String):
    """Storable, visible text of at most ``max_length`` characters, normalised."""

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(min=1, max=max_length), **kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        try:
            return clean_text(value, self.data_key or self.name, self.max_length)
        except InvalidInput as error:
            raise ma.ValidationError(str(error)) from None


class WholeNumber(fields.Integer):
    """A query-string number: ASCII digits within [minimum, maximum]."""

    def __init__(self, minimum: int, maximum: int, **kwargs: Any) -> None:
        super().__init__(validate=validate.Range(min=minimum, max=maximum), **kwargs)
        self.minimum, self.maximum = minimum, maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if value == "":  # ?page= reads as no page
            return self.load_default
        try:
            return parse_whole_number(value, self.data_key or self.name, self.minimum, self.maximum)
        except InvalidInput as error:
            raise ma.ValidationError(str(error)) from None


class SearchWords(fields.String):
    """Words to find (``shared.search``): at most ``MAX_QUERY_LENGTH`` characters of
    storable text; empty reads as no search."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            validate=validate.Length(max=MAX_QUERY_LENGTH),
            load_default=None,
            allow_none=True,
            metadata={"description": "words to find in the message (every word must match)"},
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        # "" (not None) for no words: the length check runs on what this returns.
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        try:
            check_storable(text, "q")
        except InvalidInput as error:
            raise ma.ValidationError(str(error)) from None
        return text


def _id_list(maximum: int, description: str, **kwargs: Any) -> fields.List:
    return fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
        validate=validate.Length(min=1, max=maximum),
        metadata={"description": description},
        **kwargs,
    )


class Flag(fields.Boolean):
    """A query-string switch: 1/true/yes/on (any case) is on, anything else off."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        return str(value).strip().lower() in ("1", "true", "yes", "on")


class StrictBoolean(fields.Boolean):
    """JSON true or false, nothing else (no 1, no "yes")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ma.ValidationError(f"{self.data_key or self.name} must be true or false")
        return value


class OptionalSwitch(fields.Boolean):
    """A query-string yes/no that may be left empty: 1/true/yes, 0/false/no, or nothing."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool | None:
        text = str(value).strip().lower()
        if text == "":
            return None
        if text in ("1", "true", "yes"):
            return True
        if text in ("0", "false", "no"):
            return False
        raise ma.ValidationError(f"{self.data_key or self.name} must be true or false")


def _json_number(value: Any, field: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ma.ValidationError(f"{field} must be a number, got {value!r}")
    return value


class JsonInteger(fields.Integer):
    """A JSON number that is whole (3 or 3.0), never a string or a boolean."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        number = _json_number(value, self.data_key or self.name)
        if isinstance(number, float) and not number.is_integer():
            raise ma.ValidationError(f"{self.data_key or self.name} must be a whole number")
        return int(number)


class JsonFloat(fields.Float):
    """A finite JSON number, never a string or a boolean."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        _json_number(value, self.data_key or self.name)
        return super()._deserialize(value, attr, data, **kwargs)


class IdList(fields.String):
    """Comma-separated row ids in a query string ("3,5,8"), read as a list of ints.

    The document states the characters allowed (``pattern``) and the limits; empty parts
    are skipped, an empty value reads as left out."""

    PATTERN = r"^[0-9, ]*$"

    def __init__(self, most: int, **kwargs: Any) -> None:
        description = f"comma-separated ids, each 1 to {MAX_ID}, at most {most}"
        super().__init__(metadata={"description": description, "pattern": self.PATTERN}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if re.fullmatch(self.PATTERN, text) is None:
            raise ma.ValidationError(
                f"{self.data_key or self.name} must be whole numbers, comma separated"
            )
        try:
            return parse_ids(text)
        except InvalidInput as error:
            raise ma.ValidationError(str(error)) from None


class NewSubmission(RequestSchema):
    message = Text(MAX_MESSAGE_LENGTH, required=True)
    contributor_type = fields.String(
        required=True, metadata={"description": "one of the configured contributor types"}
    )


class SubmissionsQuery(RequestSchema):
    page = WholeNumber(1, MAX_PAGE, load_default=1)
    per_page = WholeNumber(1, MAX_PER_PAGE, load_default=25)
    category = fields.String(load_default=None)
    unreviewed = Flag(load_default=False)
    order = fields.String(validate=validate.OneOf([*ORDERS, ""]), load_default="newest")
    fold_similar = Flag(load_default=False)
    q = SearchWords()
    ids = IdList(MAX_IDS_FILTER, load_default=None)


class TrainingExamplesQuery(RequestSchema):
    page = WholeNumber(1, MAX_PAGE, load_default=1)
    per_page = WholeNumber(1, MAX_PER_PAGE, load_default=50)
    category = fields.String(load_default=None)
    is_correction = OptionalSwitch(load_default=None)
    ids = IdList(MAX_IDS_FILTER, load_default=None)
    q = SearchWords()


class ClassificationQueueQuery(RequestSchema):
    ids = IdList(MAX_PER_PAGE, load_default=None)


class CategoryDecision(RequestSchema):
    category = fields.String(required=True)
    similar_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
        validate=validate.Length(max=MAX_SIMILAR),
        load_default=None,
        allow_none=True,
        metadata={"description": "other submissions the same decision applies to"},
    )


class SubmissionsFilter(RequestSchema):
    """The list's filters, as JSON: which submissions a bulk decision covers."""

    category = fields.String(load_default=None, allow_none=True)
    unreviewed = StrictBoolean(load_default=False)
    q = SearchWords()


class BulkCategory(RequestSchema):
    """One category for the submissions named by ``ids`` or matched by ``filter``."""

    category = fields.String(required=True)
    ids = _id_list(MAX_BULK, "the submissions to set", load_default=None)
    filter = fields.Nested(
        SubmissionsFilter,
        load_default=None,
        metadata={"description": "every submission matching these filters (the list's keys)"},
    )

    @ma.validates_schema
    def _ids_or_filter(self, data: dict, **kwargs: Any) -> None:
        if (data.get("ids") is None) == (data.get("filter") is None):
            raise ma.ValidationError('send either "ids": [...] or "filter": {...}, not both')


class ClearDecisions(RequestSchema):
    ids = _id_list(MAX_BULK, "the submissions whose decision to undo", required=True)


class ExampleIds(RequestSchema):
    ids = _id_list(MAX_IDS_FILTER, "the training examples", required=True)


class ExamplesRelabel(ExampleIds):
    category = fields.String(required=True)


class NewCategory(RequestSchema):
    name = Text(MAX_NAME_LENGTH, required=True)
    description = fields.String(load_default=None, allow_none=True)


class CategoryChange(RequestSchema):
    description = fields.String(load_default=None, allow_none=True)
    active = StrictBoolean(load_default=None, allow_none=True)


class Deployment(RequestSchema):
    force = StrictBoolean(load_default=False)
    reclassify = fields.String(
        validate=validate.OneOf(["preview", "apply"]), load_default=None, allow_none=True
    )


class Reclassification(RequestSchema):
    dry_run = StrictBoolean(load_default=True)


BOTH_MODELS = "give the models to compare: ?a=<run id or base>&b=<run id>"


class ModelComparison(RequestSchema):
    a = fields.String(load_default="base", metadata={"description": "a run id or base"})
    b = fields.String(
        required=True,
        validate=validate.Length(min=1, error=BOTH_MODELS),
        metadata={"description": "a run id"},
        error_messages={"required": BOTH_MODELS},
    )


class TaskPath(RequestSchema):
    """A Celery task id in the path: ASCII letters, digits and dashes, at most 64."""

    task_id = fields.String(
        required=True,
        validate=[
            validate.Length(max=64, error="not a task id"),
            validate.Regexp(r"^[0-9A-Za-z-]+$", error="not a task id"),
        ],
        metadata={"description": "a task id, as start or deploy answered it"},
    )


class ModelName(fields.String):
    """A run id (a JSON number or a string) or "base"; the service checks which."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class ModelComparisonTask(RequestSchema):
    """POST /admin/api/compare-models: the same two models as the query form, in a body."""

    a = ModelName(load_default="base", metadata={"description": "a run id or base"})
    b = ModelName(
        required=True,
        metadata={"description": "a run id"},
        error_messages={
            "required": 'give the models to compare: "a" (a run id or base), "b" (a run id)'
        },
    )


class TrainingOptions(RequestSchema):
    """start-training and training-estimate; every option may be left out (its default).

    ``shared.training.options.validate_training_config`` (the CLI's check too) then
    checks the combination, e.g. that split sums to 1."""

    class Meta:
        unknown = ma.RAISE

    method = fields.String(validate=validate.OneOf(METHODS))
    lora_r = JsonInteger(validate=validate.OneOf(LORA_RANKS))
    learning_rate = JsonFloat(
        validate=validate.Range(min=LEARNING_RATE_RANGE[0], max=LEARNING_RATE_RANGE[1])
    )
    epochs = JsonInteger(validate=validate.Range(min=EPOCH_RANGE[0], max=EPOCH_RANGE[1]))
    split = fields.List(
        JsonFloat(validate=validate.Range(min=0, min_inclusive=False, max=1)),
        validate=validate.Length(equal=3),
        metadata={"description": "train, validation and test shares, summing to 1"},
    )
    cross_validation = StrictBoolean()


class SettingsChange(RequestSchema):
    """One or more of the editable training settings."""

    class Meta:
        unknown = ma.RAISE

    fine_tuning_enabled = StrictBoolean()
    min_training_examples = fields.Integer(
        strict=True, validate=validate.Range(min=1, max=MAX_MIN_TRAINING_EXAMPLES)
    )
    auto_train = StrictBoolean()
    auto_deploy = StrictBoolean()

    @ma.validates_schema
    def _one_or_more(self, data: dict, **kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError(
                "the body must be a JSON object with one or more of: "
                + ", ".join(EDITABLE_SETTINGS)
            )


ARCHIVE_FIELD = 'send the ZIP as a multipart file field named "archive"'


class ModelArchive(RequestSchema):
    """``multipart/form-data`` with the ZIP as exported, in the file field ``archive``."""

    archive = Upload(
        required=True,
        validate=validate.Predicate("__bool__", error=ARCHIVE_FIELD),
        error_messages={"required": ARCHIVE_FIELD},
        metadata={"description": "the ZIP as exported, sent as a file with a file name"},
    )


def _event_list() -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)),
        required=True,
        validate=validate.Length(min=1, max=len(EVENT_TYPES)),
        metadata={"description": "the events to hear of: " + ", ".join(EVENT_TYPES)},
    )


class NewWebhook(RequestSchema):
    """A receiver of signed POSTs; ``secret`` left out: one is made and answered once."""

    url = Text(MAX_URL_LENGTH, required=True, metadata={"description": "http:// or https://"})
    events = _event_list()
    secret = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_SECRET_LENGTH),
        metadata={"description": "key of the X-Sortloop-Signature HMAC (8 to 200 characters)"},
    )


class NewEmailRecipient(RequestSchema):
    address = Text(320, required=True, metadata={"description": "one email address"})
    events = _event_list()
