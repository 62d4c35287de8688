"""Word by word: what the head gains from matching a text's tokens with each category's.

The head (``worker.fine_tuning.linear_head``) is fitted as the engine fits it (the
middle block where its cross-fitted loss keeps it), then ``fit_token_weight`` gives the
token match (``shared.classifier.embedding.TokenBank``) a weight from the head's
cross-fitted logits and each labelled text's match with every category's tokens but its
own. This measures, on the learning curve's tasks and splits (``learning_curve.py``)
with the frozen encoder, 3 seeds:

- ``head``: the head alone (the recipe before);
- ``words``: the head with the token match, as the engine now exports it;
- ``always``: the same with the weight fitted without its lower bound of 0 (what the
  bound protects against);
- ``kept``: in how many runs the fit gave the match a weight.

Accuracy and expected calibration error per task and k, and the mean over the three
datasets of issue 19 and over all five tasks. JSON on stdout and in
``results/token_match.json``.

    python bench/token_match.py [--tasks banking,intents,hwu] [--ks 4,8,16,32]

Not a test: nothing here is time-gated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import _common as common
import learning_curve as curve
import machine
import numpy as np

HEADS = ("head", "words", "always")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(curve.TASKS))
    parser.add_argument("--ks", default="4,8,16,32")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()

    from worker.fine_tuning.linear_head import TOKEN_WEIGHT_BOUND, fit_token_weight

    embed = common.token_embedder()
    started = time.perf_counter()
    ks = [int(k) for k in args.ks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"tasks": {}, "mean": {}, "seeds": seeds}
    results["machine"] = machine.describe()
    for task in args.tasks.split(","):
        data = common.task_set(task, embed)
        for k in ks:
            if task == "hwu64" and k > 16:
                continue  # its smallest intent has 27 training texts
            scores: dict[str, list] = {h: [] for h in HEADS}
            kept = []
            for seed in seeds:
                train, val = curve.training_sample(data.rows, k, seed)
                examples = train + val
                x_rows = embed([e["text"] for e in examples])
                y = np.array([data.index[e["label"]] for e in examples])
                fitted = common.engine_head(x_rows, y, data.descriptions, seed, data.facets)
                unbounded = fit_token_weight(
                    fitted.plain, fitted.matched, y, lowest=-TOKEN_WEIGHT_BOUND
                )
                found = fitted.scores(data.test, data.truth, fitted.plain, fitted.head, unbounded)
                for name, score in zip(HEADS, found, strict=True):
                    scores[name].append(score)
                kept.append(fitted.head.token_weight > 0)
            summary: dict = {name: common.mean_scores(scores[name]) for name in HEADS}
            summary["kept"] = f"{sum(kept)}/{len(seeds)}"
            results["tasks"].setdefault(task, {})[str(k)] = summary
            print(task, k, json.dumps(summary), file=sys.stderr, flush=True)
    for k in ks:
        for name, tasks in (("mean_of_3", curve.DATASETS), ("mean_of_5", curve.TASKS)):
            entries = [
                results["tasks"][t][str(k)]
                for t in tasks
                if t in results["tasks"] and str(k) in results["tasks"][t]
            ]
            if len(entries) == len(tasks):
                results["mean"].setdefault(str(k), {})[name] = common.mean_over_tasks(
                    entries, HEADS
                )
    results["seconds"] = round(time.perf_counter() - started, 1)
    output = json.dumps(results, indent=2)
    (curve.RESULTS / "token_match.json").write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
