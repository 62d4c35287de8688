"""The OpenAPI document of the JSON API (flask-smorest), served at /openapi.json.

Every route of a blueprint registered here through ``register_api_blueprint`` is in the
document; request schemas given with ``@bp.arguments`` validate the request too, and
what they refuse is a 400 with the API's one error shape. Interactive docs (Swagger UI,
bundled by the swagger-ui-bundle package: no internet needed) are at /openapi.
"""

from __future__ import annotations

import marshmallow as ma
import swagger_ui_bundle
from flask import Flask, render_template, send_from_directory
from flask_smorest import Api
from flask_smorest import Blueprint as ApiBlueprint

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
