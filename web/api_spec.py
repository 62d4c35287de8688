"""The OpenAPI document of the JSON API (flask-smorest), served at /openapi.json.

Every route of a blueprint registered here through ``register_api_blueprint`` is in the
document; request schemas given with ``@bp.arguments`` validate the request too, and
what they refuse is a 400 with the API's one error shape. Interactive docs (Swagger UI,
bundled by the swagger-ui-bundle package: no internet needed) are at /openapi.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import swagger_ui_bundle
from flask import Flask, Request, render_template, send_from_directory
from flask_smorest import Api
from flask_smorest import Blueprint as ApiBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from shared.inputs import MAX_ID
from web.input_guard import IdConverter

ADMIN_SECURITY = [{"bearerToken": []}, {"adminSession": []}]


class ErrorSchema(ma.Schema):
    """The API's one error shape (API.md): ``{"error": "<human readable>"}``."""

    class Meta:
        unknown = ma.INCLUDE

    error = ma.fields.String(required=True)


class SortloopApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        """web.errors answers every error; only validation errors need a translation."""


class AdminBlueprint(ApiBlueprint):
    """A blueprint whose every operation needs the admin token or an admin session."""

    def _store_endpoint_docs(self, endpoint, obj, parameters, tags, **options):
        super()._store_endpoint_docs(endpoint, obj, parameters, tags, **options)
        for method, doc in self._docs[endpoint].items():
            if method != "parameters":
                doc.setdefault("manual_doc", {}).setdefault("security", ADMIN_SECURITY)


api = SortloopApi()


def _id_parameter(converter: IdConverter) -> dict:
    return {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def init_app(app: Flask) -> None:
    app.config.update(
        API_TITLE="Sortloop",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {
                "description": "The JSON API of Sortloop. Errors are always "
                '`{"error": "<human readable>"}`; the admin API needs the bearer token '
                "(SORTLOOP_ADMIN_TOKEN) or a logged-in admin session.",
            },
            "components": {
                "securitySchemes": {
                    "bearerToken": {"type": "http", "scheme": "bearer"},
                    "adminSession": {"type": "apiKey", "in": "cookie", "name": "session"},
                }
            },
        },
    )
    api.init_app(app)
    api.register_converter(IdConverter, _id_parameter)

    @app.get("/openapi")
    def openapi_docs():
        return render_template("openapi/docs.html")

    @app.get("/openapi/assets/<path:filename>")
    def openapi_assets(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)


class GuardedParser(FlaskParser):
    """webargs reading JSON through the app's guarded JSON provider (web.input_guard):
    NUL, unpaired surrogates and deep nesting are refused there, once. A refused
    request is a 400, as every other bad input."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req) or not req.get_data(cache=True):
            return core.missing
        return req.get_json()


ApiBlueprint.ARGUMENTS_PARSER = GuardedParser()


def validation_message(messages: Any) -> str:
    """One sentence from webargs' ``{"json": {"field": ["why"]}}``, naming each field."""
    sentences: list[str] = []

    def walk(value: Any, field: str | None) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                named = (
                    field
                    if key
                    in ("_schema", "json", "query", "querystring", "path", "view_args", "files")
                    else key
                )
                if isinstance(key, int) and field is not None:
                    named = f"{field}[{key}]"
                walk(inner, named)
        elif isinstance(value, list | tuple):
            for inner in value:
                walk(inner, field)
        else:
            text = str(value)
            if field is None or text.startswith(str(field)):
                sentences.append(text)
            elif text == "Missing data for required field.":
                sentences.append(f"{field} is required")
            else:
                sentences.append(f"{field}: {text}")

    walk(messages, None)
    return "; ".join(sentences) or "the request is not valid"
