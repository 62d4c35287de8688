"""Wrong labels: what the engine learns when some labelled texts carry the wrong category,
and how well its list of labels to check (``linear_head.label_issues``) finds them.

Admins make mistakes: a share ``noise`` of the labelled texts (k a category, the learning
curve's splits, ``learning_curve.py``) gets a random other category (seeded per run).
With the frozen encoder, 3 seeds, each task, k and noise:

- ``probe``: issue 19's baseline, ``LogisticRegression(C=10)`` on the frozen embeddings;
- ``engine``: the head as the engine fits it (the middle block and the token match where
  their cross-fitted losses keep them), trained on every label as given;
- ``dropped``: the same refitted without the texts it lists (what dropping them from
  training would give: the engine does not, bench/README.md says why);
- ``listed`` / ``wrong_listed`` / ``wrong``: texts listed to check, how many of them were
  the ones made wrong, and how many were made wrong.

Accuracy and expected calibration error on the test texts (their own labels), per task
and the mean over the three datasets of issue 19. JSON on stdout and in
``results/label_noise.json``.

    python bench/label_noise.py [--tasks banking,intents,hwu] [--ks 8,16] [--noise 0,0.1,0.2]

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
from descriptions import calibration_error

MODELS = ("probe", "engine", "dropped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(curve.DATASETS))
    parser.add_argument("--ks", default="8,16")
    parser.add_argument("--noise", default="0,0.1,0.2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--odds", type=float, help="LABEL_ISSUE_ODDS to try instead")
    parser.add_argument("--output", default="label_noise.json")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    from worker.fine_tuning import linear_head

    if args.odds:
        linear_head.LABEL_ISSUE_ODDS = args.odds
    embed = common.token_embedder()
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"tasks": {}, "mean_of_3": {}, "seeds": seeds}
    results["machine"] = machine.describe()
    results["label_issue_odds"] = linear_head.LABEL_ISSUE_ODDS
    for task in args.tasks.split(","):
        data = common.task_set(task, embed)
        categories = len(data.labels)
        for k in (int(k) for k in args.ks.split(",")):
            for noise in (float(n) for n in args.noise.split(",")):
                scores: dict[str, list] = {name: [] for name in MODELS}
                counts = np.zeros(3, dtype=int)  # listed, wrong among them, made wrong
                for seed in seeds:
                    train, val = curve.training_sample(data.rows, k, seed)
                    examples = train + val
                    x_rows = embed([e["text"] for e in examples])
                    right = np.array([data.index[e["label"]] for e in examples])
                    rng = np.random.default_rng(1000 + seed)
                    made_wrong = rng.random(len(right)) < noise
                    given = right.copy()
                    shift = rng.integers(1, categories, made_wrong.sum())
                    given[made_wrong] = (right[made_wrong] + shift) % categories

                    last = np.stack([r[0] for r in x_rows])
                    probe = LogisticRegression(C=10, max_iter=2000).fit(last, given)
                    probabilities = np.zeros((len(data.truth), categories))
                    probabilities[:, probe.classes_] = probe.predict_proba(
                        np.stack([r[0] for r in data.test])
                    )
                    scores["probe"].append(
                        (
                            float((probabilities.argmax(1) == data.truth).mean()),
                            calibration_error(probabilities, data.truth),
                        )
                    )
                    fitted = common.engine_head(x_rows, given, data.descriptions, seed, data.facets)
                    scores["engine"] += fitted.scores(data.test, data.truth)
                    issues = linear_head.label_issues(fitted.head, fitted.matched, given)
                    listed = np.zeros(len(given), dtype=bool)
                    listed[[issue.row for issue in issues]] = True
                    counts += [listed.sum(), (listed & made_wrong).sum(), made_wrong.sum()]
                    kept = np.flatnonzero(~listed)
                    refitted = (
                        common.engine_head(
                            [x_rows[i] for i in kept],
                            given[kept],
                            data.descriptions,
                            seed,
                            data.facets,
                        )
                        if listed.any()
                        else fitted
                    )
                    scores["dropped"] += refitted.scores(data.test, data.truth)
                summary: dict = {name: common.mean_scores(scores[name]) for name in MODELS}
                summary.update(listed=int(counts[0]), wrong_listed=int(counts[1]))
                summary["wrong"] = int(counts[2])
                key = f"k={k} noise={noise:g}"
                results["tasks"].setdefault(task, {})[key] = summary
                print(task, key, json.dumps(summary), file=sys.stderr, flush=True)
    keys = {key for task in results["tasks"].values() for key in task}
    for key in sorted(keys):
        entries = [
            results["tasks"][t][key] for t in curve.DATASETS if key in results["tasks"].get(t, {})
        ]
        if len(entries) != len(curve.DATASETS):
            continue
        results["mean_of_3"][key] = common.mean_over_tasks(entries, MODELS)
        for count in ("listed", "wrong_listed", "wrong"):
            results["mean_of_3"][key][count] = int(sum(e[count] for e in entries))
    results["seconds"] = round(time.perf_counter() - started, 1)
    output = json.dumps(results, indent=2)
    (curve.RESULTS / args.output).write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
