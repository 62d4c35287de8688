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

HEADS = ("head", "words", "always")


def token_embedder():
    """``embed(texts) -> [(last, middle, tokens)]``: the last layer's and block 3's
    normalised pools and the last layer's content tokens, each text embedded once."""
    import numpy as np
    import torch
    import torch.nn.functional as functional

    from shared.classifier import default_base_model, load_base_classifier
    from shared.classifier.embedding import content_tokens, mean_pool

    torch.set_num_threads(2)
    encoder = load_base_classifier(default_base_model())
    cache: dict[str, tuple] = {}

    def embed(texts: list[str]) -> list[tuple]:
        missing = sorted({t for t in texts if t not in cache})
        with torch.inference_mode():
            for order, batch in encoder._batches(missing):
                states = encoder.model(**batch, output_hidden_states=True).hidden_states
                mask = batch["attention_mask"]
                pools = [
                    functional.normalize(mean_pool(s.float(), mask), dim=-1).numpy()
                    for s in (states[-1], states[3])
                ]
                tokens = content_tokens(states[-1], mask)
                for row, index in enumerate(order):
                    cache[missing[index]] = (
                        pools[0][row].astype(np.float64),
                        pools[1][row].astype(np.float64),
                        tokens[row],
                    )
        return [cache[t] for t in texts]

    return embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(curve.TASKS))
    parser.add_argument("--ks", default="4,8,16,32")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()

    import numpy as np

    from shared.classifier.embedding import TokenBank
    from worker.fine_tuning.embedding_trainer import RECIPE, held_out_token_match
    from worker.fine_tuning.linear_head import (
        TOKEN_WEIGHT_BOUND,
        best_head,
        fit_linear_head,
        fit_token_weight,
    )

    embed = token_embedder()

    def softmax(logits: np.ndarray) -> np.ndarray:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def features(rows: list[tuple], middle: bool) -> np.ndarray:
        last = np.stack([r[0] for r in rows])
        return np.concatenate([last, 0.5 * np.stack([r[1] for r in rows])], 1) if middle else last

    started = time.perf_counter()
    ks = [int(k) for k in args.ks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"tasks": {}, "mean": {}, "seeds": seeds}
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
            scores: dict[str, list] = {h: [] for h in (*HEADS, "kept")}
            for seed in seeds:
                train, val = curve.training_sample(rows, k, seed)
                examples = train + val
                x_rows = embed([e["text"] for e in examples])
                y = np.array([index[e["label"]] for e in examples])
                heads = [
                    fit_linear_head(
                        features(x_rows, middle), y, features(description_rows, middle), seed=seed
                    )
                    for middle in (False, True)
                ]
                middle = best_head(heads) == 1
                head = heads[int(middle)]
                # The engine's bank and held-out matches (``EmbeddingTrainer._with_token_match``).
                matched, tokens, token_rows = held_out_token_match(
                    [r[2] for r in x_rows],
                    y,
                    [r[2] for r in description_rows],
                    RECIPE["token_bank_texts_per_category"],
                    seed,
                )
                words = fit_token_weight(head, matched, y)
                unbounded = fit_token_weight(head, matched, y, lowest=-TOKEN_WEIGHT_BOUND)
                bank = TokenBank(tokens, token_rows, len(labels))
                test_matched = bank.match_texts([r[2] for r in test_rows]).numpy()
                test_x = features(test_rows, middle)
                for name, fitted in (("head", head), ("words", words), ("always", unbounded)):
                    logits = fitted.logits(test_x, test_matched)
                    scores[name].append(
                        (
                            float((logits.argmax(1) == truth).mean()),
                            calibration_error(softmax(logits), truth),
                        )
                    )
                scores["kept"].append(words.token_weight > 0)
            summary = {
                name: {
                    "accuracy": round(float(np.mean([a for a, _ in scores[name]])), 4),
                    "ece": round(float(np.mean([e for _, e in scores[name]])), 4),
                }
                for name in HEADS
            }
            summary["kept"] = f"{sum(scores['kept'])}/{len(seeds)}"
            results["tasks"].setdefault(task, {})[str(k)] = summary
            print(task, k, json.dumps(summary), file=sys.stderr, flush=True)
    for k in ks:
        for name, tasks in (("mean_of_3", curve.DATASETS), ("mean_of_5", curve.TASKS)):
            entries = [
                results["tasks"][t][str(k)]
                for t in tasks
                if t in results["tasks"] and str(k) in results["tasks"][t]
            ]
            if len(entries) != len(tasks):
                continue
            results["mean"].setdefault(str(k), {})[name] = {
                head: {
                    "accuracy": round(float(np.mean([e[head]["accuracy"] for e in entries])), 4),
                    "ece": round(float(np.mean([e[head]["ece"] for e in entries])), 4),
                }
                for head in HEADS
            }
    results["seconds"] = round(time.perf_counter() - started, 1)
    output = json.dumps(results, indent=2)
    (curve.RESULTS / "token_match.json").write_text(output + "\n")
    print(output)


if __name__ == "__main__":
    main()
