"""Descriptions as examples of their categories: where they help, and where they mislead.

The head (``worker.fine_tuning.linear_head``) counts each category's description as one
more example of it, unless its cross-fitted loss says the texts alone do better. This
measures that choice on the learning curve's tasks and splits (``learning_curve.py``),
on the frozen encoder, for three kinds of descriptions:

- ``names``: the category names the datasets give (what the learning curve uses);
- ``generic``: "category 1", "category 2", ... (names that say nothing);
- ``misleading``: each category described by the next one's name (written for another).

Per task, k and kind: the accuracy and expected calibration error of the head that
chooses (the product), of the head forced to keep the descriptions (before) and forced
to leave them out, and of the frozen probe; how often the descriptions were kept; and
the mean over tasks. JSON on stdout and in ``results/descriptions.json``.

    python bench/descriptions.py --ks 4,8,16 --seeds 0,1,2

Not a test: nothing here is time-gated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_curve as curve  # noqa: E402
import machine  # noqa: E402

KINDS = ("names", "generic", "misleading")
HEADS = ("chosen", "with", "without", "probe")


def describe(labels: list[str], kind: str) -> list[str]:
    if kind == "names":
        return list(labels)
    if kind == "generic":
        return [f"category {i + 1}" for i in range(len(labels))]
    return [labels[(i + 1) % len(labels)] for i in range(len(labels))]


def embedder():
    """``embed(texts) -> array``: the frozen encoder, each text embedded once per process."""
    import numpy as np
    import torch

    from shared.classifier import default_base_model, load_base_classifier

    torch.set_num_threads(2)
    encoder = load_base_classifier(default_base_model())
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in cache})
        if missing:
            for text, row in zip(missing, encoder.encode(missing).numpy(), strict=True):
                cache[text] = row.astype(np.float64)
        return np.stack([cache[t] for t in texts])

    return embed


def calibration_error(probabilities, truth) -> float:
    """Expected calibration error over 10 confidence bins."""
    confidence, right = probabilities.max(1), probabilities.argmax(1) == truth
    bins = (confidence * 10).astype(int).clip(0, 9)
    return float(
        sum(
            (bins == b).mean() * abs(confidence[bins == b].mean() - right[bins == b].mean())
            for b in range(10)
            if (bins == b).any()
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(curve.TASKS))
    parser.add_argument("--ks", default="4,8,16")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from worker.fine_tuning.linear_head import fit_linear_head

    embed = embedder()

    def softmax(logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    started = time.perf_counter()
    ks = [int(k) for k in args.ks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"tasks": {}, "mean": {}, "machine": machine.describe()}
    for task in args.tasks.split(","):
        rows = curve.load_rows(task)
        labels = curve.labels_of(rows)
        index = {label: i for i, label in enumerate(labels)}
        test = curve.test_set(rows)
        test_x = embed([e["text"] for e in test])
        truth = np.array([index[e["label"]] for e in test])
        for k in ks:
            for kind in KINDS:
                descriptions = embed(describe(labels, kind))
                scores: dict[str, list] = {head: [] for head in HEADS}
                kept = 0
                for seed in seeds:
                    train, val = curve.training_sample(rows, k, seed)
                    examples = train + val
                    x = embed([e["text"] for e in examples])
                    y = np.array([index[e["label"]] for e in examples])
                    for head, use in (("chosen", None), ("with", True), ("without", False)):
                        fitted = fit_linear_head(
                            x, y, descriptions, seed=seed, use_descriptions=use
                        )
                        logits = fitted.logits(test_x)
                        scores[head].append(
                            (
                                (logits.argmax(1) == truth).mean(),
                                calibration_error(softmax(logits), truth),
                            )
                        )
                        if use is None:
                            kept += fitted.descriptions_as_examples
                    probe = LogisticRegression(C=10, max_iter=2000).fit(x, y)
                    probabilities = probe.predict_proba(test_x)
                    scores["probe"].append(
                        (
                            (probabilities.argmax(1) == truth).mean(),
                            calibration_error(probabilities, truth),
                        )
                    )
                entry = {
                    head: {
                        "accuracy": round(float(np.mean([a for a, _ in values])), 4),
                        "ece": round(float(np.mean([e for _, e in values])), 4),
                    }
                    for head, values in scores.items()
                }
                entry["descriptions_kept"] = f"{kept}/{len(seeds)}"
                results["tasks"].setdefault(task, {}).setdefault(str(k), {})[kind] = entry
                print(task, k, kind, json.dumps(entry), file=sys.stderr, flush=True)
    for k in ks:
        for kind in KINDS:
            per_task = [results["tasks"][t][str(k)][kind] for t in results["tasks"]]
            results["mean"].setdefault(str(k), {})[kind] = {
                head: round(float(np.mean([e[head]["accuracy"] for e in per_task])), 4)
                for head in HEADS
            }
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["seeds"] = seeds
    output = json.dumps(results, indent=2)
    (curve.RESULTS / "descriptions.json").write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
