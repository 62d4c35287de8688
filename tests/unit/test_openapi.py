"""The OpenAPI document: served, valid, and listing every JSON API operation."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

API_PREFIXES = ("/api/", "/admin/api/")


def _spec_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_the_spec_is_served_and_valid(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    validate(response.get_json())


def test_every_api_route_is_in_the_spec(app, client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIXES):
            continue
        path = _spec_path(rule.rule)
        assert path in paths, f"{rule.rule} is not in /openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} is not in /openapi.json"


def test_admin_operations_need_the_token_and_public_ones_do_not(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert bool(operation.get("security")) == path.startswith("/admin/api/"), path


def test_path_ids_are_bounded_like_the_id_columns(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    (parameter,) = paths["/admin/api/training-status/{run_id}"]["parameters"]
    assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def test_interactive_docs_load_their_assets_from_this_server(client):
    page = client.get("/openapi")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "https://" not in html
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert client.get(asset).status_code == 200, asset
