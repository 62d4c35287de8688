"""Every operation of /openapi.json, fuzzed with and without the admin token: no 5xx, every
answer as the spec says, and nothing stored by a refused request.

The example budget is SORTLOOP_FUZZ_EXAMPLES per operation: small for `make test`,
larger for `make fuzz`.
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from shared.models import Base

EXAMPLES = int(os.environ.get("SORTLOOP_FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _served_spec() -> dict:
    """The document the app serves at /openapi.json (building it needs no database)."""
    from shared.config import Config
    from web import create_app

    app = create_app(
        Config.from_env(
            {"DATABASE_URL": "sqlite://", "SECRET_KEY": "fuzz-collection-3c9a71e5d2b8f046"}
        )
    )
    return app.test_client().get("/openapi.json").get_json()


# Built while collecting, so that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(_served_spec())
# Valid requests and invalid ones (wrong types, out of bounds, missing fields); NUL bytes too.
schema.config.generation.update(modes=list(GenerationMode), allow_x00=True)


def _row_counts(engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }


def _call_and_check(case, base_url: str, engine, headers: dict[str, str]) -> None:
    before = _row_counts(engine)
    response = case.call(base_url=base_url, headers=headers, timeout=120)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert _row_counts(engine) == before, (
            f"{case.method} {case.formatted_path} answered {response.status_code} but stored rows"
        )


@schema.parametrize()
@FUZZ_SETTINGS
def test_anonymous_requests(case, live_app_url, engine):
    _call_and_check(case, live_app_url, engine, {})


@schema.parametrize()
@FUZZ_SETTINGS
def test_admin_requests(case, live_app_url, engine, admin_headers):
    _call_and_check(case, live_app_url, engine, admin_headers)
