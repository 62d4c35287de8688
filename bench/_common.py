"""What the frozen-feature benchmark scripts share (``token_match.py``, ``label_noise.py``).

Imported by scripts run from ``bench/`` (``learning_curve``, imported first, sets the
offline environment and the import path). The embedder that reads each text once (the
last layer's and block 3's pools and its content tokens), each task's test set, the head
as the engine fits it (the middle block and the token match where their cross-fitted
losses keep them), a softmax, and the mean of runs and of tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import learning_curve as curve  # sets the offline environment first
import numpy as np
from descriptions import calibration_error

Rows = list[tuple]  # per text: (last layer's pool, block 3's pool, content tokens)


def token_embedder() -> Callable[[list[str]], Rows]:
    """``embed(texts) -> [(last, middle, tokens)]``: the last layer's and block 3's
    normalised pools and the last layer's content tokens, each text embedded once."""
    import torch
    import torch.nn.functional as functional

    from shared.classifier import default_base_model, load_base_classifier
    from shared.classifier.embedding import content_tokens, mean_pool

    torch.set_num_threads(2)
    encoder = load_base_classifier(default_base_model())
    cache: dict[str, tuple] = {}

    def embed(texts: list[str]) -> Rows:
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


@dataclass(frozen=True)
class TaskSet:
    """A task's rows and labels, and its test texts and descriptions, embedded."""

    rows: list[dict[str, str]]
    labels: list[str]
    index: dict[str, int]
    test: Rows
    truth: np.ndarray
    descriptions: Rows
    # The parts of the descriptions that list them and their categories (the engine's
    # ``linear_head.description_facets``; None where no description lists parts).
    facets: tuple[Rows, np.ndarray] | None = None


def task_set(task: str, embed: Callable[[list[str]], Rows]) -> TaskSet:
    rows = curve.load_rows(task)
    labels = curve.labels_of(rows)
    index = {label: i for i, label in enumerate(labels)}
    test = curve.test_set(rows)
    return TaskSet(
        rows=rows,
        labels=labels,
        index=index,
        test=embed([e["text"] for e in test]),
        truth=np.array([index[e["label"]] for e in test]),
        descriptions=embed(labels),
        facets=_facets(labels, embed),
    )


def _facets(labels: list[str], embed: Callable[[list[str]], Rows]) -> tuple | None:
    from worker.fine_tuning.linear_head import description_facets

    texts, owners = description_facets(labels)
    return (embed(texts), np.array(owners)) if texts else None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def features(rows: Rows, middle: bool) -> np.ndarray:
    """The head's features: the last layer's pool, with block 3's at weight 0.5 beside it."""
    last = np.stack([r[0] for r in rows])
    return np.concatenate([last, 0.5 * np.stack([r[1] for r in rows])], 1) if middle else last


@dataclass(frozen=True)
class EngineHead:
    """The head as ``EmbeddingTrainer`` fits it on frozen features."""

    plain: Any  # LinearHead before the token match (the middle block where it helps)
    head: Any  # the same with the token match where ``fit_token_weight`` keeps it
    middle: bool
    matched: np.ndarray  # each labelled text's held-out match (never its own tokens)
    bank: Any  # TokenBank of the labelled texts and descriptions

    def scores(self, test: Rows, truth: np.ndarray, *heads: Any) -> list[tuple[float, float]]:
        """(accuracy, expected calibration error) on ``test`` of each of ``heads`` (default:
        the engine's head), the test texts matched with the bank once."""
        matched = self.bank.match_texts([r[2] for r in test]).numpy()
        x = features(test, self.middle)
        found = []
        for head in heads or (self.head,):
            logits = head.logits(x, matched)
            found.append(
                (
                    float((logits.argmax(1) == truth).mean()),
                    calibration_error(softmax(logits), truth),
                )
            )
        return found


def engine_head(
    rows: Rows,
    classes: np.ndarray,
    descriptions: Rows,
    seed: int,
    facets: tuple[Rows, np.ndarray] | None = None,
) -> EngineHead:
    """The head as the engine fits it: ``facets`` are ``TaskSet.facets``."""
    from shared.classifier.embedding import TokenBank
    from worker.fine_tuning.embedding_trainer import RECIPE, held_out_token_match
    from worker.fine_tuning.linear_head import Facets, best_head, fit_linear_head, fit_token_weight

    def parts(middle: bool) -> Facets | None:
        return None if facets is None else Facets.of(features(facets[0], middle), facets[1])

    heads = [
        fit_linear_head(
            features(rows, middle),
            classes,
            features(descriptions, middle),
            seed=seed,
            facets=parts(middle),
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
    plain = heads[int(middle)]
    return EngineHead(
        plain=plain,
        head=fit_token_weight(plain, matched, classes),
        middle=middle,
        matched=matched,
        bank=TokenBank(tokens, token_rows, len(descriptions)),
    )


def mean_scores(runs: Sequence[tuple[float, float]]) -> dict[str, float]:
    """``{"accuracy", "ece"}``: the mean of (accuracy, ece) runs."""
    return {
        "accuracy": round(float(np.mean([a for a, _ in runs])), 4),
        "ece": round(float(np.mean([e for _, e in runs])), 4),
    }


def mean_over_tasks(entries: Sequence[dict], names: Sequence[str]) -> dict[str, dict]:
    """Each name's ``{"accuracy", "ece"}`` averaged over the tasks' ``entries``."""
    return {
        name: {
            metric: round(float(np.mean([e[name][metric] for e in entries])), 4)
            for metric in ("accuracy", "ece")
        }
        for name in names
    }
