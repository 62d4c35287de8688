"""No input makes a 500 on PostgreSQL either (NUL text and ids past INTEGER were
DataErrors there): each hostile request gets a 4xx and stores nothing."""

from __future__ import annotations

import pytest

from tests.hostile_requests import CASES, row_counts, seed, send


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_request_is_refused_and_stores_nothing_on_postgres(
    client, session, admin_headers, case
):
    ids = seed(session)
    before = row_counts(session)

    response = send(client, case, ids, admin_headers)

    assert response.status_code == case.status, response.get_data(as_text=True)[:500]
    assert row_counts(session) == before
