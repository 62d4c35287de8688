"""Request schemas (web/api_requests.py) refuse bad input with a 400 in the API's error
shape, naming the field, before anything is stored; what they accept reaches the core."""

from __future__ import annotations

import io

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


# Checks that once lived in the views: the schemas give the same status and error shape
# (the message now names the field), and the document states each rule, so the fuzz
# tier sends values on both sides of it.
COMPARE_BOTH = "give the models to compare: ?a=<run id or base>&b=<run id>"


@pytest.mark.parametrize(
    "query, error",
    [
        ("ids=1,x", "ids must be whole numbers, comma separated"),
        ("ids=1,%C2%B2", "ids must be whole numbers, comma separated"),
        (f"ids=1,{2**31}", "ids must be a whole number from 1 to 2147483647"),
        ("ids=" + ",".join(["1"] * 501), "ids: at most 500 ids at once"),
    ],
)
def test_an_id_list_out_of_its_rule_is_refused(client, admin_headers, query, error):
    response = client.get(f"/admin/api/training-examples?{query}", headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json() == {"error": error}


def test_an_id_list_selects_those_examples(client, admin_headers):
    response = client.get("/admin/api/training-examples?ids=, 1,,2 ,", headers=admin_headers)
    assert response.status_code == 200
    assert response.get_json()["total"] == 0


@pytest.mark.parametrize("query", ["a=base", "a=base&b=", "b="])
def test_compare_without_a_second_model_is_refused(client, admin_headers, query):
    response = client.get(f"/admin/api/compare-models?{query}", headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json() == {"error": f"b: {COMPARE_BOTH}"}


@pytest.mark.parametrize("task_id", ["x" * 65, "a_b", "a.b", "%C3%A9t%C3%A9"])
def test_a_malformed_task_id_is_refused(client, admin_headers, task_id):
    response = client.get(f"/admin/api/reclassify/{task_id}", headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json() == {"error": "task_id: not a task id"}


@pytest.mark.parametrize("files", [{}, {"archive": (io.BytesIO(b"PK"), "")}])
def test_an_archive_without_a_file_name_is_refused(client, admin_headers, session, files):
    response = client.post(
        "/admin/api/import-model",
        data=files,
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.get_json() == {
        "error": 'archive: send the ZIP as a multipart file field named "archive"'
    }


def test_the_document_states_the_rules_the_views_once_checked(client):
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]

    def parameter(path: str, name: str) -> dict:
        found = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        assert len(found) == 1, found
        return found[0]

    ids = parameter("/admin/api/training-examples", "ids")["schema"]
    assert ids["pattern"] == "^[0-9, ]*$"
    task_id = parameter("/admin/api/reclassify/{task_id}", "task_id")["schema"]
    assert (task_id["pattern"], task_id["maxLength"]) == ("^[0-9A-Za-z-]+$", 64)
    assert parameter("/admin/api/compare-models", "b")["schema"]["minLength"] == 1
    body = paths["/admin/api/import-model"]["post"]["requestBody"]["content"]
    archive_schema = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    archive = spec["components"]["schemas"][archive_schema]["properties"]["archive"]
    assert "file name" in archive["description"]
