"""No input makes a 500 (SQLite): each hostile request gets a 4xx, says why, and stores
nothing. The integration tier sends the same requests to PostgreSQL."""

from __future__ import annotations

import pytest

from tests.hostile_requests import CASES, row_counts, seed, send


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_request_is_refused_and_stores_nothing(client, session, admin_headers, case):
    ids = seed(session)
    before = row_counts(session)

    response = send(client, case, ids, admin_headers)

    assert response.status_code == case.status, response.get_data(as_text=True)[:500]
    if case.path.startswith(("/api/", "/admin/api/")):
        assert response.json["error"]
    assert row_counts(session) == before


def test_a_message_is_stored_normalised(client, session):
    seed(session)
    response = client.post(
        "/api/submissions",
        json={"message": "  Cafe\u0301 closed  ", "contributor_type": "resident"},
    )
    assert response.status_code == 201
    listed = client.get(
        "/admin/api/submissions", headers={"Authorization": "Bearer unit-token"}
    ).json["items"]
    assert "Caf\u00e9 closed" in [item["message"] for item in listed]


def test_the_error_names_what_is_wrong(client, session):
    response = client.post(
        "/api/submissions",
        data='{"message": "a\\u0000b", "contributor_type": "resident"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "NUL" in response.json["error"]
