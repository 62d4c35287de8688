"""The import rules of docs/architecture.md, checked in a fresh interpreter each.

The engine (``worker.fine_tuning``) is plain Python: no Celery, no database, no Flask.
``shared`` is what both tiers import: it never imports ``worker`` or ``web``. ``web``
never imports ``worker`` (tests/unit/test_app.py checks that with the app built).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINE_MODULES = (
    "worker",
    "worker.fine_tuning",
    "worker.fine_tuning.engine",
    "worker.fine_tuning.metrics",
    "worker.fine_tuning.data_validator",
    "worker.fine_tuning.export",
    "worker.fine_tuning.cli",
    "shared.training.readiness",
    "shared.training.results",
    "shared.model_store.layout",
    "shared.stats",
)
SHARED_MODULES = (
    "shared",
    "shared.config",
    "shared.stats",
    "shared.classifier",
    "shared.classifier.identity",
    "shared.training.data_quality",
    "shared.training_config",
    "shared.training.runs",
    "shared.training.options",
    "shared.training.estimate",
    "shared.training.periodic",
    "shared.training.lifecycle",
    "shared.deployment.audit",
    "shared.deployment.deployed",
    "shared.submissions.records",
    "shared.submissions.importing",
    "shared.submissions.reclassification",
    "shared.deployment.registry",
    "shared.deployment.active_model",
    "shared.model_store.archive",
    "shared.model_store.checks",
    "shared.model_store.export",
    "shared.deployment.comparison",
    "shared.training.examples",
    "shared.cli",
)


def loaded_after_import(module: str, watched: tuple[str, ...]) -> list[str]:
    """The top-level packages of ``watched`` that importing ``module`` loads."""
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(watched)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_the_engine_imports_without_celery_sqlalchemy_or_flask(module):
    assert loaded_after_import(module, ("celery", "kombu", "sqlalchemy", "flask")) == []


@pytest.mark.parametrize("module", SHARED_MODULES)
def test_shared_imports_neither_worker_nor_web(module):
    assert loaded_after_import(module, ("worker", "web")) == []


def test_the_engine_loads_no_task_module():
    code = (
        "import sys, worker.fine_tuning.engine, worker.fine_tuning.cli; "
        "print(','.join(sorted(m for m in sys.modules if m.startswith('worker.') "
        "and not m.startswith('worker.fine_tuning'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
