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
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_curve as curve  # noqa: E402
from descriptions import calibration_error  # noqa: E402
from token_match import token_embedder  # noqa: E402

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

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from shared.classifier.embedding import TokenBank
    from worker.fine_tuning import linear_head
    from worker.fine_tuning.embedding_trainer import RECIPE, held_out_token_match
    from worker.fine_tuning.linear_head import best_head, fit_linear_head, fit_token_weight

    if args.odds:
        linear_head.LABEL_ISSUE_ODDS = args.odds
    embed = token_embedder()

    def softmax(logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def features(rows: list[tuple], middle: bool) -> np.ndarray:
        last = np.stack([r[0] for r in rows])
        return np.concatenate([last, 0.5 * np.stack([r[1] for r in rows])], 1) if middle else last

    def engine(rows: list[tuple], classes: np.ndarray, descriptions: list[tuple], seed: int):
        """The engine's head on these texts: (head, middle?, bank or None, held-out match)."""
        heads = [
            fit_linear_head(
                features(rows, middle), classes, features(descriptions, middle), seed=seed
            )
            for middle in (False, True)
        ]
        middle = best_head(heads) == 1
        matched, tokens, token_rows = held_out_token_match(
            [r[2] for r in rows],
            classes,
            [r[2] for r in descriptions],
            RECIPE["token_bank_texts_per_category"],
            seed,
        )
        head = fit_token_weight(heads[int(middle)], matched, classes)
        bank = TokenBank(tokens, token_rows, len(descriptions)) if head.token_weight else None
        return head, middle, bank, matched

    def scored(fitted, test_rows: list[tuple], truth: np.ndarray) -> tuple[float, float]:
        head, middle, bank, _ = fitted
        matched = bank.match_texts([r[2] for r in test_rows]).numpy() if bank else None
        logits = head.logits(features(test_rows, middle), matched)
        return float((logits.argmax(1) == truth).mean()), calibration_error(softmax(logits), truth)

    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"tasks": {}, "mean_of_3": {}, "seeds": seeds}
    results["label_issue_odds"] = linear_head.LABEL_ISSUE_ODDS
    for task in args.tasks.split(","):
        rows = curve.load_rows(task)
        labels = curve.labels_of(rows)
        index = {label: i for i, label in enumerate(labels)}
        test = curve.test_set(rows)
        test_rows = embed([e["text"] for e in test])
        truth = np.array([index[e["label"]] for e in test])
        descriptions = embed(labels)
        for k in (int(k) for k in args.ks.split(",")):
            for noise in (float(n) for n in args.noise.split(",")):
                scores: dict[str, list] = {name: [] for name in MODELS}
                counts = np.zeros(3, dtype=int)  # listed, wrong among them, made wrong
                for seed in seeds:
                    train, val = curve.training_sample(rows, k, seed)
                    examples = train + val
                    x_rows = embed([e["text"] for e in examples])
                    right = np.array([index[e["label"]] for e in examples])
                    rng = np.random.default_rng(1000 + seed)
                    made_wrong = rng.random(len(right)) < noise
                    given = right.copy()
                    shift = rng.integers(1, len(labels), made_wrong.sum())
                    given[made_wrong] = (right[made_wrong] + shift) % len(labels)

                    last = np.stack([r[0] for r in x_rows])
                    probe = LogisticRegression(C=10, max_iter=2000).fit(last, given)
                    probabilities = np.zeros((len(truth), len(labels)))
                    probabilities[:, probe.classes_] = probe.predict_proba(
                        np.stack([r[0] for r in test_rows])
                    )
                    scores["probe"].append(
                        (
                            float((probabilities.argmax(1) == truth).mean()),
                            calibration_error(probabilities, truth),
                        )
                    )
                    fitted = engine(x_rows, given, descriptions, seed)
                    scores["engine"].append(scored(fitted, test_rows, truth))
                    head, _, bank, matched = fitted
                    issues = linear_head.label_issues(head, matched if bank else None, given)
                    listed = np.zeros(len(given), dtype=bool)
                    listed[[issue.row for issue in issues]] = True
                    counts += [listed.sum(), (listed & made_wrong).sum(), made_wrong.sum()]
                    kept = np.flatnonzero(~listed)
                    refitted = (
                        engine([x_rows[i] for i in kept], given[kept], descriptions, seed)
                        if listed.any()
                        else fitted
                    )
                    scores["dropped"].append(scored(refitted, test_rows, truth))
                summary = {
                    name: {
                        "accuracy": round(float(np.mean([a for a, _ in scores[name]])), 4),
                        "ece": round(float(np.mean([e for _, e in scores[name]])), 4),
                    }
                    for name in MODELS
                }
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
        results["mean_of_3"][key] = {
            name: {
                metric: round(float(np.mean([e[name][metric] for e in entries])), 4)
                for metric in ("accuracy", "ece")
            }
            for name in MODELS
        }
        for count in ("listed", "wrong_listed", "wrong"):
            results["mean_of_3"][key][count] = int(sum(e[count] for e in entries))
    results["seconds"] = round(time.perf_counter() - started, 1)
    output = json.dumps(results, indent=2)
    (curve.RESULTS / args.output).write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
