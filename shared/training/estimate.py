"""How long a run should take on today's data, before it starts.

Scaled from the latest completed run of the same method, cross-validation choice and
base model (``POST /admin/api/training-estimate`` and the dashboard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.classifier.identity import infer_model_kind
from shared.models import FineTuningRun, TrainingExample
from shared.training.options import is_number, validate_training_config
from shared.training.runs import training_snapshot
from shared.training.snapshot import RunSnapshot
from shared.training_config import ADAPTS, DEFAULT_SPLIT, adapted_blocks

# Training time per example and epoch of an embedding lora run that adapts every block,
# relative to one that adapts the top block only (its frozen bottom runs once per text):
# used only when no completed run of the same kind exists (bench/README.md).
EVERY_BLOCK_COST = 4.0


def _adapts(run_or_config: Mapping[str, Any], kind: str, examples: int, categories: int) -> str:
    """What a run on ``examples`` training examples over ``categories`` categories adapts."""
    split = run_or_config.get("split") or DEFAULT_SPLIT
    per_category = examples * float(split[0]) / max(1, categories)
    return adapted_blocks(kind, str(run_or_config.get("method")), per_category)


def _examples_of(run: FineTuningRun) -> int:
    """All the examples a run took (train, validation and test), as a new run counts them;
    ``num_training_examples`` holds only its training split once the data was checked."""
    taken = RunSnapshot.from_dict(run.data_snapshot).example_ids
    return len(taken) if taken else int(run.num_training_examples or 0)


def _reference_adapts(run: FineTuningRun, kind: str) -> str:
    recorded = ((run.results or {}).get("training") or {}).get("adapted_blocks")
    if recorded in ADAPTS:
        return recorded
    categories = len(RunSnapshot.from_dict(run.data_snapshot).categories or run.label_set or [])
    return _adapts(run.training_config or {}, kind, _examples_of(run), categories)


def estimate_run_duration(session: Session, options: object, *, base_model: str) -> dict[str, Any]:
    """How long a run with ``options`` should take on today's data, before it starts.

    Scaled from the latest completed run of the same method, cross-validation
    choice and base model, preferring one that adapted the same blocks (an
    embedding ``lora`` run adapts every block from 12 training texts per category
    on, which costs more per example): its training time by examples and by
    maximum epochs, the rest (data checks, evaluation) by examples. ``seconds``
    is None (with the reason in ``basis``) until such a run exists. InvalidInput
    for bad options, as for start-training.
    """
    config = validate_training_config(options)
    example_ids, label_set = training_snapshot(session)
    examples = len(example_ids)
    kind = infer_model_kind(base_model)
    used = (
        session.scalar(
            select(func.count(func.distinct(TrainingExample.corrected_category))).where(
                TrainingExample.id.in_(example_ids)
            )
        )
        if example_ids
        else 0
    )
    adapts = _adapts(config, kind, examples, used or len(label_set))
    candidates = session.scalars(
        select(FineTuningRun)
        .where(
            FineTuningRun.status == "completed",
            FineTuningRun.base_model == base_model,
            FineTuningRun.started_at.is_not(None),
            FineTuningRun.completed_at.is_not(None),
            FineTuningRun.num_training_examples > 0,
        )
        .order_by(FineTuningRun.completed_at.desc(), FineTuningRun.id.desc())
        .limit(50)
    )
    same_method = [
        run
        for run in candidates
        if (run.training_config or {}).get("method") == config["method"]
        and bool((run.training_config or {}).get("cross_validation"))
        == bool(config["cross_validation"])
    ]
    reference = next(
        (run for run in same_method if _reference_adapts(run, kind) == adapts),
        same_method[0] if same_method else None,
    )
    if reference is None:
        return {
            "seconds": None,
            "num_examples": examples,
            "reference_run": None,
            "adapted_blocks": adapts,
            "basis": f"no completed {config['method']} run"
            + (" with cross-validation" if config["cross_validation"] else "")
            + " on this base model yet: the first one sets the estimate",
        }
    took = max(0.0, (reference.completed_at - reference.started_at).total_seconds())
    training = ((reference.results or {}).get("training") or {}).get("train_seconds")
    training = min(took, float(training)) if is_number(training) else took
    reference_examples = _examples_of(reference)
    size = examples / reference_examples
    reference_epochs = int((reference.training_config or {}).get("epochs") or 10)
    epochs = config["epochs"] / reference_epochs
    reference_adapts = _reference_adapts(reference, kind)
    cost = 1.0
    note = ""
    if reference_adapts != adapts and {reference_adapts, adapts} == {"top block", "every block"}:
        cost = EVERY_BLOCK_COST if adapts == "every block" else 1 / EVERY_BLOCK_COST
        phrase = {"top block": "the top block", "every block": "every block"}
        note = (
            f"; LoRA adapted {phrase[reference_adapts]} of the encoder there and will adapt "
            f"{phrase[adapts]} here, so its training time per example is taken {cost:g} times"
        )
    seconds = training * size * epochs * cost + (took - training) * size
    return {
        "seconds": round(seconds, 1),
        "num_examples": examples,
        "adapted_blocks": adapts,
        "reference_run": {
            "run_id": reference.id,
            "num_examples": reference_examples,
            "seconds": round(took, 1),
            "epochs": reference_epochs,
            "adapted_blocks": reference_adapts,
        },
        "basis": (
            f"scaled from run {reference.id} ({reference_examples} examples, "
            f"up to {reference_epochs} epochs, {took:.0f} s){note}; "
            "early stopping can make it shorter"
        ),
    }
