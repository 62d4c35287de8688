"""One owner per idea, checked on the source: a second writer or a second spelling of
an idea fails here, naming the file. (What each owner does is tested beside it.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "web", "worker")


def sources() -> list[tuple[str, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            found.append((relative, ast.parse(path.read_text(encoding="utf-8"))))
    return found


SOURCES = sources()


def where(predicate) -> set[str]:
    return {name for name, tree in SOURCES if any(predicate(node) for node in ast.walk(tree))}


def _called(node: ast.AST, name: str) -> bool:
    if not isinstance(node, ast.Call):
        return False
    function = node.func
    return (isinstance(function, ast.Name) and function.id == name) or (
        isinstance(function, ast.Attribute) and function.attr == name
    )


def _assigns_run_status(node: ast.AST) -> bool:
    """``x.status = ...`` on anything but ``self``, or ``FineTuningRun(status=...)``."""
    if isinstance(node, ast.Assign):
        return any(
            isinstance(target, ast.Attribute)
            and target.attr == "status"
            and not (isinstance(target.value, ast.Name) and target.value.id == "self")
            for target in node.targets
        )
    if _called(node, "FineTuningRun"):
        return any(keyword.arg == "status" for keyword in node.keywords)
    if _called(node, "values"):  # update(FineTuningRun).values(status=...)
        return any(keyword.arg == "status" for keyword in node.keywords)
    return False


def _constant(value: str):
    return lambda node: isinstance(node, ast.Constant) and node.value == value


def _f_string_starting(prefix: str):
    def check(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.JoinedStr)
            and bool(node.values)
            and isinstance(node.values[0], ast.Constant)
            and str(node.values[0].value) == prefix
        )

    return check


def _reads_environment(node: ast.AST) -> bool:
    """os.getenv or os.environ (a WSGI request's ``environ`` is not the environment)."""
    return _called(node, "getenv") or (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and not (isinstance(node.value, ast.Name) and node.value.id == "request")
    )


@pytest.mark.parametrize(
    ("idea", "predicate", "owners"),
    [
        ("a run's status is written", _assigns_run_status, {"shared/training/lifecycle.py"}),
        (
            "a DeploymentEvent is built",
            lambda node: _called(node, "DeploymentEvent"),
            {"shared/deployment/audit.py"},
        ),
        (
            "a base version string is spelled",
            _f_string_starting("base:"),
            set(),  # identity.py builds it from BASE_VERSION_PREFIX
        ),
        ("a run version string is spelled", _f_string_starting("run-"), set()),
        (
            "the model kind is inferred",
            lambda node: isinstance(node, ast.FunctionDef) and "infer" in node.name,
            {"shared/classifier/identity.py"},
        ),
        (
            "the training data are judged",
            lambda node: _called(node, "check_training_data"),
            {"shared/training/readiness.py"},
        ),
        (
            "a run's folder is spelled",
            _f_string_starting("run_"),
            {"shared/model_store/layout.py"},
        ),
        ("metrics.json is spelled", _constant("metrics.json"), {"shared/model_store/layout.py"}),
        (
            "training_data.json is spelled",
            _constant("training_data.json"),
            {"shared/model_store/layout.py"},
        ),
        (
            "the deployed run is flagged",
            lambda node: (
                _called(node, "values")
                and any(keyword.arg == "is_active_model" for keyword in node.keywords)
            ),
            {"shared/deployment/deployed.py"},
        ),
        (
            "the environment is read",
            _reads_environment,
            {"shared/config.py", "worker/fine_tuning/cli.py"},
        ),
        (
            "McNemar's test is computed",
            lambda node: (
                isinstance(node, ast.FunctionDef) and node.name.startswith("mcnemar_exact")
            ),
            {"shared/stats.py"},
        ),
    ],
)
def test_one_owner(idea, predicate, owners):
    assert where(predicate) == owners, f"{idea} outside its owner"


def test_the_cli_only_sets_a_tokenizer_default_in_the_environment():
    tree = dict(SOURCES)["worker/fine_tuning/cli.py"]
    uses = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
        if node.value.attr == "environ"
    ]
    assert [node.attr for node in uses] == ["setdefault"]
