"""Request schemas (web/api_requests.py) refuse bad input with a 400 in the API's error
shape, naming the field, before anything is stored; what they accept reaches the core."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.models import Category, Submission
from web.api_spec import validation_message


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize(
    "body, named",
    [
        ({"contributor_type": "resident"}, "message is required"),
        ({"message": "\u200b\u2060 ", "contributor_type": "resident"}, "invisible"),
        ({"message": 5, "contributor_type": "resident"}, "message must be text"),
        ({"message": "x" * 5001, "contributor_type": "resident"}, "too long"),
        ({"message": "ok"}, "contributor_type is required"),
        (["not", "an", "object"], "send a JSON object"),
    ],
)
def test_a_bad_submission_is_refused_and_not_stored(client, session, body, named):
    response = client.post("/api/submissions", json=body)
    assert response.status_code == 400
    assert named in response.get_json()["error"]
    assert set(response.get_json()) == {"error"}
    assert _count(session, Submission) == 0


@pytest.mark.parametrize(
    "query, named",
    [
        ("page=0", "page must be a whole number from 1 to 1000000"),
        ("page=%C2%B2", "page must be a whole number"),
        ("per_page=201", "per_page must be a whole number from 1 to 200"),
        ("order=sideways", "order"),
    ],
)
def test_list_bounds_are_checked_by_the_schema(client, admin_headers, query, named):
    response = client.get(f"/admin/api/submissions?{query}", headers=admin_headers)
    assert response.status_code == 400
    assert named in response.get_json()["error"]


def test_empty_query_values_read_as_left_out(client, admin_headers):
    response = client.get(
        "/admin/api/submissions?page=&per_page=&order=&category=", headers=admin_headers
    )
    assert response.status_code == 200
    assert (response.get_json()["page"], response.get_json()["per_page"]) == (1, 25)


def test_anonymous_bad_input_still_gets_401_first(client):
    response = client.post("/admin/api/categories", json={"name": 5})
    assert response.status_code == 401


def test_a_category_name_is_normalised_once(client, session, admin_headers):
    response = client.post(
        "/admin/api/categories",
        json={"name": "  Cafe\u0301s  ", "description": "d"},
        headers=admin_headers,
    )
    assert response.status_code == 201
    assert response.get_json()["name"] == "Caf\u00e9s"


def test_an_invisible_category_name_stores_nothing(client, session, admin_headers):
    before = _count(session, Category)
    response = client.post("/admin/api/categories", json={"name": "\u3164"}, headers=admin_headers)
    assert response.status_code == 400 and "name" in response.get_json()["error"]
    assert _count(session, Category) == before


def test_deploy_refuses_a_force_that_is_not_a_boolean(client, admin_headers):
    response = client.post("/admin/api/deploy-model/1", json={"force": 1}, headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json() == {"error": "force must be true or false"}


def test_validation_messages_name_each_field():
    messages = {"json": {"similar_ids": {0: ["Not a valid integer."]}, "category": ["x"]}}
    assert validation_message(messages) == ("similar_ids[0]: Not a valid integer.; category: x")


@pytest.mark.parametrize(
    "body, named",
    [
        ({"epochs": 11}, "epochs"),
        ({"epochs": "3"}, "epochs must be a number"),
        ({"lora_r": True}, "lora_r"),
        ({"learning_rate": 1}, "learning_rate"),
        ({"split": [0.5, 0.5]}, "split"),
        ({"sizzle": 1}, "sizzle"),
        ([1, 2], "send a JSON object"),
    ],
)
def test_bad_training_options_are_refused_before_any_run(client, admin_headers, body, named):
    for path in ("/admin/api/start-training", "/admin/api/training-estimate"):
        response = client.post(path, json=body, headers=admin_headers)
        assert response.status_code == 400, path
        assert named in response.get_json()["error"], path


@pytest.mark.parametrize(
    "body", [{}, {"auto_train": 1}, {"min_training_examples": 0}, {"colour": "red"}]
)
def test_bad_settings_are_refused(client, admin_headers, body):
    response = client.post("/admin/api/settings", json=body, headers=admin_headers)
    assert response.status_code == 400 and response.get_json()["error"]
