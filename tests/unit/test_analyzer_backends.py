"""Both classifier backends serve through the same analyzer interface (real loaders)."""

from __future__ import annotations

import pytest

from shared.db import make_engine, make_session_factory
from shared.deployment.active_model import ActiveModel
from shared.seed import seed_default_categories
from shared.submissions.records import create_submission
from web.analyzer import SubmissionAnalyzer


def analyzer_for(config) -> SubmissionAnalyzer:
    sessions = make_session_factory(make_engine(config.database_url))
    return SubmissionAnalyzer(ActiveModel(config, sessions))


@pytest.mark.parametrize("backend", ["embedding", "nli"])
def test_a_submission_is_classified_by_either_backend(backend, config, session, tiny_bart):
    if backend == "nli":
        config = config.with_overrides(base_model=tiny_bart, base_model_kind="nli")
    seed_default_categories(session)
    session.commit()
    analyzer = analyzer_for(config)
    submission = create_submission(
        session, analyzer, "There is a huge pothole on Mill Street", "resident", config
    )
    assert submission.classification_error is None
    assert submission.category in submission.scores
    assert sum(submission.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert submission.confidence == pytest.approx(max(submission.scores.values()))
    assert submission.model_version == analyzer.current_version()
    assert len(submission.model_version) <= 100  # fits the column
    info = analyzer.get_model_info()
    assert info["kind"] == "base" and info["base_model_kind"] == backend
    if backend == "embedding":
        assert submission.category == "roads and traffic"
        assert submission.model_version == "base:all-MiniLM-L6-v2"
