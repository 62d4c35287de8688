"""`sortloop import-submissions` and `sortloop classify` with the real MiniLM on PostgreSQL."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import func, select

from shared.cli import cli
from shared.models import Submission, TrainingExample
from shared.seed import seed_default_categories


def test_import_as_corrections_then_classify(config, session, tmp_path):
    seed_default_categories(session)
    session.commit()
    path = tmp_path / "labelled.csv"
    path.write_text(
        "text,label\n"
        "There is a huge pothole on Mill Street,roads and traffic\n"
        "The bins were not emptied this week,housing\n"
        ",housing\n",
        encoding="utf-8",
    )
    env = {"DATABASE_URL": config.database_url, "MODELS_DIR": config.models_dir}
    runner = CliRunner()
    result = runner.invoke(cli, ["import-submissions", str(path), "--as-corrections"], env=env)
    assert result.exit_code == 0, result.output
    assert "line 4: skipped: message is required" in result.output
    session.expire_all()
    submissions = session.scalars(select(Submission).order_by(Submission.id)).all()
    assert [s.predicted_category for s in submissions] == [
        "roads and traffic",
        "waste and recycling",
    ]
    assert all(s.model_version == "base:all-MiniLM-L6-v2" for s in submissions)
    examples = session.scalars(select(TrainingExample).order_by(TrainingExample.id)).all()
    assert [e.is_correction for e in examples] == [False, True]
    assert session.scalar(select(func.count()).select_from(Submission)) == 2

    classified = runner.invoke(cli, ["classify", "The bus was late again"], env=env)
    assert classified.exit_code == 0, classified.output
    line = json.loads(classified.stdout.strip().splitlines()[-1])
    assert line["category"] == "public transport"
    assert line["model_version"] == "base:all-MiniLM-L6-v2"
