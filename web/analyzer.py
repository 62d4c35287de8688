"""The analyzer: classifies new submissions in-process with the active model.

A thin Flask-side holder of ``shared.deployment.active_model.ActiveModel`` (one per process, stored
on the app as ``app.extensions["sortloop_analyzer"]``). Nothing loads at startup: the
classifier is loaded on the first submission, once, and swapped when an admin deploys
or rolls back a model.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from shared.classifier.base import CategorySpec
from shared.deployment.active_model import ActiveModel, Classification


class SubmissionAnalyzer:
    """Classifies submissions and reports which model it uses."""

    def __init__(self, active_model: ActiveModel) -> None:
        self.active_model = active_model

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> Classification:
        return self.active_model.classify(texts, categories)

    def current_version(self) -> str:
        return self.active_model.current_version()

    def get_model_info(self) -> dict[str, Any]:
        return self.active_model.get_model_info()

    def refresh(self) -> None:
        self.active_model.refresh()


def init_app(app: Flask) -> None:
    config = app.config["SORTLOOP"]
    active_model = ActiveModel(config, app.extensions["sortloop_sessions"], owner="web")
    app.extensions["sortloop_analyzer"] = SubmissionAnalyzer(active_model)


def get_analyzer() -> SubmissionAnalyzer:
    return current_app.extensions["sortloop_analyzer"]
