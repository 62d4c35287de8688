"""How the admin pages write dates, accuracies and improvements: one place, one format.

Every date on an admin page goes through ``when`` (a Jinja filter of the same name):
``2026-11-25 14:08 UTC``, always UTC, whatever the database or the ISO string carried.
Accuracies are percentages with one decimal; an improvement over the base model is
said in percentage points (``+12.5 points``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from web.admin import bp

MISSING = "–"


def when(moment: datetime | str | None) -> str:
    """A datetime or ISO 8601 string → ``2026-11-25 14:08 UTC`` (``–`` when missing).
    A naive value is taken as UTC (what the database stores); an offset is converted."""
    if moment is None or moment == "":
        return MISSING
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def percent(fraction: float | None) -> str:
    """0.912 → ``91.2%``."""
    return MISSING if fraction is None else f"{fraction * 100:.1f}%"


def points(difference: float | None) -> str:
    """An accuracy difference (a fraction) in percentage points: 0.125 → ``+12.5 points``."""
    if difference is None:
        return MISSING
    value = round(difference * 100, 1)
    if value == 0:
        return "±0.0 points"
    return f"{value:+.1f} point{'' if abs(value) == 1 else 's'}"


bp.add_app_template_filter(when, "when")
bp.add_app_template_filter(percent, "percent")
bp.add_app_template_filter(points, "points")
