"""Factories for test data: build rows with sensible defaults, override what a test cares about."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from shared.models import Category, FineTuningRun, Submission, TrainingExample

_counter = itertools.count(1)


def make_category(session: Session, **fields: Any) -> Category:
    n = next(_counter)
    fields.setdefault("name", f"category {n}")
    fields.setdefault("description", f"things about topic {n}")
    category = Category(**fields)
    session.add(category)
    session.flush()
    return category


def make_submission(session: Session, **fields: Any) -> Submission:
    fields.setdefault("message", f"submission number {next(_counter)} about something")
    fields.setdefault("contributor_type", "resident")
    submission = Submission(**fields)
    session.add(submission)
    session.flush()
    return submission


def make_training_example(session: Session, **fields: Any) -> TrainingExample:
    fields.setdefault("message", f"example number {next(_counter)} about something")
    fields.setdefault("corrected_category", "other")
    fields.setdefault("contributor_type", "resident")
    example = TrainingExample(**fields)
    session.add(example)
    session.flush()
    return example


def make_run(session: Session, **fields: Any) -> FineTuningRun:
    fields.setdefault("base_model", "test-model")
    run = FineTuningRun(**fields)
    session.add(run)
    session.flush()
    return run
