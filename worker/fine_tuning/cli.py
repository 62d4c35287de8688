"""``sortloop train``: the worker's fine-tuning engine on a CSV file, outside the web app.

Progress goes to stderr; one JSON object goes to stdout.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from shared.config import Config
from shared.model_store.layout import finetuned_root
from shared.training_config import DEFAULT_METHOD

logger = logging.getLogger(__name__)

RESULT_KEYS = (
    "accuracy",
    "macro_f1",
    "baseline_accuracy",
    "baseline_macro_f1",
    "per_category_f1",
    "confusion_matrix",
    "meets_criteria",
    "train_seconds",
    "num_train",
    "num_test",
)


class CsvError(ValueError):
    """The CSV file cannot be used (missing file or column)."""


def read_examples(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    errors: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Rows as examples ``{"id": "<file>:<line>", "text", "label"}``; bad rows reported and skipped."""
    file = Path(path)
    if not file.is_file():
        raise CsvError(f"{file}: no such file")
    examples: list[dict[str, Any]] = []
    with file.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        for column in (text_column, label_column):
            if column not in columns:
                raise CsvError(f"{file}: no column {column!r} (columns: {', '.join(columns)})")
        for line, row in enumerate(reader, start=2):
            text = (row.get(text_column) or "").strip()
            label = (row.get(label_column) or "").strip()
            if not text or not label:
                if errors is not None:
                    errors.write(f"{file}:{line}: skipped (empty text or label)\n")
                continue
            examples.append({"id": f"{file.name}:{line}", "text": text, "label": label})
    if not examples:
        raise CsvError(f"{file}: no usable rows")
    return examples


def sample_per_category(
    examples: list[dict[str, Any]], per_category: int, seed: int
) -> list[dict[str, Any]]:
    """At most ``per_category`` examples of each label, chosen reproducibly for ``seed``."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        by_label.setdefault(example["label"], []).append(example)
    chosen: list[dict[str, Any]] = []
    for label in sorted(by_label):
        members = by_label[label]
        chosen += random.Random(f"{seed}:{label}").sample(members, min(per_category, len(members)))
    return chosen


def humanize(label: str) -> str:
    """The description the zero-shot scorer reads for a CSV label: the label in words."""
    return label.replace("_", " ").replace("-", " ").strip()


class StderrProgress:
    """A one-line progress display on stderr (a TTY gets carriage returns)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.last_stage = ""

    def __call__(
        self,
        stage: str,
        step: int,
        total_steps: int,
        epoch: int,
        loss: float | None,
        eta_seconds: float | None,
    ) -> None:
        parts = [f"[{stage}]"]
        if total_steps:
            filled = int(20 * step / total_steps)
            parts.append(f"|{'#' * filled}{'.' * (20 - filled)}| {step}/{total_steps}")
        if epoch:
            parts.append(f"epoch {epoch}")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if eta_seconds is not None:
            parts.append(f"eta {eta_seconds:.0f}s")
        line = " ".join(parts)
        if self.interactive:
            end = "\n" if stage != self.last_stage and self.last_stage else ""
            self.stream.write(f"{end}\r{line:<79}")
        elif stage != self.last_stage or step == total_steps:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_stage = stage


def default_out_dir(config: Config) -> Path:
    """Where ``sortloop train`` writes its adapters without ``--out``: beside the published
    models (``MODELS_DIR/finetuned``), each in a ``cli_...`` folder no run row claims."""
    return finetuned_root(config.models_dir)


def train_command(
    csv_path: str,
    test_csv: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    per_category: int | None = None,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
    cross_validation: bool = False,
    out: str | None = None,
    base_model: str | None = None,
    stderr: TextIO | None = None,
) -> dict[str, Any]:
    """Run ``sortloop train`` and return the result dict (the CLI prints it as JSON).

    Raises ``CsvError``, ``DataValidationError`` or ``ValueError`` (bad config)
    with a readable message.
    """
    stderr = stderr or sys.stderr
    with log_to(stderr):
        return _train(
            csv_path, test_csv, text_column, label_column, per_category, seed, method,
            cross_validation, out, base_model, stderr,
        )  # fmt: skip


@contextmanager
def log_to(stream: TextIO) -> Iterator[None]:
    """The engine's log lines (data checks, epochs, evaluation) on ``stream``, in the
    format a run's log has on its page (``shared.training.run_log.LOG_FORMAT``)."""
    from shared.training.run_log import LOG_FORMAT

    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in ("worker", "shared")]
    before = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # printed once, whatever the root logger does
    try:
        yield
    finally:
        for logger, level, propagate in before:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _train(
    csv_path: str,
    test_csv: str | None,
    text_column: str,
    label_column: str,
    per_category: int | None,
    seed: int,
    method: str,
    cross_validation: bool,
    out: str | None,
    base_model: str | None,
    stderr: TextIO,
) -> dict[str, Any]:
    import torch

    from shared.training_config import TrainingConfig
    from worker.fine_tuning.engine import as_categories, run_all

    started = time.perf_counter()
    config = TrainingConfig(method=method, seed=seed, cross_validation=cross_validation)
    if per_category is not None and per_category < 1:
        raise ValueError("--per-category must be at least 1")
    examples = read_examples(csv_path, text_column, label_column, stderr)
    if per_category:
        examples = sample_per_category(examples, per_category, seed)
    test = read_examples(test_csv, text_column, label_column, stderr) if test_csv else None
    labels = sorted({example["label"] for example in examples})
    if test is not None:
        unknown = sorted({example["label"] for example in test} - set(labels))
        if unknown:
            raise ValueError(f"the test file has labels the training file lacks: {unknown}")
    categories = as_categories(
        [{"name": label, "description": humanize(label)} for label in labels]
    )
    torch.manual_seed(seed)
    configured = Config.from_env()  # BASE_MODEL, BASE_MODEL_KIND, MODELS_DIR
    base = base_model or configured.base_model
    kind = configured.base_model_kind if base == configured.base_model else None
    out_dir = Path(out) if out else default_out_dir(configured)
    adapter_dir = out_dir / f"cli_{time.strftime('%Y%m%d-%H%M%S')}_{method}_seed{seed}"
    results = run_all(
        examples,
        categories,
        base,
        config,
        adapter_dir,
        test=test,
        progress=StderrProgress(stderr),
        kind=kind,
    )
    if stderr.isatty():
        stderr.write("\n")
    output = {key: results[key] for key in RESULT_KEYS}
    if cross_validation:
        output["cv_accuracy_mean"] = results["cv_accuracy_mean"]
        output["cv_accuracy_std"] = results["cv_accuracy_std"]
    output.update(
        labels=results["labels"],
        method=method,
        seed=seed,
        num_val=results["num_val"],
        improvement_over_baseline=results["improvement_over_baseline"],
        mcnemar_p_value=results["mcnemar_p_value"],
        calibration_error=results["calibration"]["ece"],
        baseline_calibration_error=results["baseline_calibration"]["ece"],
        # False: the head did better without the labels' humanized names as examples.
        descriptions_as_examples=(results["training"].get("linear_head") or {}).get(
            "descriptions_as_examples"
        ),
        # True: the parts of descriptions that list them were examples too.
        description_facets=(results["training"].get("linear_head") or {}).get("description_facets"),
        # {"block", "weight"}: the head also reads that block's pool (None: the last layer).
        middle_layer=(results["training"].get("linear_head") or {}).get("middle_layer"),
        # > 0: the head also matches a text's tokens with each category's (TokenBank).
        token_weight=(results["training"].get("linear_head") or {}).get("token_weight"),
        # Training texts whose labels the model doubts (text, label, suggested): check them.
        label_issues=[
            {key: value for key, value in issue.items() if key != "id"}
            for issue in results["training"].get("label_issues") or []
        ],
        reasons=results["verdict"]["reasons"],
        warnings=results["quality"]["warnings"],
        adapter_dir=str(adapter_dir),
        total_seconds=round(time.perf_counter() - started, 3),
    )
    return output


def run_train_command(**options: Any) -> None:
    """What ``sortloop train`` runs: the JSON on stdout, a readable error on failure."""
    import click

    from worker.fine_tuning.data_validator import DataValidationError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = train_command(**options)
    except (CsvError, DataValidationError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(result))
