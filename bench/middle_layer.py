"""A middle block beside the last layer: what the head gains from reading it, per task.

The head (``worker.fine_tuning.embedding_trainer``, method ``head``) is fitted twice on
each run's labelled texts: on the encoder's last layer (mean-pooled, normalised), and on
that beside the middle block's pool (``shared.classifier.embedding.MiddleLayer``); it
keeps the one with the lower cross-fitted loss. This measures, on the learning curve's
tasks and splits (``learning_curve.py``) with the frozen encoder, for each block and
weight asked for:

- ``last``: the last layer alone (the head before);
- ``always``: the middle block always read beside it;
- ``chosen``: the product's rule, the lower cross-fitted loss of the two (and how often
  the middle block was kept).

Accuracy and expected calibration error per task and k (3 seeds), and the mean over the
three datasets of issue 19 and over all five tasks. JSON on stdout and in
``results/middle_layer.json`` (``results/middle_layer_sweep.json`` for several settings).

    python bench/middle_layer.py                               # the recipe: block 3, 0.5
    python bench/middle_layer.py --blocks 2,3,4 --weights 0.5,0.7,1.0

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
from descriptions import calibration_error  # noqa: E402

HEADS = ("last", "always", "chosen")


def block_embedder():
    """``embed(texts) -> array [n, blocks + 1, dim]``: every block's normalised mean pool
    (index 0: the token embeddings), each text embedded once per process."""
    import numpy as np
    import torch
    import torch.nn.functional as functional

    from shared.classifier import default_base_model, load_base_classifier
    from shared.classifier.embedding import mean_pool

    torch.set_num_threads(2)
    encoder = load_base_classifier(default_base_model())
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in cache})
        with torch.inference_mode():
            for order, batch in encoder._batches(missing):
                states = encoder.model(**batch, output_hidden_states=True).hidden_states
                pooled = torch.stack(
                    [
                        functional.normalize(mean_pool(s.float(), batch["attention_mask"]), dim=-1)
                        for s in states
                    ],
                    dim=1,
                )
                for index, row in zip(order, pooled.numpy(), strict=True):
                    cache[missing[index]] = row.astype(np.float64)
        return np.stack([cache[t] for t in texts])

    return embed, encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(curve.TASKS))
    parser.add_argument("--ks", default="4,8,16")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--blocks", default="3")
    parser.add_argument("--weights", default="0.5")
    args = parser.parse_args()

    import numpy as np

    from shared.classifier.embedding import MiddleLayer
    from worker.fine_tuning.linear_head import best_head, fit_linear_head

    embed, encoder = block_embedder()

    def softmax(logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    started = time.perf_counter()
    ks = [int(k) for k in args.ks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = [(int(b), float(w)) for b in args.blocks.split(",") for w in args.weights.split(",")]
    results: dict = {"tasks": {}, "mean": {}, "seeds": seeds}
    results["machine"] = machine.describe()

    # The features here are the classifier's own (a check, not an assumption).
    sample = ["set an alarm for seven", "what's the weather like in paris tomorrow"]
    encoder.middle_layer = MiddleLayer(*settings[0])
    served = encoder.encode(sample).numpy()
    blocks = embed(sample)
    ours = np.concatenate([blocks[:, -1], settings[0][1] * blocks[:, settings[0][0]]], axis=1)
    results["max_difference_from_the_classifier"] = float(np.abs(served - ours).max())

    def features(rows: np.ndarray, block: int | None, weight: float) -> np.ndarray:
        if block is None:
            return rows[:, -1]
        return np.concatenate([rows[:, -1], weight * rows[:, block]], axis=1)

    def scored(head, test_x: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
        logits = head.logits(test_x)
        return float((logits.argmax(1) == truth).mean()), calibration_error(softmax(logits), truth)

    for task in args.tasks.split(","):
        rows = curve.load_rows(task)
        labels = curve.labels_of(rows)
        index = {label: i for i, label in enumerate(labels)}
        test = curve.test_set(rows)
        test_rows = embed([e["text"] for e in test])
        truth = np.array([index[e["label"]] for e in test])
        description_rows = embed(labels)
        for k in ks:
            if task == "hwu64" and k > 16:
                continue  # its smallest intent has 27 training texts
            per_setting: dict[str, dict[str, list]] = {}
            for seed in seeds:
                train, val = curve.training_sample(rows, k, seed)
                examples = train + val
                x_rows = embed([e["text"] for e in examples])
                y = np.array([index[e["label"]] for e in examples])
                last = fit_linear_head(
                    features(x_rows, None, 0), y, features(description_rows, None, 0), seed=seed
                )
                last_score = scored(last, features(test_rows, None, 0), truth)
                for block, weight in settings:
                    both = fit_linear_head(
                        features(x_rows, block, weight),
                        y,
                        features(description_rows, block, weight),
                        seed=seed,
                    )
                    both_score = scored(both, features(test_rows, block, weight), truth)
                    kept = best_head([last, both]) == 1
                    entry = per_setting.setdefault(
                        f"block {block}, weight {weight:g}", {h: [] for h in (*HEADS, "kept")}
                    )
                    entry["last"].append(last_score)
                    entry["always"].append(both_score)
                    entry["chosen"].append(both_score if kept else last_score)
                    entry["kept"].append(kept)
            for setting, entry in per_setting.items():
                summary = {
                    head: {
                        "accuracy": round(float(np.mean([a for a, _ in entry[head]])), 4),
                        "ece": round(float(np.mean([e for _, e in entry[head]])), 4),
                    }
                    for head in HEADS
                }
                summary["middle_kept"] = f"{sum(entry['kept'])}/{len(seeds)}"
                results["tasks"].setdefault(task, {}).setdefault(str(k), {})[setting] = summary
                print(task, k, setting, json.dumps(summary), file=sys.stderr, flush=True)
    for k in ks:
        for setting in {s for t in results["tasks"].values() for s in t.get(str(k), {})}:
            for name, tasks in (("mean_of_3", curve.DATASETS), ("mean_of_5", curve.TASKS)):
                entries = [
                    results["tasks"][t][str(k)][setting]
                    for t in tasks
                    if t in results["tasks"] and str(k) in results["tasks"][t]
                ]
                if len(entries) != len(tasks):
                    continue
                results["mean"].setdefault(str(k), {}).setdefault(setting, {})[name] = {
                    head: round(float(np.mean([e[head]["accuracy"] for e in entries])), 4)
                    for head in HEADS
                }
    results["seconds"] = round(time.perf_counter() - started, 1)
    output = json.dumps(results, indent=2)
    # The recipe's setting alone, or a sweep of several beside it.
    name = "middle_layer.json" if len(settings) == 1 else "middle_layer_sweep.json"
    (curve.RESULTS / name).write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
