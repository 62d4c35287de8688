"""The logistic head every embedding run ends with: fit, calibration, scoring, zero-shot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.classifier.embedding import LinearHead
from worker.fine_tuning import linear_head
from worker.fine_tuning.linear_head import (
    _fit_logistic,
    capped,
    fit_linear_head,
    stratified_folds,
)


def _clusters(per_class: int, seed: int, spread: float = 0.6) -> tuple[np.ndarray, ...]:
    """Three noisy clusters on the unit sphere and their (noise-free) descriptions."""
    centres = np.linalg.qr(np.random.default_rng(99).normal(size=(16, 3)))[0].T  # orthonormal
    rng = np.random.default_rng(seed)
    points = np.repeat(centres, per_class, axis=0) + spread * rng.normal(size=(3 * per_class, 16))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points, np.repeat(np.arange(3), per_class), centres


def test_the_multiplier_is_fitted_on_texts_each_fold_did_not_see() -> None:
    train, classes, descriptions = _clusters(8, seed=0)
    head = fit_linear_head(train, classes, descriptions, seed=0)
    assert head.folds == 8
    assert head.cross_fitted_loss < head.cross_fitted_loss_uncalibrated
    assert head.summary()["temperature"] == pytest.approx(1 / head.calibration, abs=1e-4)


def test_fitting_is_deterministic_for_a_seed() -> None:
    train, classes, descriptions = _clusters(6, seed=2)
    first = fit_linear_head(train, classes, descriptions, seed=3)
    second = fit_linear_head(train, classes, descriptions, seed=3)
    assert first.calibration == second.calibration
    np.testing.assert_array_equal(first.weight, second.weight)


def test_a_category_without_examples_is_learned_from_its_description() -> None:
    train, classes, descriptions = _clusters(8, seed=4)
    keep = classes != 2  # no labelled text of category 2: its description is its one example
    head = fit_linear_head(train[keep], classes[keep], descriptions, seed=0)
    near_description = descriptions[2] + 0.05 * np.random.default_rng(5).normal(size=16)
    assert head.logits(near_description[None])[0].argmax() == 2


def test_two_categories_give_the_same_probabilities_as_the_binary_regression() -> None:
    train, classes, descriptions = _clusters(8, seed=6)
    keep = classes < 2
    head = fit_linear_head(train[keep], classes[keep], descriptions[:2], seed=0)
    assert head.weight.shape == (2, 16)
    np.testing.assert_allclose(head.weight[0], -head.weight[1])
    assert (head.logits(train[keep]).argmax(1) == classes[keep]).mean() > 0.9


def test_folds_deal_each_category_round_robin() -> None:
    classes = np.array([0] * 5 + [1] * 3)
    folds = stratified_folds(classes, 3, seed=0)
    assert sorted(folds[:5].tolist()) == [0, 0, 1, 1, 2]
    assert sorted(folds[5:].tolist()) == [0, 1, 2]


def test_bad_input_is_refused() -> None:
    train, classes, descriptions = _clusters(4, seed=7)
    with pytest.raises(ValueError, match="one class per embedding"):
        fit_linear_head(train, classes[:-1], descriptions)
    with pytest.raises(ValueError, match="two categories"):
        fit_linear_head(train, np.zeros(len(train), dtype=int), descriptions[:1])


def test_the_classifier_scores_known_categories_by_the_head_and_new_ones_by_description() -> None:
    train, classes, descriptions = _clusters(8, seed=8)
    fitted = fit_linear_head(train, classes, descriptions, seed=0)
    head = LinearHead(
        torch.tensor(fitted.weight),
        torch.tensor(fitted.bias),
        ["a", "b", "c"],
        calibration=fitted.calibration,
        slope=fitted.zero_shot_slope,
        intercept=fitted.zero_shot_intercept,
    )
    texts = torch.tensor(train[:3], dtype=torch.float32)
    # One description row per scored category; "new" is described like category b.
    rows = torch.tensor(descriptions[[2, 1, 0]], dtype=torch.float32)

    scores = head.scores(texts, rows, ["c", "new", "a"])

    expected = fitted.logits(train[:3])
    np.testing.assert_allclose(scores[:, 0].numpy(), expected[:, 2], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores[:, 2].numpy(), expected[:, 0], rtol=1e-4, atol=1e-4)
    cosines = train[:3] @ descriptions[1]
    line = fitted.calibration * (fitted.zero_shot_slope * cosines + fitted.zero_shot_intercept)
    np.testing.assert_allclose(scores[:, 1].numpy(), line, rtol=1e-4, atol=1e-4)
    assert fitted.zero_shot_slope > 0
    with pytest.raises(ValueError, match="calibration"):
        LinearHead(head.weight, head.bias, ["a", "b", "c"], calibration=0.0, slope=1, intercept=0)


def test_a_rare_category_does_not_cut_the_folds_of_the_others() -> None:
    train, classes, descriptions = _clusters(8, seed=11)
    rare = np.concatenate([np.flatnonzero(classes != 2), np.flatnonzero(classes == 2)[:3]])
    head = fit_linear_head(train[rare], classes[rare], descriptions, seed=0)
    assert head.folds == 8  # the 8 texts of categories 0 and 1 each held out once
    assert head.cross_fitted_loss < head.cross_fitted_loss_uncalibrated
    # The rare category is still learned, and its 3 texts are held out in 3 of the folds.
    assert (head.logits(train[rare][-3:]).argmax(1) == 2).all()
    folds = stratified_folds(classes[rare], head.folds, seed=0)
    assert sorted(folds[-3:].tolist()) == [0, 1, 2]


def test_a_cap_lowers_only_a_larger_multiplier_and_remembers_it() -> None:
    train, classes, descriptions = _clusters(8, seed=12)
    head = fit_linear_head(train, classes, descriptions, seed=0)
    lowered = capped(head, head.calibration / 2)
    assert lowered.calibration == head.calibration / 2
    assert lowered.uncapped_calibration == head.calibration
    assert lowered.summary()["uncapped_calibration"] == round(head.calibration, 4)
    np.testing.assert_array_equal(lowered.weight, head.weight)  # only the confidence changes
    for limit in (head.calibration * 2, float("nan"), 0.0):
        assert capped(head, limit) is head
    assert head.summary()["uncapped_calibration"] is None


def test_descriptions_that_mislead_are_left_out_and_good_ones_kept() -> None:
    train, classes, descriptions = _clusters(8, seed=13, spread=0.5)
    test, truth, _ = _clusters(50, seed=14, spread=0.5)
    good = fit_linear_head(train, classes, descriptions, seed=0)
    assert good.descriptions_as_examples
    assert good.loss_with_descriptions < good.loss_without_descriptions
    assert good.cross_fitted_loss == good.loss_with_descriptions

    swapped = descriptions[[1, 2, 0]]  # each category described as the next one
    misled = fit_linear_head(train, classes, swapped, seed=0)
    assert not misled.descriptions_as_examples
    assert misled.cross_fitted_loss == misled.loss_without_descriptions
    assert misled.summary()["descriptions_as_examples"] is False
    right = (misled.logits(test).argmax(1) == truth).mean()
    assert right > (good.logits(test).argmax(1) == truth).mean() - 0.03
    # Kept as examples, the swapped descriptions would have cost far more.
    weight, bias = _fit_logistic(train, classes, swapped)
    assert ((test @ weight.T + bias).argmax(1) == truth).mean() < right - 0.1


def test_a_description_that_lists_parts_gives_each_part_as_an_example() -> None:
    texts, owners = linear_head.description_facets(
        [
            "card delivery and activation",
            "lost, stolen or blocked card and security",
            "top-ups",  # one part: the description is its example already
            "Potholes;  road damage AND pavements,",
            "weather",
        ]
    )
    assert texts == [
        "card delivery",
        "activation",
        "lost",
        "stolen or blocked card",  # "or" joins alternatives inside a part
        "security",
        "Potholes",
        "road damage",
        "pavements",
    ]
    assert owners == [0, 0, 1, 1, 1, 3, 3, 3]
    assert linear_head.description_facets(["alarm", "date time"]) == ([], [])


def _parts(seed: int, per_part: int, spread: float = 0.35) -> tuple[np.ndarray, ...]:
    """Three categories of three parts each (nine orthonormal directions): each text is
    near one part; a category's description is the mean of its parts, its facets the
    parts themselves."""
    parts = np.linalg.qr(np.random.default_rng(98).normal(size=(24, 9)))[0].T
    rng = np.random.default_rng(seed)
    which = np.repeat(np.arange(9), per_part)
    points = parts[which] + spread * rng.normal(size=(len(which), 24))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    descriptions = parts.reshape(3, 3, 24).mean(axis=1)
    descriptions /= np.linalg.norm(descriptions, axis=1, keepdims=True)
    return points, which // 3, descriptions, parts


def test_the_parts_of_descriptions_are_kept_where_texts_each_fold_did_not_see_say_so() -> None:
    # One labelled text per part: a held-out text's part is known to the fold's head
    # only through the description's parts.
    train, classes, descriptions, parts = _parts(seed=20, per_part=1)
    test, truth, _, _ = _parts(seed=21, per_part=40)
    facets = linear_head.Facets.of(parts, np.repeat(np.arange(3), 3))
    head = fit_linear_head(train, classes, descriptions, seed=0, facets=facets)
    assert head.description_facets and head.descriptions_as_examples
    assert head.loss_with_facets < head.loss_with_descriptions
    assert head.cross_fitted_loss == head.loss_with_facets
    assert head.summary()["description_facets"] is True
    plain = fit_linear_head(train, classes, descriptions, seed=0)
    assert not plain.description_facets and plain.loss_with_facets is None
    right = (head.logits(test).argmax(1) == truth).mean()
    assert right > (plain.logits(test).argmax(1) == truth).mean()

    # Parts credited to the wrong categories cost on the held-out texts: left out.
    wrong = linear_head.Facets.of(parts, np.repeat(np.arange(3), 3)[[3, 4, 5, 6, 7, 8, 0, 1, 2]])
    refused = fit_linear_head(train, classes, descriptions, seed=0, facets=wrong)
    assert not refused.description_facets
    assert refused.loss_with_facets > refused.cross_fitted_loss
    np.testing.assert_allclose(refused.weight, plain.weight)
    # Imposing the texts alone leaves the parts out with the descriptions.
    alone = fit_linear_head(
        train, classes, descriptions, seed=0, facets=facets, use_descriptions=False
    )
    assert not alone.description_facets and not alone.descriptions_as_examples


def test_without_descriptions_a_category_with_one_text_keeps_its_own() -> None:
    train, classes, descriptions = _clusters(8, seed=15, spread=0.9)
    lone = np.concatenate([np.flatnonzero(classes != 2), np.flatnonzero(classes == 2)[:1]])
    head = fit_linear_head(train[lone], classes[lone], descriptions[[1, 0, 2]], seed=0)
    assert not head.descriptions_as_examples  # 0 and 1 are described as each other
    # Category 2 has one text: its (right) description still teaches the head about it.
    assert head.logits(descriptions[2][None])[0].argmax() == 2


def test_a_category_with_few_texts_weighs_as_much_as_one_with_many(monkeypatch) -> None:
    train, classes, descriptions = _clusters(20, seed=16)
    test, truth, _ = _clusters(100, seed=17)
    uneven = np.concatenate([np.flatnonzero(classes != 2), np.flatnonzero(classes == 2)[:2]])

    def recall_of_the_rare_category() -> float:
        head = fit_linear_head(train[uneven], classes[uneven], descriptions, seed=0)
        return (head.logits(test[truth == 2]).argmax(1) == 2).mean()

    weighted = recall_of_the_rare_category()
    monkeypatch.setattr(linear_head, "CLASS_WEIGHT", None)  # every text weighs the same
    assert weighted > recall_of_the_rare_category() + 0.1


def test_the_token_match_gets_a_weight_where_it_tells_the_held_out_texts_apart() -> None:
    from worker.fine_tuning.linear_head import fit_token_weight

    train, classes, descriptions = _clusters(8, seed=0, spread=1.2)
    head = fit_linear_head(train, classes, descriptions, seed=0)
    assert head.held_out is not None and head.held_out.shape == (24, 3)
    # A match that knows each text's category (centred): the fit leans on it.
    telling = np.eye(3)[classes] - 1 / 3
    with_words = fit_token_weight(head, telling, classes)
    assert with_words.token_weight > 0
    assert with_words.token_loss < head.cross_fitted_loss
    scored = with_words.logits(train, telling)
    assert (scored.argmax(1) == classes).mean() >= (head.logits(train).argmax(1) == classes).mean()
    # A match that points away from each text's category never counts against it.
    misleading = -telling
    without = fit_token_weight(head, misleading, classes)
    assert without.token_weight == 0
    assert without.calibration == head.calibration
    assert np.array_equal(without.logits(train, misleading), head.logits(train))


def test_the_served_head_adds_the_token_match_inside_its_multiplier() -> None:
    def served_head(calibration: float, token_weight: float) -> LinearHead:
        weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        return LinearHead(
            weight,
            torch.zeros(2),
            ["a", "b"],
            calibration=calibration,
            slope=1.0,
            intercept=0.0,
            token_weight=token_weight,
        )

    served = served_head(calibration=2.0, token_weight=3.0)
    # Two feature columns, then the centred match with "a" and "b".
    features = torch.tensor([[0.6, 0.8, 0.1, -0.1]])
    descriptions = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0]])
    logits = served.scores(features, descriptions, ["a", "b", "new"])
    # a: 2 * (0.6 + 3 * 0.1); b: 2 * (0.8 - 3 * 0.1); new: by its description alone.
    assert torch.allclose(logits, torch.tensor([[1.8, 1.0, 2 * 0.96]]))
    with pytest.raises(ValueError, match="token match"):
        served.scores(features[:, :2], descriptions, ["a"])
    with pytest.raises(ValueError, match="0 or more"):
        served_head(calibration=1.0, token_weight=-1.0)


def test_a_labelled_text_never_matches_its_own_tokens() -> None:
    from shared.classifier.embedding import token_match

    e0, e1 = torch.eye(2)
    tokens = torch.stack([e0, e0, e1])  # one token per text; texts 0 and 1 say the same
    owners = torch.tensor([0, 1, 2])
    rows = torch.tensor([0, 0, 1])
    matched = token_match(tokens, owners, 3, tokens, rows, 2, bank_owners=owners)
    # Text 0 matches row 0 through text 1's token, text 2 has nothing of row 1 but its own.
    assert torch.equal(matched, torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    served = token_match(tokens, owners, 3, tokens, rows, 2)
    assert torch.equal(served, torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))


def test_the_token_bank_takes_at_most_its_limit_of_texts_from_a_category() -> None:
    from worker.fine_tuning.embedding_trainer import bank_members

    classes = np.array([0] * 50 + [1] * 5)
    members = bank_members(classes, 32, seed=0)
    assert members[:50].sum() == 32  # a seeded sample of the large category
    assert members[50:].all()  # every text of a small one
    assert np.array_equal(members, bank_members(classes, 32, seed=0))


def test_labels_that_look_wrong_are_listed_and_right_ones_are_not() -> None:
    train, classes, descriptions = _clusters(10, seed=8, spread=0.2)
    head = fit_linear_head(train, classes, descriptions, seed=0)
    assert linear_head.label_issues(head, None, classes) == []  # every label is right

    wrong = classes.copy()
    flipped = {3: 1, 14: 2, 25: 0}  # one text of each category labelled as another
    for row, label in flipped.items():
        wrong[row] = label
    head = fit_linear_head(train, wrong, descriptions, seed=0)
    issues = linear_head.label_issues(head, None, wrong)

    assert {issue.row for issue in issues} == set(flipped)
    for issue in issues:
        assert issue.label == flipped[issue.row]
        assert issue.suggested == classes[issue.row]  # the category it came from
        assert issue.suggested_probability > 0.5
        assert issue.suggested_probability >= linear_head.LABEL_ISSUE_ODDS * issue.label_probability
    ranked = [issue.label_probability for issue in issues]
    assert ranked == sorted(ranked)  # most doubtful first


def test_label_issues_read_the_token_match_as_the_served_head_does() -> None:
    train, classes, descriptions = _clusters(10, seed=9, spread=0.3)
    wrong = classes.copy()
    wrong[4] = 2
    head = fit_linear_head(train, wrong, descriptions, seed=0)
    # A match that says each text belongs to its labelled category, strongly enough to
    # outweigh the head: with it, the served model no longer doubts the wrong label.
    agreeing = np.eye(3)[wrong] * 10.0
    agreeing -= agreeing.mean(axis=1, keepdims=True)
    with_match = linear_head.fit_token_weight(head, agreeing, wrong)
    assert with_match.token_weight > 0
    assert [issue.row for issue in linear_head.label_issues(head, None, wrong)] == [4]
    assert linear_head.label_issues(with_match, agreeing, wrong) == []
