"""Hostile requests that once answered 500 (issue 20), sent by the unit tier (SQLite) and
the integration tier (PostgreSQL): each must get a 4xx and store nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Category, FineTuningRun, Setting, Submission, TrainingExample
from tests.factories import make_category, make_submission

TOO_BIG = "9" * 30  # beyond 64 bits
JUST_PAST_ID = str(2**31)  # past an INTEGER id column
NESTED = "[" * 100_000 + "]" * 100_000


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str
    status: int
    admin: bool = True
    json: Any = None
    raw_json: str | None = None
    form: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _submission(message: str) -> str:
    return '{"message": "' + message + '", "contributor_type": "resident"}'


CASES = [
    # anonymous
    Hostile("nested JSON submission", "POST", "/api/submissions", 400, admin=False,
            raw_json='{"message": ' + NESTED + ', "contributor_type": "resident"}'),
    Hostile("lone surrogate message", "POST", "/api/submissions", 400, admin=False,
            raw_json=_submission("hello \\ud800 there")),
    Hostile("NUL in message", "POST", "/api/submissions", 400, admin=False,
            raw_json=_submission("hello \\u0000 there")),
    Hostile("zero-width-only message", "POST", "/api/submissions", 400, admin=False,
            raw_json=_submission("\\u200b\\u200c\\u2060\\ufeff")),
    Hostile("blank-letter-only message", "POST", "/api/submissions", 400, admin=False,
            raw_json=_submission("\\u3164 \\u2800")),
    Hostile("NUL in the public form", "POST", "/", 400, admin=False,
            form={"message": "hi\x00there", "contributor_type": "resident"}),
    Hostile("NUL in the login form", "POST", "/admin/login", 400, admin=False,
            form={"username": "admin\x00", "password": "x"}),
    # admins: page parameters, id lists, path ids, forms
    Hostile("page beyond 64 bits", "GET", f"/admin/api/submissions?page={TOO_BIG}", 400),
    Hostile("superscript per_page", "GET", "/admin/api/submissions?per_page=\u00b2", 400),
    Hostile("NUL category filter", "GET", "/admin/api/submissions?category=%00", 400),
    Hostile("page beyond 64 bits, page", "GET", f"/admin/submissions?page={TOO_BIG}", 400),
    Hostile("huge id in a list", "GET", f"/admin/api/training-examples?ids=1,{TOO_BIG}", 400),
    Hostile("superscript id in a list", "GET", "/admin/api/training-examples?ids=\u00b2", 400),
    Hostile("huge run id in a path", "GET", f"/admin/api/training-status/{TOO_BIG}", 404),
    Hostile("run id past INTEGER", "POST", f"/admin/api/deploy-model/{JUST_PAST_ID}", 404),
    Hostile("example id past INTEGER", "DELETE",
            f"/admin/api/training-example/{JUST_PAST_ID}", 404),
    Hostile("huge run page", "GET", f"/admin/training/runs/{TOO_BIG}", 404),
    Hostile("huge similar id", "POST", "/admin/api/submissions/{submission}/category", 400,
            json={"category": "{category}", "similar_ids": [2**70]}),
    Hostile("superscript model to compare", "GET", "/admin/api/compare-models?b=\u00b2", 400),
    Hostile("huge model to compare", "GET", f"/admin/api/compare-models?b={TOO_BIG}", 400),
    Hostile("NUL category name", "POST", "/admin/api/categories", 400,
            json={"name": "bad\x00name", "description": "a description"}),
    Hostile("invisible category name", "POST", "/admin/api/categories", 400,
            json={"name": "\u200b\u200b", "description": "a description"}),
    Hostile("surrogate description", "PATCH", "/admin/api/categories/{category_id}", 400,
            raw_json='{"description": "bad \\udfff text"}'),
    Hostile("nested settings", "POST", "/admin/api/settings", 400, raw_json=NESTED),
    # a page form flashes the error and redirects back (post/redirect/get)
    Hostile("superscript similar id in the form", "POST",
            "/admin/submissions/{submission}/category", 302,
            form={"category": "{category}", "similar_ids": "\u00b2"}),
    Hostile("superscript setting in the form", "POST", "/admin/settings", 400,
            form={"min_training_examples": "\u00b2"}),
    Hostile("huge setting in the form", "POST", "/admin/settings", 400,
            form={"min_training_examples": TOO_BIG}),
    Hostile("NUL in a category form", "POST", "/admin/categories", 400,
            form={"name": "x\x00", "description": "y"}),
]  # fmt: skip


def seed(session: Session) -> dict[str, Any]:
    """One category and one submission the cases refer to."""
    category = make_category(session, name="roads", description="potholes and pavements")
    submission = make_submission(session)
    session.commit()
    return {"category": "roads", "category_id": category.id, "submission": submission.id}


def row_counts(session: Session) -> dict[str, int]:
    session.expire_all()
    models = (Submission, TrainingExample, Category, FineTuningRun, Setting)
    return {m.__name__: session.scalar(select(func.count()).select_from(m)) for m in models}


def send(client, case: Hostile, ids: dict[str, Any], admin_headers: dict[str, str]):
    def fill(text: str) -> str:
        for key, value in ids.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    headers = dict(admin_headers) if case.admin else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if case.raw_json is not None:
        kwargs.update(data=case.raw_json, content_type="application/json")
    elif case.json is not None:
        body = {k: fill(v) if isinstance(v, str) else v for k, v in case.json.items()}
        kwargs["json"] = body
    elif case.form is not None:
        kwargs["data"] = {k: fill(v) for k, v in case.form.items()}
    return client.open(fill(case.path), method=case.method, **kwargs)
