"""Uneven labelled sets: the head with every category weighing the same, and without.

Corrections come unevenly: a category the admins review often has many labelled texts,
a new or rare one a few. Here half the categories of each task (drawn per seed) get
``--few`` labelled texts and the other half ``--many``, from the learning curve's tasks
(``learning_curve.py``, frozen encoder). The head (``worker.fine_tuning.linear_head``)
is fitted with ``CLASS_WEIGHT = "balanced"`` (the product) and with ``None`` (before),
and scored on the learning curve's test texts, which hold every category equally
(``balanced``, and ``few``: the categories with few texts), and on the same texts
weighted to the labelled set's own proportions (``matched``: a stream where the rare
categories are rare too). Accuracy and expected calibration error, per task and the
mean over tasks; JSON on stdout and in ``results/imbalance.json``.

    python bench/imbalance.py --few 3 --many 16 --seeds 0,1,2

Not a test: nothing here is time-gated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_curve as curve  # noqa: E402
import machine  # noqa: E402
from descriptions import calibration_error, embedder  # noqa: E402


def uneven_sample(rows: list[dict], labels: list[str], few: int, many: int, seed: int):
    """(examples, the categories given ``few``): half the categories, drawn per seed."""
    rare = set(random.Random(seed).sample(labels, len(labels) // 2))
    examples = []
    for label in labels:
        members = [r for r in rows if r["split"] == "train" and r["label"] == label]
        picked = random.Random(f"{seed}:{label}").sample(
            members, min(len(members), few if label in rare else many)
        )
        examples += [{"text": r["text"], "label": label} for r in picked]
    return examples, rare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(curve.TASKS))
    parser.add_argument("--few", type=int, default=3)
    parser.add_argument("--many", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()

    import numpy as np

    from worker.fine_tuning import linear_head

    embed = embedder()
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"few": args.few, "many": args.many, "seeds": seeds, "tasks": {}}
    results["machine"] = machine.describe()
    for task in args.tasks.split(","):
        rows = curve.load_rows(task)
        labels = curve.labels_of(rows)
        index = {label: i for i, label in enumerate(labels)}
        test = curve.test_set(rows)
        test_x = embed([e["text"] for e in test])
        truth = np.array([index[e["label"]] for e in test])
        descriptions = embed(labels)
        scores: dict[str, list] = {}
        for seed in seeds:
            examples, rare = uneven_sample(rows, labels, args.few, args.many, seed)
            x = embed([e["text"] for e in examples])
            y = np.array([index[e["label"]] for e in examples])
            share = np.bincount(y, minlength=len(labels)) / len(y)
            weight = (share / (np.bincount(truth, minlength=len(labels)) / len(truth)))[truth]
            matched = np.random.default_rng(seed).choice(
                len(truth), size=len(truth), p=weight / weight.sum()
            )
            in_rare = np.isin(truth, [index[label] for label in rare])
            for name, class_weight in (("balanced", "balanced"), ("none", None)):
                linear_head.CLASS_WEIGHT = class_weight
                logits = linear_head.fit_linear_head(x, y, descriptions, seed=seed).logits(test_x)
                right = logits.argmax(1) == truth
                probabilities = np.exp(logits - logits.max(1, keepdims=True))
                probabilities /= probabilities.sum(1, keepdims=True)
                scores.setdefault(name, []).append(
                    (
                        right.mean(),
                        right[in_rare].mean(),
                        (right * weight).sum() / weight.sum(),
                        calibration_error(probabilities, truth),
                        calibration_error(probabilities[matched], truth[matched]),
                    )
                )
        keys = ("balanced_test", "few_categories", "matched_test", "ece_balanced", "ece_matched")
        results["tasks"][task] = {
            name: dict(zip(keys, np.round(np.mean(values, 0), 4).tolist(), strict=True))
            for name, values in scores.items()
        }
        print(task, json.dumps(results["tasks"][task]), file=sys.stderr, flush=True)
    results["mean"] = {
        name: {
            key: round(float(np.mean([t[name][key] for t in results["tasks"].values()])), 4)
            for key in keys
        }
        for name in ("balanced", "none")
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    output = json.dumps(results, indent=2)
    (curve.RESULTS / "imbalance.json").write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
