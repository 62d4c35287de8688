"""Data quality checks shared by the dashboard and the worker's validator."""

from __future__ import annotations

import json

from shared.training.data_quality import check_training_data, normalize_text, similar_groups


def _clean_examples() -> list[tuple[int, str, str]]:
    rows = []
    topics = {
        "roads": "pothole on the main road near the school {}",
        "parks": "the playground in the park needs new swings {}",
        "waste": "garbage bins were not emptied this week on street {}",
    }
    for label, template in topics.items():
        for index in range(5):
            rows.append((len(rows), template.format(f"number {index} " + "x" * index), label))
    return rows


def test_clean_data_has_no_errors() -> None:
    report = check_training_data(_clean_examples())
    assert report.ok
    assert report.duplicates == 0 and report.conflicts == 0
    assert report.per_category == {"roads": 5, "parks": 5, "waste": 5}
    assert report.imbalance_ratio == 1.0


def test_planted_duplicates_are_found_ignoring_case_and_punctuation() -> None:
    rows = _clean_examples() + [
        (100, "Pothole on the main road near the school, number 0!", "roads"),
        (101, "  POTHOLE on the main road near the school number 0 ", "roads"),
    ]
    report = check_training_data(rows)
    assert report.duplicates == 2
    assert {0, 100, 101} <= set(report.duplicate_ids)
    assert any("duplicate" in warning for warning in report.warnings)


def test_conflicting_labels_for_the_same_text_are_reported() -> None:
    rows = _clean_examples() + [(200, "pothole on the main road near the school number 0", "parks")]
    report = check_training_data(rows)
    assert report.conflicts == 1
    assert set(report.conflict_ids) == {0, 200}


def test_near_duplicates_are_found() -> None:
    rows = [
        (1, "my new card has still not arrived after two weeks of waiting", "cards"),
        (2, "my new card has still not arrived after two weeks of waiting now", "cards"),
        (3, "how do I top up my account with apple pay", "topup"),
    ]
    report = check_training_data(rows)
    assert report.near_duplicates == 1
    assert report.near_duplicate_pairs == ((1, 2),)


def test_a_category_with_two_examples_refuses_training() -> None:
    rows = _clean_examples() + [
        (300, "the street light is broken again", "lights"),
        (301, "lamp post flickers all night long", "lights"),
    ]
    report = check_training_data(rows)
    assert not report.ok
    assert report.small_categories == ("lights",)
    assert any("'lights'" in error for error in report.errors)


def test_four_examples_warn_and_imbalance_is_reported() -> None:
    rows = _clean_examples()[:4] + [
        (400 + i, f"park bench {i} is broken and dirty", "parks") for i in range(25)
    ]
    report = check_training_data(rows)
    assert report.ok
    assert report.imbalance_ratio == 25 / 4
    assert any("imbalanced" in warning for warning in report.warnings)
    assert any("only 4 examples" in warning for warning in report.warnings)


def test_short_and_long_texts_are_flagged() -> None:
    rows = _clean_examples() + [(500, "help", "roads"), (501, "word " * 1200, "roads")]
    report = check_training_data(rows)
    assert report.too_short_ids == (500,)
    assert report.too_long_ids == (501,)


def test_report_serialises_with_the_contract_keys() -> None:
    data = check_training_data(
        _clean_examples(), categories=["roads", "parks", "waste", "lights"]
    ).to_dict()
    json.dumps(data)
    for key in (
        "duplicates",
        "near_duplicates",
        "conflicts",
        "too_short",
        "too_long",
        "imbalance_ratio",
        "warnings",
        "errors",
        "per_category",
        "duplicate_ids",
        "conflict_ids",
    ):
        assert key in data
    assert data["per_category"]["lights"] == 0
    assert isinstance(data["duplicates"], int)


def test_normalisation_ignores_case_punctuation_and_spacing() -> None:
    assert normalize_text("  Hello,   WORLD!! ") == normalize_text("hello world")


def test_similar_groups_join_exact_and_near_duplicates_in_input_order() -> None:
    texts = [
        "The streetlight on Elm Street is broken",  # 0
        "bins not emptied",  # 1
        "the streetlight on elm street is broken!",  # 2: exact duplicate of 0
        "The streetlight on Elm Street is broken again",  # 3: near duplicate of 0
        "BINS NOT EMPTIED.",  # 4: exact duplicate of 1
        "a new playground for the park",  # 5
        "",  # 6: nothing to compare
    ]
    assert similar_groups(texts) == [[0, 2, 3], [1, 4], [5], [6]]
    assert similar_groups([]) == []
