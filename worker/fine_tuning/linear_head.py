"""The scorer every embedding run ends with: a logistic head on the encoder's embeddings.

Measured on three datasets (banking topics, banking intents, hwu; bench/README.md),
a multinomial logistic regression on normalised sentence embeddings beats the
soft-nearest-exemplar scorer the engine used before on two of them and on the mean
(frozen encoder, 8 per category: 0.865 against 0.837), and it is what SetFit fits
after tuning its body. Three additions make it Sortloop's scorer:

- **Descriptions as anchors, where they help.** Each category's description, embedded
  like a text, joins the training set as one more example of its category (+0.8 points
  on the mean over the three datasets at 8 per category, measured on the frozen
  encoder). A category with no labelled example is then still learned from its
  description. Descriptions that mislead (written for another category, or saying
  little) cost up to 8.5 points, so each run also fits the head without them and keeps
  whichever does better on the cross-fitted texts (below); a category with fewer than 2
  labelled texts always keeps its description. A description that lists its category's
  parts ("card delivery and activation") also gives each part as an example of it
  ("card delivery", "activation": ``description_facets``), where the cross-fitted loss
  prefers it.
- **Calibration.** The raw probabilities of a regularised head on a few examples
  are far too timid (expected calibration error 0.17-0.42 at 8 per category). A
  single logit multiplier (1 / temperature) is fitted on cross-fitted logits: the
  head is refitted on k-1 folds of the training texts and scores the k-th, so the
  multiplier is learned on texts the head did not see. The confidence stored with
  every prediction then means what it says (0.013-0.053 on the test texts).
- **Zero-shot for categories added later.** A category the head has no row for is
  scored ``slope * cos(text, description) + intercept``, a line fitted so that the
  head's own logits for its categories are matched as closely as their description
  cosines allow: a new category competes on the head's scale, by its description.

The fitting uses scikit-learn (worker only); scoring is a matrix product the web
tier does with torch alone (``shared.classifier.embedding``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

# Inverse regularisation strength of the logistic head (scikit-learn's C). 10 gave the
# best mean over the three datasets among 1 / 10 / 100 (1 loses 1.2 points; 100 ties).
C = 10.0
# Each category weighs the same in the fit, however many labelled texts it has
# (scikit-learn's "balanced"). Corrections come unevenly: with half the categories at
# 3 texts and half at 16 (five tasks, 3 seeds; bench/imbalance.py), the ones with 3
# were recognised 57 % of the time unweighted and 73 % weighted, and on test texts in
# the labelled set's own proportions accuracy rose 1.4 points. With the same number of
# texts in every category it changes nothing.
CLASS_WEIGHT: str | None = "balanced"
# Folds for the cross-fitted calibration (capped by the largest category: a category with
# fewer texts is held out in fewer folds; its description stays in every fold's head).
CALIBRATION_FOLDS = 8
# The largest logit weight of the token match (a cosine difference: a weight of 50 turns
# a 0.1 difference into 5 logits). Only separable sets come near it.
TOKEN_WEIGHT_BOUND = 50.0
MAX_ITERATIONS = 2000
# A labelled text is listed for an admin to check when confident learning (cleanlab)
# finds its label an issue and the cross-fitted model finds another category at least this
# many times as likely as the given label (bench/label_noise.py; bench/README.md, "Wrong
# labels"). A ratio, not a probability floor: with few categories a model calibrated on
# labels with mistakes in them never gives any label much under 1 / categories.
LABEL_ISSUE_ODDS = 10.0
# The solver's tolerance: scikit-learn's default. 1e-3 gave the same mean at 8 per
# category in two thirds of the time, but stops early on larger sets: on the five tasks
# at 32 per category it cost 0.2 points on the mean and 0.5 on the 77 banking intents.
TOLERANCE = 1e-4
# What separates the parts of a description that lists them: commas, semicolons and the
# word "and". Not "or": it joins alternatives inside one part ("lost or stolen card",
# "balance not updated after cheque or cash deposit").
FACET_SEPARATORS = re.compile(r"[,;]|\band\b", re.IGNORECASE)


def description_facets(descriptions: Sequence[str]) -> tuple[list[str], list[int]]:
    """The parts of each description that lists them, and the category of each.

    "card delivery and activation" gives "card delivery" and "activation"; "lost, stolen
    or blocked card and security" gives "lost", "stolen or blocked card" and "security"; a
    description with one part gives none (it is an example already). Each part joins the
    head's examples of its category beside the whole description where the cross-fitted
    loss prefers it (``fit_linear_head``): a pooled embedding of a list blurs its parts,
    and a text about one part sits nearer that part alone. Measured on the learning
    curve's tasks (bench/README.md, "Descriptions that list their parts"): `banking`'s
    topics +1.2 / +0.7 / +0.2 points at 4 / 8 / 16 a category and its calibration error
    0.052 -> 0.041 at 8; the tasks whose names list nothing are unchanged.
    """
    texts: list[str] = []
    owners: list[int] = []
    for category, description in enumerate(descriptions):
        parts = list(
            dict.fromkeys(" ".join(part.split()) for part in FACET_SEPARATORS.split(description))
        )
        parts = [part for part in parts if part]
        if len(parts) < 2:
            continue
        texts += parts
        owners += [category] * len(parts)
    return texts, owners


@dataclass(frozen=True)
class Facets:
    """Embedded description parts (``description_facets``) and their categories."""

    embeddings: np.ndarray  # [parts, dim]
    classes: np.ndarray  # [parts]

    @classmethod
    def of(cls, embeddings: np.ndarray | None, classes: Sequence[int]) -> Facets | None:
        """None where there are no parts."""
        if embeddings is None or not len(classes):
            return None
        return cls(np.asarray(embeddings, dtype=np.float64), np.asarray(classes, dtype=np.int64))

    def columns(self, width: slice) -> Facets:
        """The same parts with only these feature columns (the last layer's part)."""
        return Facets(self.embeddings[:, width], self.classes)


@dataclass(frozen=True)
class LinearHead:
    """A fitted head: ``logits = calibration * (x @ weight.T + bias)`` over ``num_labels``."""

    weight: np.ndarray  # [labels, dim]
    bias: np.ndarray  # [labels]
    calibration: float  # logit multiplier, 1 / temperature
    zero_shot_slope: float
    zero_shot_intercept: float
    cross_fitted_loss: float | None  # mean NLL of the cross-fitted logits, calibrated
    cross_fitted_loss_uncalibrated: float | None
    folds: int
    # The cross-fitted multiplier before ``capped`` lowered it (None: not capped).
    uncapped_calibration: float | None = None
    # Whether the descriptions joined the training texts as examples (a category with
    # fewer than 2 labelled texts always keeps its own), and the calibrated cross-fitted
    # loss of each choice that was tried (None: not tried).
    descriptions_as_examples: bool = True
    loss_with_descriptions: float | None = None
    loss_without_descriptions: float | None = None
    # Whether the parts of the descriptions that list them joined too
    # (``description_facets``), and the calibrated cross-fitted loss with them (None: no
    # description lists parts, or the descriptions were imposed).
    description_facets: bool = False
    loss_with_facets: float | None = None
    # The weight of the token match (``shared.classifier.embedding.TokenBank``) inside
    # the multiplier: ``fit_token_weight``; 0: none.
    token_weight: float = 0.0
    token_loss: float | None = None  # the calibrated cross-fitted loss with it
    # The uncalibrated cross-fitted logits of the labelled texts (not exported).
    held_out: np.ndarray | None = field(default=None, repr=False, compare=False)

    def logits(self, embeddings: np.ndarray, matched: np.ndarray | None = None) -> np.ndarray:
        """Calibrated logits ``[n, labels]`` (``matched``: the texts' centred token matches)."""
        raw = embeddings @ self.weight.T + self.bias
        if self.token_weight and matched is not None:
            raw = raw + self.token_weight * matched
        return self.calibration * raw

    def summary(self) -> dict[str, float | int | None]:
        """JSON-ready facts about the fit (run history, model card)."""
        return {
            "calibration": round(self.calibration, 4),
            "temperature": round(1.0 / self.calibration, 4),
            "calibration_folds": self.folds,
            "cross_fitted_loss": _rounded(self.cross_fitted_loss),
            "cross_fitted_loss_uncalibrated": _rounded(self.cross_fitted_loss_uncalibrated),
            "uncapped_calibration": _rounded(self.uncapped_calibration),
            "descriptions_as_examples": self.descriptions_as_examples,
            "loss_with_descriptions": _rounded(self.loss_with_descriptions),
            "loss_without_descriptions": _rounded(self.loss_without_descriptions),
            "description_facets": self.description_facets,
            "loss_with_facets": _rounded(self.loss_with_facets),
            "token_weight": round(self.token_weight, 4),
            "loss_with_token_match": _rounded(self.token_loss),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def anchored_categories(counts: np.ndarray, descriptions_as_examples: bool) -> np.ndarray:
    """Which categories' descriptions join the texts as examples (bool per category).

    Without descriptions, a category with fewer than 2 labelled texts keeps its own: it
    would be missing from a fold's head (or from the head, with none) otherwise.
    """
    return np.ones(len(counts), dtype=bool) if descriptions_as_examples else counts < 2


def _fit_logistic(
    embeddings: np.ndarray,
    classes: np.ndarray,
    descriptions: np.ndarray,
    anchored: np.ndarray | None = None,
    facets: Facets | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weight ``[labels, dim]`` and bias of a logistic regression with description anchors
    (the description of each category ``anchored`` marks; all by default), and with the
    ``facets`` of those categories' descriptions beside them, if given.

    Each fit starts from zero: a fold's fit warm-started from the full head (which saw
    the fold's texts) stops near it and halves the cross-fitted loss, a leak.

    The solver's matrix products are tiny (a few hundred texts by 384 dimensions): on
    one BLAS thread they run about ten times faster than on a pool that torch's own
    threads compete with (the nine fits of an `hwu` head at k=8: 0.2 s against 1.95 s,
    the same weights to 1e-6; measured with torch loaded, as in the worker). They run in
    float32 (the embeddings' own precision): 1.3-1.6 times as fast as float64 on 144 to
    10,000 texts, the same labels on every test text of `hwu` (8 a scenario) and of the 77
    banking intents (8 and 32 an intent), 99.9 % on 10,000 banking texts (bench/README.md,
    "The head at scale").
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    num_labels = descriptions.shape[0]
    anchors = np.arange(num_labels) if anchored is None else np.flatnonzero(anchored)
    features = [embeddings, descriptions[anchors]]
    targets = [classes, anchors]
    if facets is not None:
        kept = np.isin(facets.classes, anchors)
        features.append(facets.embeddings[kept])
        targets.append(facets.classes[kept])
    features = np.concatenate(features).astype(np.float32)
    targets = np.concatenate(targets)
    model = LogisticRegression(
        C=C, max_iter=MAX_ITERATIONS, tol=TOLERANCE, class_weight=CLASS_WEIGHT
    )
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(features, targets)
    weight = np.zeros((num_labels, features.shape[1]), dtype=np.float64)
    bias = np.zeros(num_labels, dtype=np.float64)
    if len(model.classes_) == 2:
        # scikit-learn keeps one row for two classes: split it so a softmax gives the same.
        weight[model.classes_[1]] = model.coef_[0] / 2
        weight[model.classes_[0]] = -model.coef_[0] / 2
        bias[model.classes_[1]] = model.intercept_[0] / 2
        bias[model.classes_[0]] = -model.intercept_[0] / 2
    else:
        weight[model.classes_] = model.coef_
        bias[model.classes_] = model.intercept_
    return weight, bias


def _log_loss(logits: np.ndarray, classes: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(classes)), classes].mean())


def stratified_folds(classes: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of each example: each category dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(classes), dtype=np.int64)
    for label in np.unique(classes):
        members = np.flatnonzero(classes == label)
        rng.shuffle(members)
        assignment[members] = np.arange(len(members)) % folds
    return assignment


def fit_calibration(logits: np.ndarray, classes: np.ndarray) -> float:
    """The logit multiplier that minimises the log loss of ``logits`` (1-D, bounded)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(
        lambda log_multiplier: _log_loss(math.exp(log_multiplier) * logits, classes),
        bounds=(-3.0, 5.0),
        method="bounded",
    )
    return float(math.exp(found.x))


def _cross_fitted_logits(
    embeddings: np.ndarray,
    classes: np.ndarray,
    descriptions: np.ndarray,
    anchored: np.ndarray,
    assignment: np.ndarray,
    facets: Facets | None = None,
) -> np.ndarray:
    """Each text's logits from the head fitted on the other folds (uncalibrated)."""
    held_out = np.zeros((len(classes), descriptions.shape[0]))
    for fold in np.unique(assignment):
        inside = assignment != fold
        weight, bias = _fit_logistic(
            embeddings[inside], classes[inside], descriptions, anchored, facets
        )
        held_out[~inside] = embeddings[~inside] @ weight.T + bias
    return held_out


def fit_linear_head(
    embeddings: np.ndarray | Sequence[Sequence[float]],
    classes: np.ndarray | Sequence[int],
    descriptions: np.ndarray | Sequence[Sequence[float]],
    *,
    seed: int = 0,
    use_descriptions: bool | None = None,
    facets: Facets | None = None,
) -> LinearHead:
    """Fit the head on normalised ``embeddings`` of labelled texts (``classes`` index the
    rows of ``descriptions``, one per category), calibrated on cross-fitted logits.

    The cross-fitted logits also decide whether the descriptions join the texts as
    examples: the head is cross-fitted with and without them, and the choice with the
    lower calibrated loss is kept (with them on a tie). ``use_descriptions`` True or
    False imposes the choice instead (the benchmark's comparison). Measured on five tasks
    (bench/descriptions.py), this keeps the descriptions' gain where they name their
    categories well, and where they mislead (each category described as another) it
    recovers what the texts alone teach (bench/README.md, "Five tasks"). With
    ``facets`` (the parts of the descriptions that list them, embedded:
    ``description_facets``), the descriptions with their parts beside them are a third
    choice, kept only where their loss is lower than both others'.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    descriptions = np.asarray(descriptions, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] != classes.shape[0]:
        raise ValueError("one class per embedding is needed")
    if descriptions.shape[0] < 2:
        raise ValueError("a head needs at least two categories")
    counts = np.bincount(classes, minlength=descriptions.shape[0])
    # Every fold's head still knows each category (by its description, or by the other
    # texts of a category with 2 or more), so a rare category (3 texts beside others' 40)
    # need not cut everyone's folds: it is held out in 3 of them.
    folds = min(CALIBRATION_FOLDS, int(counts.max()) if embeddings.shape[0] else 0)
    # The choices, by name: the descriptions as examples, the same with their parts, the
    # texts alone; a tie goes to the earlier.
    choices = ["descriptions"] if use_descriptions in (None, True) else []
    if facets is not None and choices:
        choices.append("facets")
    if use_descriptions is False or (use_descriptions is None and (counts >= 2).any()):
        # Without descriptions only where that changes something (some category has 2+).
        choices.append("texts")
    chosen = choices[0]
    calibration, loss, raw_loss, held = 1.0, None, None, None
    losses: dict[str, float] = {}
    if folds >= 2 and len(np.unique(classes)) >= 2:
        assignment = stratified_folds(classes, folds, seed)
        fits = {}
        for choice in choices:
            held_out = _cross_fitted_logits(
                embeddings,
                classes,
                descriptions,
                anchored_categories(counts, choice != "texts"),
                assignment,
                facets if choice == "facets" else None,
            )
            multiplier = fit_calibration(held_out, classes)
            losses[choice] = _log_loss(multiplier * held_out, classes)
            fits[choice] = (multiplier, losses[choice], _log_loss(held_out, classes), held_out)
        chosen = min(choices, key=lambda choice: (losses[choice], choices.index(choice)))
        calibration, loss, raw_loss, held = fits[chosen]
    with_descriptions = chosen != "texts"
    weight, bias = _fit_logistic(
        embeddings,
        classes,
        descriptions,
        anchored_categories(counts, with_descriptions),
        facets if chosen == "facets" else None,
    )
    slope, intercept = _zero_shot_line(embeddings, descriptions, weight, bias, counts)
    return LinearHead(
        weight=weight,
        bias=bias,
        calibration=calibration,
        zero_shot_slope=slope,
        zero_shot_intercept=intercept,
        cross_fitted_loss=loss,
        cross_fitted_loss_uncalibrated=raw_loss,
        folds=folds,
        descriptions_as_examples=with_descriptions,
        loss_with_descriptions=losses.get("descriptions"),
        loss_without_descriptions=losses.get("texts"),
        description_facets=chosen == "facets",
        loss_with_facets=losses.get("facets"),
        held_out=held,
    )


def fit_token_weight(
    head: LinearHead, matched: np.ndarray, classes: np.ndarray, *, lowest: float = 0.0
) -> LinearHead:
    """``head`` with a token match beside it: the multiplier ``a`` and the match's weight
    ``b >= 0`` that minimise the log loss of ``a * held_out + b * matched`` over the
    labelled texts, where ``held_out`` are the head's cross-fitted logits and ``matched``
    each text's centred match with every category's tokens but its own
    (``shared.classifier.embedding.token_match``): both are what an unseen text gets.
    The weight is bounded below by 0 (a category's words never count against it), so
    where the match adds nothing the head stays as it was (b = 0). The stored weight is
    ``b / a``, inside the multiplier. Measured on the five tasks (bench/README.md, "Word
    by word"): +0.0 / +0.4 / +1.1 points on their mean at 4 / 8 / 16 texts a category.
    ``lowest``: the weight's lower bound (the benchmark's unbounded comparison only: the
    served head refuses a negative weight).
    """
    from scipy.optimize import minimize

    if head.held_out is None or head.cross_fitted_loss is None:
        return head  # not cross-fitted (fewer than 2 texts in every category)
    held_out, matched = head.held_out, np.asarray(matched, dtype=np.float64)
    start = math.log(head.calibration)
    found = minimize(
        lambda p: _log_loss(math.exp(p[0]) * held_out + p[1] * matched, classes),
        np.array([start, 0.0]),
        method="L-BFGS-B",
        bounds=[(-3.0, 5.0), (lowest, TOKEN_WEIGHT_BOUND)],
    )
    multiplier, weight = math.exp(float(found.x[0])), float(found.x[1])
    loss = _log_loss(multiplier * held_out + weight * matched, classes)
    if not (weight != 0 and loss < head.cross_fitted_loss):
        return replace(head, token_loss=head.cross_fitted_loss)
    return replace(head, calibration=multiplier, token_weight=weight / multiplier, token_loss=loss)


@dataclass(frozen=True)
class LabelIssue:
    """A labelled text whose label the cross-fitted model doubts (``label_issues``)."""

    row: int  # index into the labelled texts, in the order the head was fitted on
    label: int  # the label an admin gave it
    suggested: int  # the category the model, not having seen it, found most likely
    label_probability: float
    suggested_probability: float


def label_issues(
    head: LinearHead, matched: np.ndarray | None, classes: np.ndarray
) -> list[LabelIssue]:
    """The labelled texts whose labels look wrong, most doubtful first.

    Each text's probabilities are the served model's on it before it was seen: the
    head's cross-fitted logits (and token match), calibrated as exported. Confident
    learning (``cleanlab.filter.find_label_issues``: per category, how sure the model
    is of that category's own texts) proposes the issues; only those where another
    category is at least ``LABEL_ISSUE_ODDS`` times as likely as the given label are
    kept, so a text between two close categories is rarely listed. Nothing is dropped
    from training: with no wrong labels, dropping the listed texts cost 0.8 points on the
    mean of the three datasets at 8 a category (1.6 on `hwu`) and doubled the calibration
    error, though with a tenth of the labels wrong it gained 2.1 (bench/README.md, "Wrong
    labels"); the list is for an admin to check.
    """
    from cleanlab.filter import find_label_issues

    classes = np.asarray(classes, dtype=np.int64)
    if head.held_out is None or len(classes) < 2:
        return []
    raw = head.held_out
    if head.token_weight and matched is not None:
        raw = raw + head.token_weight * np.asarray(matched, dtype=np.float64)
    logits = head.calibration * raw
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    # One process: its default forks a pool per call (the same result, per cleanlab), which
    # a Celery worker's daemonic child may not do and a torch process should not.
    flagged = find_label_issues(classes, probabilities, n_jobs=1)
    given = probabilities[np.arange(len(classes)), classes]
    # Another category at least LABEL_ISSUE_ODDS times as likely (so never the label itself).
    rows = np.flatnonzero(flagged & (probabilities.max(axis=1) >= LABEL_ISSUE_ODDS * given))
    issues = [
        LabelIssue(
            row=int(row),
            label=int(classes[row]),
            suggested=int(probabilities[row].argmax()),
            label_probability=float(given[row]),
            suggested_probability=float(probabilities[row].max()),
        )
        for row in rows
    ]
    return sorted(issues, key=lambda issue: (issue.label_probability, issue.row))


def best_head(heads: Sequence[LinearHead]) -> int:
    """Index of the head whose calibrated cross-fitted loss is lowest, each fitted on its
    own features of the same texts (the folds depend only on the classes and the seed,
    so every head held out the same texts). The first wins a tie, and wherever a head
    could not be cross-fitted (fewer than 2 texts in every category)."""
    losses = [head.cross_fitted_loss for head in heads]
    if not heads or any(loss is None for loss in losses):
        return 0
    return min(range(len(heads)), key=lambda index: (losses[index], index))


def capped(head: LinearHead, limit: float) -> LinearHead:
    """``head`` with its multiplier at most ``limit``.

    For a tuned encoder (method lora): the adapter was trained on the labelled texts,
    so the head's folds find the texts they hold out as easy as the ones they see, and
    the cross-fitted multiplier comes out too large (on one `intents` run at 16 per
    category, 44.7: every prediction near 100 % sure). The limit is the multiplier the
    same texts give on the frozen encoder, before the adapter moved, where the folds
    do not leak. Measured on the three datasets at 8 and 16 per category (18 runs), the
    mean expected calibration error fell from 0.044 to 0.035 and no run's rose by more
    than 0.002 (bench/README.md, "`lora`'s confidence").
    """
    if not (math.isfinite(limit) and limit > 0) or head.calibration <= limit:
        return head
    return replace(head, calibration=float(limit), uncapped_calibration=head.calibration)


def held_out_scores(
    train: np.ndarray,
    train_classes: np.ndarray,
    held_out: np.ndarray,
    held_out_classes: np.ndarray,
    descriptions: np.ndarray,
    calibration: float,
    descriptions_as_examples: bool = True,
    facets: Facets | None = None,
) -> tuple[float, float]:
    """(log loss, accuracy) on ``held_out`` of a head fitted on ``train`` alone, with the
    final head's ``calibration`` and choice of descriptions (and their ``facets``, where
    it kept them): the validation figures of a run whose head is then refitted on every
    labelled text."""
    train_classes = np.asarray(train_classes, dtype=np.int64)
    counts = np.bincount(train_classes, minlength=descriptions.shape[0])
    weight, bias = _fit_logistic(
        np.asarray(train, dtype=np.float64),
        train_classes,
        descriptions,
        anchored_categories(counts, descriptions_as_examples),
        facets if descriptions_as_examples else None,
    )
    logits = calibration * (np.asarray(held_out, dtype=np.float64) @ weight.T + bias)
    classes = np.asarray(held_out_classes, dtype=np.int64)
    return _log_loss(logits, classes), float((logits.argmax(axis=1) == classes).mean())


def _zero_shot_line(
    embeddings: np.ndarray,
    descriptions: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    counts: np.ndarray,
) -> tuple[float, float]:
    """Least-squares line from description cosine to head logit, over the labelled texts
    and the categories that have examples (the scale a new category is scored on)."""
    known = np.flatnonzero(counts > 0)
    if embeddings.shape[0] == 0 or known.size == 0:
        return 1.0, 0.0
    cosines = (embeddings @ descriptions[known].T).ravel()
    logits = (embeddings @ weight[known].T + bias[known]).ravel()
    if np.ptp(cosines) < 1e-9:
        return 0.0, float(logits.mean())
    slope, intercept = np.polyfit(cosines, logits, 1)
    if slope <= 0:  # descriptions say nothing here: a new category gets the mean logit
        return 0.0, float(logits.mean())
    return float(slope), float(intercept)
