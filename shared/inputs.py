"""The checks every untrusted value passes once: text and whole numbers.

Text is NFC-normalised; NUL and other control characters, unpaired surrogates (which
no database stores) and text made only of invisible characters are refused. Whole
numbers are ASCII digits (``str.isdigit`` also accepts "²" and other digits ``int``
refuses) bounded where the database bounds them. Each failure is an InvalidInput that
names the field, raised before anything is stored.
"""

from __future__ import annotations

import re
import unicodedata

from shared.errors import InvalidInput

# Primary keys are INTEGER columns (PostgreSQL int4): larger ids cannot exist.
MAX_ID = 2**31 - 1
# Pages beyond this would ask the database for an offset of billions of rows.
MAX_PAGE = 1_000_000
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
_ALLOWED_CONTROLS = frozenset("\t\n\r")
# Characters that draw nothing but are letters or symbols to Unicode.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})


def unstorable_character(text: str) -> str | None:
    """A description of the first character no database should get, or None."""
    for character in text:
        category = unicodedata.category(character)
        if character == "\x00":
            return "a NUL character"
        if category == "Cs":
            return f"an unpaired surrogate (U+{ord(character):04X})"
        if category == "Cc" and character not in _ALLOWED_CONTROLS:
            return f"a control character (U+{ord(character):04X})"
    return None


def check_storable(text: str, field: str) -> None:
    """InvalidInput naming ``field`` when ``text`` holds a character we refuse."""
    problem = unstorable_character(text)
    if problem is not None:
        raise InvalidInput(f"{field} contains {problem}: send plain text")


def has_visible_character(text: str) -> bool:
    return any(
        unicodedata.category(character) not in _INVISIBLE_CATEGORIES
        and character not in _BLANK_LETTERS
        for character in text
    )


def clean_text(value: object, field: str, max_length: int) -> str:
    """``value`` normalised (NFC) and stripped; InvalidInput naming ``field`` otherwise.

    Missing, empty and invisible-only text all read as missing: "message is required".
    """
    if value is None:
        raise InvalidInput(f"{field} is required")
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text")
    check_storable(value, field)
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise InvalidInput(f"{field} is required: write a few words")
    if not has_visible_character(text):
        raise InvalidInput(f"{field} is required: it holds only invisible characters")
    if len(text) > max_length:
        raise InvalidInput(f"{field} is too long: {len(text)} characters, at most {max_length}")
    return text


def parse_whole_number(raw: object, field: str, minimum: int, maximum: int) -> int:
    """A whole number from a query string or form field, within [minimum, maximum]."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not _WHOLE_NUMBER.fullmatch(text):
        raise InvalidInput(f"{field} must be a whole number from {minimum} to {maximum}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{field} must be a whole number from {minimum} to {maximum}")
    return value


def is_id(value: object) -> bool:
    """Whether a JSON value can be a row id (a whole number the id columns can hold)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID
