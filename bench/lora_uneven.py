"""``lora`` on uneven labelled sets: its cross-entropy with every category weighing the
same (``CLASS_BALANCED``, the product) and with every text weighing the same (before).

The head every run ends with was already fitted "balanced" (``bench/imbalance.py``);
this measures the adapter's own loss. Half the categories of each task (drawn per
seed, ``imbalance.uneven_sample``) get ``--few`` labelled texts, the other half
``--many``; each run is the product's: ``engine.validate``, ``engine.train_model`` with
method ``lora``, ``engine.evaluate_model`` on the learning curve's test texts.
Accuracy, macro F1, the mean F1 of the categories with few texts, and expected
calibration error, per run and as means; JSON on stdout and in
``results/lora_uneven.json``.

    python bench/lora_uneven.py --tasks banking,intents,hwu --seeds 0,1,2

Not a test: nothing here is time-gated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_curve as curve  # noqa: E402
import machine  # noqa: E402
from imbalance import uneven_sample  # noqa: E402

METRICS = ("accuracy", "macro_f1", "few_f1", "ece")


def one_run(task: str, seed: int, few: int, many: int, balanced: bool) -> dict:
    import numpy as np

    from shared.classifier import CategorySpec, default_base_model
    from shared.training_config import TrainingConfig
    from worker.fine_tuning import embedding_trainer, engine

    embedding_trainer.CLASS_BALANCED = balanced
    rows = curve.load_rows(task)
    labels = curve.labels_of(rows)
    examples, rare = uneven_sample(rows, labels, few, many, seed)
    examples = [{**example, "id": f"e{i}"} for i, example in enumerate(examples)]
    categories = [CategorySpec(label, label) for label in labels]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        checked = engine.validate(examples, (0.85, 0.15, 0.0), seed)
        info = engine.train_model(
            engine.examples_by_ids(examples, checked["split"]["train"]),
            engine.examples_by_ids(examples, checked["split"]["val"]),
            TrainingConfig(method="lora", seed=seed),
            default_base_model(),
            categories,
            output_dir=Path(scratch) / "adapter",
        )
        evaluated = engine.evaluate_model(
            info["adapter_dir"], default_base_model(), curve.test_set(rows), categories
        )
    per_category = evaluated["per_category_f1"]
    return {
        "task": task,
        "seed": seed,
        "balanced": balanced,
        "accuracy": round(evaluated["accuracy"], 4),
        "macro_f1": round(evaluated["macro_f1"], 4),
        "few_f1": round(float(np.mean([per_category[label] for label in rare])), 4),
        "ece": round(evaluated["calibration"]["ece"], 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(curve.DATASETS))
    parser.add_argument("--few", type=int, default=3)
    parser.add_argument("--many", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    runs = []
    for task in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for balanced in (True, False):
                runs.append(one_run(task, seed, args.few, args.many, balanced))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)

    def mean(selected: list[dict]) -> dict:
        return {key: round(sum(r[key] for r in selected) / len(selected), 4) for key in METRICS}

    summary = {
        ("balanced" if balanced else "every text the same"): {
            **{
                task: mean([r for r in runs if r["task"] == task and r["balanced"] == balanced])
                for task in args.tasks.split(",")
            },
            "mean": mean([r for r in runs if r["balanced"] == balanced]),
        }
        for balanced in (True, False)
    }
    result = {"few": args.few, "many": args.many, "summary": summary, "runs": runs}
    result["machine"] = machine.describe()
    output = json.dumps(result, indent=2)
    (curve.RESULTS / "lora_uneven.json").write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
