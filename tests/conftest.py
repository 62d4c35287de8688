"""Shared test setup: offline model hub, tiers marked by folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def labelled_slice(
    path: Path, per_category: int, test_per_category: int, seed: int
) -> tuple[list[str], list[dict], list[dict]]:
    """(labels, examples, test) from a dataset of ../shared/data: ``per_category`` texts
    of each label from ``split=train`` and up to ``test_per_category`` from ``split=test``,
    drawn with one seeded generator, label by label."""
    import csv
    import random

    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    labels = sorted({row["label"] for row in rows})
    rng = random.Random(seed)
    examples, test = [], []
    for label in labels:
        train_rows = [r for r in rows if r["split"] == "train" and r["label"] == label]
        test_rows = [r for r in rows if r["split"] == "test" and r["label"] == label]
        examples += [
            {"id": f"{label}-{i}", "text": r["text"], "label": label}
            for i, r in enumerate(rng.sample(train_rows, per_category))
        ]
        test += [
            {"id": f"t-{label}-{i}", "text": r["text"], "label": label}
            for i, r in enumerate(rng.sample(test_rows, min(test_per_category, len(test_rows))))
        ]
    return labels, examples, test


def default_run(data: dict, base, output_dir: Path, categories=None) -> tuple[dict, dict]:
    """(training info, evaluation) of the default method on a ``labelled_slice`` (``data``:
    its ``labels``, ``examples`` and ``test``), the categories named by their labels unless
    given; ``base`` is the loaded base classifier the evaluation compares with."""
    from shared.classifier import CategorySpec, default_base_model
    from shared.training_config import DEFAULT_METHOD, TrainingConfig
    from worker.fine_tuning import engine

    categories = categories or [CategorySpec(label, label) for label in data["labels"]]
    checked = engine.validate(data["examples"], (0.85, 0.15, 0.0), seed=0)
    info = engine.train_model(
        engine.examples_by_ids(data["examples"], checked["split"]["train"]),
        engine.examples_by_ids(data["examples"], checked["split"]["val"]),
        TrainingConfig(method=DEFAULT_METHOD, seed=0),
        default_base_model(),
        categories,
        output_dir=output_dir,
    )
    return info, engine.evaluate_model(
        info["adapter_dir"], default_base_model(), data["test"], categories, base_classifier=base
    )


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts[0]
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))
