"""One JSON error shape for the API (Werkzeug's own errors included); pages get HTML."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from shared.errors import SortloopError

logger = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/admin/api/", "/healthz")


def wants_json() -> bool:
    return request.path.startswith(API_PREFIXES) or request.is_json


def error_response(message: str, status: int):
    if wants_json():
        return jsonify({"error": message}), status
    return render_template("error.html", message=message, status=status), status


def init_app(app: Flask) -> None:
    @app.errorhandler(SortloopError)
    def _domain_error(error: SortloopError):
        return error_response(str(error), error.status_code)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return error_response(f"CSRF check failed: {error.description}", 400)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        data = getattr(error, "data", None)  # a request schema's refusal (web.api_spec)
        if isinstance(data, dict) and "messages" in data:
            from web.api_spec import validation_message

            return error_response(validation_message(data["messages"]), error.code or 400)
        return error_response(error.description or error.name, error.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        logger.exception("unhandled error path=%s", request.path)
        from flask import g

        session = g.get("db_session")
        if session is not None:
            session.rollback()
        return error_response("internal error: the server could not complete the request", 500)
