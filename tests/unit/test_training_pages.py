"""The training dashboard, run details and settings pages render what an admin needs."""

from __future__ import annotations

import re
from html import unescape as html_unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.settings_store import get_setting, set_setting
from tests.factories import make_category, make_run, make_training_example

XSS = '<script>alert("x")</script>'


@pytest.fixture
def logged_in(client, session):
    from shared.models import AdminUser

    user = AdminUser(username="pages-admin")
    user.set_password("pages-password")
    session.add(user)
    session.commit()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.post(
        "/admin/login",
        data={"username": "pages-admin", "password": "pages-password", "csrf_token": token},
    )
    return client


def csrf_token(client, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def completed_run(session):
    labels = ["roads", XSS]
    return make_run(
        session,
        status="completed",
        training_config={"method": "lora", "lora_r": 8, "epochs": 2, "split": [0.7, 0.15, 0.15]},
        results={
            "accuracy": 0.875,
            "baseline_accuracy": 0.5,
            "macro_f1": 0.86,
            "meets_criteria": True,
            "verdict": {"meets_criteria": True, "reasons": ["accuracy up 37.5 points: met"]},
            "labels": labels,
            "per_category_f1": {"roads": 0.9, XSS: 0.8},
            "baseline_per_category_f1": {"roads": 0.5, XSS: 0.4},
            "confusion_matrix": [[4, 0], [1, 3]],
            "loss_curve": [
                {"step": 1, "loss": 2.0},
                {"step": 2, "loss": 1.2},
                {"step": 3, "loss": 0.7},
            ],
            "training": {"train_loss": [1.6, 0.9], "val_loss": [1.4, 1.0]},
        },
        data_snapshot={
            "example_ids": [1, 2, 3],
            "quality": {"total": 3, "duplicates": 1, "duplicate_ids": [2], "imbalance_ratio": 1.0},
        },
    )


def test_the_dashboard_shows_readiness_distribution_and_quality_links(logged_in, session):
    make_category(session, name="roads", description="roads")
    make_category(session, name="parks", description="parks")
    for n in range(3):
        make_training_example(
            session, message=f"pothole on the main road number {n}", corrected_category="roads"
        )
        make_training_example(
            session, message=f"the park benches are broken {n} times", corrected_category="parks"
        )
    make_training_example(
        session, message="pothole on the main road number 0", corrected_category="roads"
    )
    set_setting(session, "min_training_examples", 100)
    session.commit()

    html = logged_in.get("/admin/training").get_data(as_text=True)

    assert "Not ready yet" in html
    assert "7 examples, 100 needed" in html
    assert 'data-chart="distribution"' in html
    assert re.search(r'href="/admin/training-data\?ids=\d+', html), (
        "duplicates link to the examples"
    )
    assert 'data-action="review"' in html and "disabled" in html
    assert 'src="/static/training.js"' in html


def test_the_dashboard_enables_the_start_button_when_ready(logged_in, session):
    for name in ("roads", "parks"):
        make_category(session, name=name, description=name)
        for n in range(3):
            make_training_example(
                session, message=f"a longer message about {name} {n}", corrected_category=name
            )
    set_setting(session, "min_training_examples", 6)
    session.commit()
    # Three a category would all train: no test text yet, and the page says so.
    waiting = logged_in.get("/admin/training").get_data(as_text=True)
    assert "Not ready yet" in waiting and "No example is left for the test set" in waiting
    make_training_example(
        session, message="a longer message about roads 9", corrected_category="roads"
    )
    session.commit()

    html = logged_in.get("/admin/training").get_data(as_text=True)

    assert "Ready to train" in html
    button = re.search(r'<button type="submit" data-action="review"[^>]*>', html).group(0)
    assert "disabled" not in button


def test_the_dashboard_preselects_the_default_method_and_says_why(logged_in):
    from shared.training_config import DEFAULT_METHOD

    html = logged_in.get("/admin/training").get_data(as_text=True)

    selected = re.search(r'<option value="(\w+)" selected>', html).group(1)
    assert selected == DEFAULT_METHOD == "head"
    notes = re.search(r'<ul class="hint method-notes"[^>]*>(.*?)</ul>', html, re.S).group(1)
    assert "<strong>head</strong>: the default" in notes
    assert "so it is not the default" in notes


def test_run_details_draw_f1_confusion_matrix_and_loss_curve_with_escaped_labels(
    logged_in, session
):
    run = completed_run(session)
    session.commit()

    html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)

    assert 'data-chart="per-category-f1"' in html
    assert 'data-chart="confusion-matrix"' in html
    assert 'data-chart="loss-curve"' in html
    assert "87.5%" in html and "50.0%" in html
    assert "Meets the deploy criteria" in html
    assert XSS not in html
    assert "&lt;script&gt;" in html
    assert "0.7 / 0.15 / 0.15" in html


def test_run_details_say_how_training_went_and_what_was_left_out(logged_in, session):
    trained = completed_run(session)
    trained.results = {
        **trained.results,
        "training": {
            "method": "lora",
            "best_epoch": 3,
            "epochs_run": 5,
            "train_seconds": 4.21,
            "device": "cpu",
            "adapted_blocks": "every block",
            "train_loss": [1.0] * 5,
            "val_loss": [1.0] * 5,
            "linear_head": {
                "descriptions_as_examples": True,
                "description_facets": True,
                "middle_layer": {"block": 3, "weight": 0.5},
                "token_weight": 1.4,
            },
        },
    }
    kept_start = completed_run(session)
    kept_start.results = {
        **kept_start.results,
        "training": {
            "method": "lora",
            "best_epoch": 0,
            "epochs_run": 2,
            "device": "cpu",
            "linear_head": {"descriptions_as_examples": False},
        },
    }
    session.commit()

    trained_html = logged_in.get(f"/admin/training/runs/{trained.id}").get_data(as_text=True)
    start_html = logged_in.get(f"/admin/training/runs/{kept_start.id}").get_data(as_text=True)

    assert "best epoch 3 of 5, 4.2 s on cpu; LoRA on every block of the encoder" in trained_html
    assert 'data-role="adapter-not-kept"' not in trained_html
    assert "best epoch 0 of 2 on cpu" in start_html
    assert 'data-role="adapter-not-kept"' in start_html
    assert "adapter was not kept" in start_html
    # The head did better without the categories' descriptions: the admin is told.
    assert 'data-role="descriptions-not-used"' in start_html
    assert 'data-role="descriptions-not-used"' not in trained_html
    # Listing descriptions gave their parts as examples: said where they did.
    assert 'data-role="description-facets"' in trained_html
    assert 'data-role="description-facets"' not in start_html
    # The head reads a middle block of the encoder: said where it does, not elsewhere.
    assert 'data-role="middle-layer"' in trained_html
    assert "The model reads block 3 of the encoder" in trained_html
    assert 'data-role="middle-layer"' not in start_html
    # It also matches texts word by word with the examples: said where it does.
    assert 'data-role="token-match"' in trained_html
    assert 'data-role="token-match"' not in start_html


def test_run_details_compare_the_run_with_the_model_that_was_in_use(logged_in, session):
    compared = {"run_id": 4, "version": "run-4", "num_test": 40, "accuracy": 0.85}
    worse = completed_run(session)
    worse.results = {
        **worse.results,
        "in_use": {
            **compared,
            "new_accuracy": 0.8,
            "new_right": 1,
            "in_use_right": 3,
            "p_value": 0.625,
            "new_is_better": False,
        },
    }
    unreadable = completed_run(session)
    unreadable.results = {**unreadable.results, "in_use": {"run_id": 4, "error": "no files"}}
    plain = completed_run(session)
    session.commit()

    def paragraph(run) -> str:
        html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)
        found = re.search(r'<p data-role="against-model-in-use">(.*?)</p>', html, re.S)
        return " ".join(found.group(1).split()) if found else ""

    assert paragraph(worse) == (
        "Against the model that was in use (run 4): on the 40 test texts it did not train "
        "on, this run scored 80.0% and it 85.0% (1 of them right only here, 3 only there; "
        "McNemar p = 0.625). Auto-deploy keeps it."
    )
    assert "it could not be scored (no files)" in paragraph(unreadable)
    assert paragraph(plain) == ""


def test_run_details_say_how_well_the_confidence_matches_the_accuracy(logged_in, session):
    run = completed_run(session)
    bins = [
        {"from": 0.5, "to": 0.6, "count": 2, "confidence": 0.55, "accuracy": 0.5},
        {"from": 0.9, "to": 1.0, "count": 6, "confidence": 0.95, "accuracy": 1.0},
    ]
    run.results = {
        **run.results,
        "calibration": {
            "ece": 0.05,
            "overconfidence": -0.025,
            "mean_confidence": 0.85,
            "bins": bins,
        },
        "baseline_calibration": {
            "ece": 0.21,
            "overconfidence": 0.21,
            "mean_confidence": 0.71,
            "bins": [],
        },
    }
    session.commit()

    html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)

    said = " ".join(re.search(r'<p data-role="calibration">(.*?)</p>', html, re.S).group(1).split())
    assert said.startswith(
        "On the test texts: this model mean confidence 85%, 2.5 points underconfident, "
        "calibration error 0.050; the base model mean confidence 71%, 21.0 points "
        "overconfident, calibration error 0.210."
    )
    table = re.search(r'<table class="compact" data-role="reliability">(.*?)</table>', html, re.S)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(\d+)</td>", table.group(1))
    assert rows == [("50–60%", "2"), ("90–100%", "6")]


def test_run_details_of_a_failed_run_show_the_error(logged_in, session):
    run = make_run(session, status="failed", error="worker lost: no heartbeat for more than 300 s")
    session.commit()
    html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)
    assert "worker lost: no heartbeat" in html


def test_run_details_of_an_unknown_run_is_404(logged_in):
    assert logged_in.get("/admin/training/runs/999").status_code == 404


def test_the_settings_form_saves_every_setting(logged_in, session):
    token = csrf_token(logged_in, "/admin/settings")
    response = logged_in.post(
        "/admin/settings",
        data={
            "csrf_token": token,
            "min_training_examples": "35",
            "auto_train": "on",
            "fine_tuning_enabled": "on",
        },
    )
    assert response.status_code == 302
    session.expire_all()
    assert get_setting(session, "min_training_examples") == 35
    assert get_setting(session, "auto_train") is True
    assert get_setting(session, "auto_deploy") is False


def test_the_settings_form_refuses_a_bad_minimum_and_changes_nothing(logged_in, session):
    token = csrf_token(logged_in, "/admin/settings")
    response = logged_in.post(
        "/admin/settings",
        data={"csrf_token": token, "min_training_examples": "0", "auto_train": "on"},
    )
    assert response.status_code == 400
    assert "min_training_examples" in response.get_data(as_text=True)
    session.expire_all()
    assert get_setting(session, "auto_train") is False


def test_the_pages_need_a_login(client):
    for path in ("/admin/training", "/admin/settings", "/admin/training/runs/1"):
        assert client.get(path).status_code == 302


LONG_NAME = "Questions about a card payment that was declined at a shop abroad"


def test_run_details_name_the_base_model_and_show_its_confusion_matrix_beside(logged_in, session):
    run = completed_run(session)
    run.base_model = "/opt/models/sentence-transformers/all-MiniLM-L6-v2/"
    run.results = {
        **run.results,
        "labels": ["roads", LONG_NAME],
        "per_category_f1": {"roads": 0.9, LONG_NAME: 0.8},
        "confusion_matrix": [[4, 0], [1, 3]],
        "baseline_confusion_matrix": [[2, 2], [3, 1]],
    }
    session.commit()

    html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)

    base = re.search(r'data-role="base-model">([^<]*)<', html).group(1)
    assert base == "all-MiniLM-L6-v2"  # a name, not the path on this machine
    assert "/opt/models" not in html
    new = html.split('data-chart="confusion-matrix"')[1].split("</table>")[0]
    old = html.split('data-chart="baseline-confusion-matrix"')[1].split("</table>")[0]
    assert re.findall(r">(\d+)</td>", new) == ["4", "0", "1", "3"]
    assert re.findall(r">(\d+)</td>", old) == ["2", "2", "3", "1"]
    assert "Base model (all-MiniLM-L6-v2)" in html
    # Long category names are written whole: on the matrix rows and above the F1 bars.
    assert f"2. {LONG_NAME}</th>" in new
    assert f'<abbr title="{LONG_NAME}">2</abbr>' in new
    f1_chart = html.split('data-chart="per-category-f1"')[1].split("</svg>")[0]
    assert f'class="bar-label">{LONG_NAME}<title>' in f1_chart


def test_run_details_draw_both_losses_and_write_them_per_epoch(logged_in, session):
    run = completed_run(session)
    session.commit()

    html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)

    chart = html.split('data-chart="loss-curve"')[1].split("</svg>")[0]
    assert chart.count('<polyline points="') == 2
    assert len(re.findall(r'<circle [^>]*class="line-val"', chart)) == 2  # one per epoch
    table = html.split('data-role="loss-table"')[1].split("</table>")[0]
    cells = [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in table.split("<tr>")[2:]]
    assert cells == ["1 1.6000 1.4000", "2 0.9000 1.0000"]


def test_the_history_shows_the_improvement_in_points_and_dates_in_one_format(logged_in, session):
    better = completed_run(session)  # 87.5% against 50.0%
    worse = make_run(
        session, status="completed", results={"accuracy": 0.7, "baseline_accuracy": 0.75}
    )
    session.commit()

    for path in ("/admin/training", "/admin/training/history"):
        html = logged_in.get(path).get_data(as_text=True)
        if 'data-role="history"' in html:  # the dashboard: its history table, not the panel
            html = html.split('data-role="history"')[1].split("</table>")[0]
        rows = {
            int(run_id): " ".join(re.sub(r"<[^>]+>", " ", body).split())
            for run_id, body in re.findall(r'<tr data-run-id="(\d+)">(.*?)</tr>', html, re.S)
        }
        assert "87.5% 50.0% +37.5 points" in rows[better.id]
        assert "70.0% 75.0% -5.0 points" in rows[worse.id]
        assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC ", row) for row in rows.values())


def test_every_admin_date_is_written_one_way_in_utc():
    from datetime import datetime, timedelta, timezone

    from web.admin.formatting import points, when

    assert when("2026-11-25T14:08:45.455+00:00") == "2026-11-25 14:08 UTC"
    assert when("2026-11-25T16:08:45+02:00") == "2026-11-25 14:08 UTC"  # converted, not cut
    assert when(datetime(2026, 11, 25, 14, 8, 45)) == "2026-11-25 14:08 UTC"  # naive is UTC
    eastern = timezone(timedelta(hours=-5))
    assert when(datetime(2026, 11, 25, 9, 8, tzinfo=eastern)) == "2026-11-25 14:08 UTC"
    assert when(None) == "–"
    assert (points(0.125), points(-0.05), points(0.0), points(None)) == (
        "+12.5 points",
        "-5.0 points",
        "±0.0 points",
        "–",
    )


def test_run_details_list_the_labels_to_check_and_open_them_in_training_data(logged_in, session):
    make_category(session, name="parks")
    make_category(session, name="roads")
    doubted = make_training_example(
        session, message="the swings in the park are broken", corrected_category="roads"
    )
    make_training_example(session, message="pothole on the high street", corrected_category="roads")
    run = completed_run(session)
    run.results = {
        **run.results,
        "training": {
            "method": "head",
            "label_issues": [
                {
                    "id": doubted.id,
                    "text": XSS,  # texts are the public's: escaped
                    "label": "roads",
                    "suggested": "parks",
                    "label_probability": 0.012,
                    "suggested_probability": 0.93,
                }
            ],
        },
    }
    clean = completed_run(session)
    session.commit()

    html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)
    assert 'data-role="label-issues"' in html
    assert "The model doubts 1 of the labels" in html
    assert "roads (1.2%)" in html and "parks (93%)" in html
    assert XSS not in html and "&lt;script&gt;" in html
    link = re.search(r'href="([^"]*)" data-role="label-issues-open"', html).group(1)
    link = link.replace("&amp;", "&")
    assert f"ids={doubted.id}" in link and f"run={run.id}" in link
    listed = logged_in.get(link).get_data(as_text=True)
    assert "the swings in the park are broken" in listed
    assert "pothole on the high street" not in listed  # only the doubted one, to relabel
    assert 'data-role="run-doubts"' in listed
    # One click takes the model's suggestion; then the label is no longer the doubted one.
    form = re.search(r'<form[^>]*data-role="use-suggestion">(.*?)</form>', listed, re.S).group(1)
    assert "Relabel as parks" in form and "the model: 93%" in form
    fields = {k: html_unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form)}
    answer = logged_in.post("/admin/training-data/bulk", data=fields)
    assert answer.status_code == 302 and answer.headers["Location"].endswith(link)
    session.refresh(doubted)
    assert doubted.corrected_category == "parks"
    again = logged_in.get(link).get_data(as_text=True)
    assert 'data-role="use-suggestion"' not in again
    # A run that is not there, or not a number: a clear answer, not a crash.
    assert logged_in.get(f"/admin/training-data?run={run.id + 1000}").status_code == 404
    assert logged_in.get("/admin/training-data?run=abc").status_code == 400

    clean_html = logged_in.get(f"/admin/training/runs/{clean.id}").get_data(as_text=True)
    assert 'data-role="label-issues"' not in clean_html

    # The dashboard's history says so beside the run, and the API counts them.
    history = logged_in.get("/admin/training/history").get_data(as_text=True)
    rows = {
        row_id: row for row_id, row in re.findall(r'data-run-id="(\d+)">(.*?)</tr>', history, re.S)
    }
    assert "1 label to check" in rows[str(run.id)]
    assert f"/admin/training/runs/{run.id}#label-issues-title" in rows[str(run.id)]
    assert "to check" not in rows[str(clean.id)]
    counts = {
        r["run_id"]: r["labels_to_check"] for r in logged_in.get("/admin/api/runs").get_json()
    }
    assert counts[run.id] == 1 and counts[clean.id] == 0


def test_run_details_show_what_became_of_each_label_to_check(logged_in, session):
    for name in ("parks", "roads", "lighting"):
        make_category(session, name=name)
    texts = ("swings broken in the park", "bench vandalised", "lamp out on elm street")
    relabelled, deleted, unchanged = (
        make_training_example(session, message=text, corrected_category="roads") for text in texts
    )
    run = completed_run(session)

    def issue(example, suggested):
        return {
            "id": example.id,
            "text": example.message,
            "label": "roads",
            "suggested": suggested,
            "label_probability": 0.01,
            "suggested_probability": 0.9,
        }

    run.results = {
        **run.results,
        "training": {
            "label_issues": [
                issue(relabelled, "parks"),
                issue(deleted, "parks"),
                issue(unchanged, "lighting"),
                {**issue(unchanged, "parks"), "id": None, "text": "from the command line"},
            ]
        },
    }
    session.commit()
    page = f"/admin/training/runs/{run.id}"

    def words(html: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()

    def rows():
        html = logged_in.get(page).get_data(as_text=True)
        found = re.findall(r'<tr data-role="label-issue" data-now="(\w+)">(.*?)</tr>', html, re.S)
        return html, [(now, words(row)) for now, row in found]

    html, before = rows()
    assert [now for now, _ in before] == ["unchanged", "unchanged", "unchanged", "unknown"]
    assert 'data-role="label-issues-done"' not in html
    link = html_unescape(re.search(r'href="([^"]*)" data-role="label-issues-open"', html).group(1))
    assert parse_qs(urlsplit(link).query)["ids"][0].split(",") == [
        str(relabelled.id),
        str(deleted.id),
        str(unchanged.id),
    ]

    # One relabelled (as an admin does from Training data), one deleted.
    token = csrf_token(logged_in, "/admin/training-data")

    def relabel(example, category):
        fields = {"csrf_token": token, "action": "relabel", "ids": str(example.id)}
        return logged_in.post("/admin/training-data/bulk", data={**fields, "category": category})

    assert relabel(relabelled, "parks").status_code == 302
    removed = logged_in.post(
        f"/admin/training-data/{deleted.id}/delete", data={"csrf_token": token}
    )
    assert removed.status_code == 302

    html, after = rows()
    assert [now for now, _ in after] == ["relabelled", "deleted", "unchanged", "unknown"]
    assert after[0][1].endswith("relabelled as parks")
    assert after[1][1].endswith("deleted") and f"ids={deleted.id}" not in html  # no dead link
    assert after[2][1].endswith("unchanged")
    assert "2 of them have been relabelled or deleted since this run." in words(html)
    link = html_unescape(re.search(r'href="([^"]*)" data-role="label-issues-open"', html).group(1))
    assert parse_qs(urlsplit(link).query)["ids"][0] == str(unchanged.id)
    assert "Open the one still labelled as the run had it in Training data" in words(html)

    # Once every one is dealt with, the page says to train again and links nothing.
    relabel(unchanged, "lighting")
    html, _ = rows()
    assert "3 of them have been relabelled or deleted since this run: train again" in words(html)
    assert 'data-role="label-issues-open"' not in html
    assert "The model doubts 4 of the labels" in html  # the run's record stays as it was


def test_a_long_list_of_labels_to_check_shows_the_most_doubtful(logged_in, session):
    examples = [make_training_example(session, corrected_category="roads") for _ in range(240)]
    run = completed_run(session)
    run.results = {
        **run.results,
        "training": {
            "label_issues": [
                {
                    "id": example.id,
                    "text": example.message,
                    "label": "roads",
                    "suggested": "parks",
                    "label_probability": 0.001 * rank,
                    "suggested_probability": 0.9,
                }
                for rank, example in enumerate(examples)
            ]
        },
    }
    session.commit()

    html = logged_in.get(f"/admin/training/runs/{run.id}").get_data(as_text=True)
    assert "The model doubts 240 of the labels" in html
    assert html.count('data-role="label-issue"') == 50 and "The 50 most doubtful" in html
    link = html_unescape(re.search(r'href="([^"]*)" data-role="label-issues-open"', html).group(1))
    assert parse_qs(urlsplit(link).query)["ids"][0].split(",") == [
        str(example.id) for example in examples[:200]
    ]
    assert "the 200 most doubtful in Training data" in html
