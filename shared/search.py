"""Finding messages by their words, the same way on PostgreSQL and on SQLite.

PostgreSQL (production) uses its full-text search: ``to_tsvector('english', message)``
against a prefix query of the words (``'pothol':* & 'mill':*``), so "potholes" finds
"pothole" and "pot" finds "pothole" while typing; a GIN index on the same expression
(migration 0005) keeps it fast. SQLite (development and unit tests) has no stemmer in
every build, so each word must occur in the message, ignoring case (ASCII letters):
the same results for whole words and prefixes, without stemming.

Every word of the query must match (AND). A query made only of English stop words
("the") matches those words as written, on both databases. Only letters and digits count as words, so
a query can never inject full-text operators. ``match_spans`` tells the pages and the
API which parts of a message to highlight.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, func, literal_column, or_
from sqlalchemy.sql.elements import ColumnElement

MAX_QUERY_LENGTH = 200
MAX_QUERY_WORDS = 10
TEXT_SEARCH_CONFIG = "english"
# Shorter message words are highlighted only where they start with a query word.
_MIN_STEM = 4
_WORD = re.compile(r"[^\W_]+")


def query_words(query: str | None) -> list[str]:
    """The distinct lower-cased words of ``query``, at most ``MAX_QUERY_WORDS``."""
    if not query:
        return []
    words = dict.fromkeys(word.lower() for word in _WORD.findall(query))
    return list(words)[:MAX_QUERY_WORDS]


def message_matches(column: Any, query: str | None, dialect: str) -> ColumnElement[bool] | None:
    """A WHERE clause: ``column`` holds every word of ``query``; None without words."""
    words = query_words(query)
    if not words:
        return None
    each_word = and_(*(func.lower(column).contains(word, autoescape=True) for word in words))
    if dialect == "postgresql":
        config = literal_column(f"'{TEXT_SEARCH_CONFIG}'")
        prefix_query = func.to_tsquery(config, " & ".join(f"{word}:*" for word in words))
        # A query of stop words only ("the") is empty to the full-text search and would
        # find nothing: it falls back to the words themselves, as on SQLite. The planner
        # folds the test away for any other query, so the GIN index still serves it.
        return or_(
            func.to_tsvector(config, column).op("@@")(prefix_query),
            and_(func.numnode(prefix_query) == 0, each_word),
        )
    return each_word


def match_spans(text: str, query: str | None) -> list[list[int]]:
    """``[start, end]`` of each word of ``text`` the query matched, for highlighting.

    A word matches when it starts with a query word, or (stemming: "potholes" finds
    "pothole") a query word starts with it and it has at least four letters.
    """
    words = query_words(query)
    if not words:
        return []
    spans = []
    for found in _WORD.finditer(text):
        word = found.group().lower()
        if any(
            word.startswith(wanted) or (len(word) >= _MIN_STEM and wanted.startswith(word))
            for wanted in words
        ):
            spans.append([found.start(), found.end()])
    return spans


def highlighted(text: str, query: str | None) -> list[tuple[str, bool]]:
    """``text`` cut into ``(part, is_match)`` pieces; templates wrap matches in <mark>."""
    pieces: list[tuple[str, bool]] = []
    position = 0
    for start, end in match_spans(text, query):
        if start > position:
            pieces.append((text[position:start], False))
        pieces.append((text[start:end], True))
        position = end
    if position < len(text) or not pieces:
        pieces.append((text[position:], False))
    return pieces
