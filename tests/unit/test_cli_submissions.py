"""`sortloop import-submissions`, `seed-demo` and `classify` (SQLite, a fake classifier)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from shared import cli as cli_module
from shared.cli import cli
from shared.deployment.active_model import ActiveModel
from shared.models import Category, Submission, TrainingExample
from tests.unit.fakes import KeywordClassifier


@pytest.fixture
def database(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr(
        cli_module,
        "_active_model",
        lambda config, sessions: ActiveModel(
            config, sessions, load_base=lambda _c: KeywordClassifier()
        ),
    )
    assert run(["migrate"], url).exit_code == 0
    return url


def run(args, url):
    return CliRunner().invoke(cli, args, env={"DATABASE_URL": url})


def count(url, model, *where) -> int:
    with Session(create_engine(url)) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def write_csv(tmp_path, text: str):
    path = tmp_path / "rows.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_keeps_good_rows_and_reports_bad_ones_by_line(database, tmp_path):
    path = write_csv(
        tmp_path,
        "text,label,who\n"
        "The housing office is slow,housing,resident\n"
        ",housing,resident\n"  # line 3: empty text
        '"A message over\ntwo lines about a bus",public transport,business\n'
        "Fine text,other,martian\n",  # line 6: bad contributor type
    )
    result = run(["import-submissions", path, "--contributor-type-column", "who"], database)
    assert result.exit_code == 0, result.output
    assert "line 3: skipped: message is required" in result.output
    assert "line 6: skipped: contributor_type" in result.output
    assert "imported 2 of 4 rows" in result.output
    assert count(database, Submission) == 2
    assert count(database, Submission, Submission.category.is_not(None)) == 2
    assert count(database, TrainingExample) == 0


def test_import_as_corrections_creates_training_examples(database, tmp_path):
    path = write_csv(
        tmp_path,
        "text,label\nThe housing office is slow,housing\nThe housing is damp,other\n"
        "Something,no such category\n",
    )
    result = run(["import-submissions", path, "--as-corrections"], database)
    assert result.exit_code == 0, result.output
    assert "line 4: skipped: unknown or inactive category 'no such category'" in result.output
    assert count(database, TrainingExample) == 2
    assert count(database, TrainingExample, TrainingExample.is_correction.is_(True)) == 1


def test_unknown_labels_can_become_categories(database, tmp_path):
    path = write_csv(tmp_path, "text,label\nthe lamp is dark,street lighting\n")
    result = run(["import-submissions", path, "--as-corrections", "--create-categories"], database)
    assert result.exit_code == 0, result.output
    assert count(database, Category, Category.name == "street lighting") == 1
    assert count(database, TrainingExample) == 1


def test_a_missing_column_is_a_usage_error_and_nothing_is_stored(database, tmp_path):
    path = write_csv(tmp_path, "message\nhello there\n")
    result = run(["import-submissions", path], database)
    assert result.exit_code == 2
    assert "column 'text'" in result.output
    assert count(database, Submission) == 0


def test_a_file_of_only_bad_rows_fails(database, tmp_path):
    path = write_csv(tmp_path, "text\n\n  \n")
    result = run(["import-submissions", path], database)
    assert result.exit_code == 1


def test_seed_demo_classifies_and_reviews_some_submissions(database):
    result = run(["seed-demo"], database)
    assert result.exit_code == 0, result.output
    total = count(database, Submission)
    assert total >= 20
    assert count(database, Submission, Submission.model_version.is_not(None)) == total
    examples = count(database, TrainingExample)
    assert 0 < examples < total
    assert "submissions exist already" in run(["seed-demo"], database).output


def test_classify_prints_one_json_line_per_text(database):
    result = run(["classify", "my housing is damp", "the bus is late"], database)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [line["text"] for line in lines] == ["my housing is damp", "the bus is late"]
    assert lines[0]["category"] == "housing"
    assert sum(lines[0]["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert lines[0]["model_version"].startswith("base:")


def test_a_file_that_is_not_utf8_is_a_usage_error(database, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text\nCaf\xe9 closed\n".encode("latin-1"))
    result = run(["import-submissions", str(path)], database)
    assert result.exit_code == 2
    assert "not valid CSV" in result.output
    assert count(database, Submission) == 0


def test_seed_demo_leaves_the_dashboard_ready_to_train(database):
    """`make dev` should let a newcomer start a fine-tuning run straight away."""
    from shared.db import make_engine, make_session_factory
    from shared.training.examples import training_stats

    assert run(["seed-demo"], database).exit_code == 0
    session = make_session_factory(make_engine(database))()
    try:
        stats = training_stats(session)
    finally:
        session.close()
    assert stats["ready"], stats["quality"]["warnings"]
