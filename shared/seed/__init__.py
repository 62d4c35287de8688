"""Default categories and demo data that Sortloop ships itself (no external dataset needed)."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Category

SEED_DIR = Path(__file__).resolve().parent

# What a municipality's public-feedback desk sorts by. The description is what the
# zero-shot model reads, so it names the things people actually write about.
DEFAULT_CATEGORIES: list[tuple[str, str]] = [
    ("roads and traffic", "roads, potholes, traffic lights, parking, cycling lanes, pavements"),
    ("waste and recycling", "rubbish collection, bins, recycling, litter, fly-tipping"),
    ("parks and green spaces", "parks, playgrounds, trees, grass cutting, public gardens"),
    ("public transport", "buses, trams, trains, stops, timetables, fares and delays"),
    ("noise and nuisance", "noise complaints, loud music, neighbours, antisocial behaviour"),
    ("housing", "social housing, rent, repairs in council homes, damp, homelessness"),
    ("taxes and payments", "council tax, bills, fees, fines, payments and refunds"),
    ("other", "anything else: general questions, ideas, praise and requests"),
]


def seed_default_categories(session: Session) -> int:
    """Insert the default categories when there are none yet; returns how many were added."""
    if session.scalar(select(func.count()).select_from(Category)):
        return 0
    for name, description in DEFAULT_CATEGORIES:
        session.add(Category(name=name, description=description, active=True))
    session.flush()
    return len(DEFAULT_CATEGORIES)


def demo_submissions() -> list[dict[str, str]]:
    """Demo messages (text, label) shipped with the package for `make dev`."""
    with (SEED_DIR / "demo_submissions.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
