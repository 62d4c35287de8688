"""Bulk import of submissions from CSV, classified in batches by the active model.

Used by ``sortloop import-submissions`` and ``sortloop seed-demo``. Each row is checked
like a public submission; a bad row is reported with its line number and skipped, the
good ones are kept (committed batch by batch). With ``as_corrections`` the label column
is also the admin's category, so every row becomes a training example too.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Config
from shared.errors import InvalidInput, SortloopError
from shared.models import Category, Submission
from shared.submissions.categories import add_category
from shared.submissions.records import (
    ClassifiesTexts,
    classify_submissions,
    clean_contributor_type,
    clean_message,
    update_category,
)

DEFAULT_BATCH_SIZE = 64
IMPORT_ACTOR = "import"


@dataclass(frozen=True)
class ImportRow:
    """One CSV record: the line it starts on, its text, label and contributor type."""

    line: int
    text: str | None
    label: str | None = None
    contributor_type: str | None = None


@dataclass
class ImportReport:
    imported: int = 0
    classified: int = 0
    training_examples: int = 0
    corrections: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    categories_created: list[str] = field(default_factory=list)
    # With ``defer``: the stored rows wait for a worker (their ids, in order).
    waiting_ids: list[int] = field(default_factory=list)


def read_csv_rows(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    contributor_type_column: str | None = None,
    require_label: bool = False,
) -> list[ImportRow]:
    """Read the file; InvalidInput when it cannot be read or a needed column is missing.

    The label column is optional unless ``require_label`` (labels become categories)."""
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as handle:
            return _parse_rows(
                handle, str(path), text_column, label_column, contributor_type_column, require_label
            )
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from None


def _parse_rows(
    handle: Iterable[str],
    path: str,
    text_column: str,
    label_column: str | None,
    contributor_type_column: str | None,
    require_label: bool,
) -> list[ImportRow]:
    rows: list[ImportRow] = []
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames or []
    except (csv.Error, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path}: the header is not valid CSV ({error})") from None
    needed = [(text_column, "--text-column")]
    if require_label:
        needed.append((label_column, "--label-column"))
    if contributor_type_column:
        needed.append((contributor_type_column, "--contributor-type-column"))
    for name, option in needed:
        if not name or name not in header:
            raise InvalidInput(
                f"column {name!r} ({option}) is not in the header of {path}; "
                f"columns: {', '.join(header) or 'none'}"
            )
    has_label = bool(label_column) and label_column in header
    start = reader.line_num + 1
    try:
        for record in reader:
            rows.append(
                ImportRow(
                    line=start,
                    text=record.get(text_column),
                    label=record.get(label_column) if has_label else None,
                    contributor_type=(
                        record.get(contributor_type_column) if contributor_type_column else None
                    ),
                )
            )
            start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path} line {start}: not valid CSV ({error})") from None
    return rows


def default_contributor_type(config: Config) -> str:
    return "other" if "other" in config.contributor_types else config.contributor_types[0]


def import_rows(
    session: Session,
    analyzer: ClassifiesTexts | None,
    rows: Iterable[ImportRow],
    config: Config,
    *,
    as_corrections: bool = False,
    create_categories: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] = lambda _done: None,
    defer: bool = False,
) -> ImportReport:
    """Store, classify and (with ``as_corrections``) label every good row; commits per batch.

    With ``defer`` the rows are only stored, waiting for a worker to classify them in
    large batches (``shared.submissions.classification_queue``); it cannot be combined
    with ``as_corrections`` (whether a label corrects the model needs its prediction).
    ``progress(n)`` is called with the number of rows handled after each batch.
    """
    if defer and as_corrections:
        raise InvalidInput("labels are saved against the model's prediction: classify here")
    rows = list(rows)
    report = ImportReport()
    known = {
        name: active for name, active in session.execute(select(Category.name, Category.active))
    }
    if as_corrections and create_categories:
        for label in dict.fromkeys((row.label or "").strip() for row in rows):
            if label and label not in known:
                try:
                    add_category(session, label, label)
                except SortloopError:
                    continue  # e.g. same name in another case: that row is reported below
                known[label] = True
                report.categories_created.append(label)
        session.commit()

    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        good: list[tuple[Submission, str | None]] = []
        for row in batch:
            try:
                submission, label = _checked_row(row, config, as_corrections, known)
            except InvalidInput as error:
                report.bad_rows.append((row.line, str(error)))
                continue
            good.append((submission, label))
        submissions = [submission for submission, _ in good]
        if defer:
            for submission in submissions:
                submission.classification_pending = True
        elif classify_submissions(session, analyzer, submissions):
            report.classified += len(submissions)
        session.add_all(submissions)
        session.flush()
        if defer:
            report.waiting_ids.extend(submission.id for submission in submissions)
        for submission, label in good:
            if label is not None:
                example = update_category(session, submission.id, label, actor=IMPORT_ACTOR)
                report.training_examples += 1
                report.corrections += int(example.is_correction)
        session.commit()
        report.imported += len(submissions)
        progress(len(batch))
    return report


def _checked_row(
    row: ImportRow, config: Config, as_corrections: bool, known: dict[str, bool]
) -> tuple[Submission, str | None]:
    message = clean_message(row.text)
    kind = row.contributor_type
    if kind is None or not kind.strip():
        kind = default_contributor_type(config)
    submission = Submission(message=message, contributor_type=clean_contributor_type(kind, config))
    label = None
    if as_corrections:
        label = (row.label or "").strip()
        if not label:
            raise InvalidInput("the label is empty")
        if not known.get(label):
            hint = "" if label in known else " (add it first or use --create-categories)"
            raise InvalidInput(f"unknown or inactive category {label!r}{hint}")
    return submission, label
