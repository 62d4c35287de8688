"""Hostile input stops at the door with a 400 (or a 404 for an impossible id), never a 500.

- Path ids (``<int:...>``) match only ids an INTEGER column can hold.
- JSON bodies: nesting is bounded and every string and key is storable text
  (no NUL, control character or unpaired surrogate), checked once while parsing.
- Query strings, form fields and path segments: the same text check.

Field rules (lengths, ranges, choices) stay with the code that owns each field.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import IntegerConverter, ValidationError

from shared.errors import InvalidInput
from shared.inputs import MAX_ID, unstorable_character

MAX_JSON_DEPTH = 32


class IdConverter(IntegerConverter):
    """``<int:...>`` for row ids: ASCII digits, 1 to MAX_ID; anything else is no route (404)."""

    regex = r"[0-9]{1,10}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValidationError()
        return number


def check_json_value(value: Any) -> None:
    """InvalidInput when a parsed JSON document nests too deeply or holds unstorable text."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = unstorable_character(item)
            if problem is not None:
                raise InvalidInput(f"the JSON body contains {problem}: send plain text")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidInput(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
            children = list(item.items()) if isinstance(item, dict) else item
            for child in children:
                if isinstance(child, tuple):  # a key and its value
                    stack.append((child[0], depth))
                    stack.append((child[1], depth + 1))
                else:
                    stack.append((child, depth + 1))


class GuardedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing what ``check_json_value`` refuses (also under silent=True)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise InvalidInput(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
        check_json_value(value)
        return value


def _first_unstorable_field() -> tuple[str, str] | None:
    sources = [("query parameter", request.args)]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sources.append(("form field", request.form))
    for kind, values in sources:
        for name, value in values.items(multi=True):
            problem = unstorable_character(name) or unstorable_character(value)
            if problem is not None:
                return f"{kind} {name!r}", problem
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and unstorable_character(value):
            return f"path segment {name!r}", unstorable_character(value) or ""
    return None


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = IdConverter
    app.json = GuardedJSONProvider(app)

    @app.before_request
    def _refuse_unstorable_text():
        found = _first_unstorable_field()
        if found is not None:
            where, problem = found
            raise InvalidInput(f"{where} contains {problem}: send plain text")
