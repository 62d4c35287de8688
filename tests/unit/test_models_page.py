"""The Models page tells the truth at a glance: which model is deployed, what happened
when and by whom in words, where imported models came from and how much better they are."""

from __future__ import annotations

import io
import re

import pytest

from shared.model_store.layout import run_directory
from tests.factories import make_category, make_run
from tests.model_files import archive_files, write_adapter_directory, zip_bytes
from tests.unit.fakes import KeywordClassifier

LABELS = ["cards", "loans"]
RESULTS = {"accuracy": 0.9, "baseline_accuracy": 0.775, "meets_criteria": True}


@pytest.fixture
def published(session, config):
    for name in LABELS:
        make_category(session, name=name)
    run = make_run(session, status="completed", results=RESULTS)
    run.model_path = str(write_adapter_directory(run_directory(config.models_dir, run.id), LABELS))
    session.commit()
    return run


@pytest.fixture
def serving_base(app):
    """This process already serves the base model (as a web process does from its start)."""
    model = app.extensions["sortloop_analyzer"].active_model
    model._load_base = lambda _config: KeywordClassifier(version="ignored")
    model._load_finetuned = lambda _config, _dir, version: KeywordClassifier(version=version)
    model.refresh()
    assert model.get_model_info()["kind"] == "base"
    return model


def page(client, admin_headers, path="/admin/models") -> str:
    response = client.get(path, headers=admin_headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def text_of(html: str, role: str) -> str:
    """The words inside the element with ``data-role=role`` (tags and extra spaces removed)."""
    match = re.search(rf'<(\w+)[^>]*data-role="{role}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no data-role={role}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split())


def test_after_a_deploy_the_panel_names_the_deployed_run_before_the_process_swaps(
    client, admin_headers, published, serving_base
) -> None:
    """The panel used to show this process's loaded model: "Base model" for the seconds
    (in tests: for good) until its check swapped, while the table said the run was active."""
    deployed = client.post(f"/admin/api/deploy-model/{published.id}", headers=admin_headers)
    assert deployed.status_code == 200

    active = text_of(page(client, admin_headers), "active-model")
    assert f"Fine-tuned model: run {published.id}" in active
    assert "Base model" not in active
    assert "90.0% test accuracy (+12.5 points over the base model)" in active
    assert "put in use by api-token" in active
    api = client.get("/admin/api/deployments", headers=admin_headers).get_json()["active"]
    assert (api["kind"], api["run_id"]) == ("finetuned", published.id)
    assert api["serving"]["version"].startswith("base:")  # this process has not swapped yet
    assert "switch to it within a few seconds" in page(client, admin_headers)

    client.post("/admin/api/rollback-model", headers=admin_headers)
    assert text_of(page(client, admin_headers), "active-model").startswith("Base model:")


def test_the_state_fragment_is_what_the_script_swaps_in(
    client, admin_headers, published, serving_base
) -> None:
    client.post(f"/admin/api/deploy-model/{published.id}", headers=admin_headers)
    fragment = page(client, admin_headers, "/admin/models/state")
    for part in ("active-model", "models", "history"):
        assert f'data-part="{part}"' in fragment
    assert f"Fine-tuned model: run {published.id}" in text_of(fragment, "active-model")
    assert client.get("/admin/models/state").status_code in (302, 401)  # admins only


def test_history_says_who_did_what_when_in_words(client, admin_headers, published) -> None:
    client.post(f"/admin/api/deploy-model/{published.id}", headers=admin_headers)
    client.post("/admin/api/rollback-model", headers=admin_headers)
    history = page(client, admin_headers)
    rows = re.findall(
        r"<tr><td[^>]*>(.*?)</td>\s*<td[^>]*>(.*?)</td>\s*<td>(.*?)</td></tr>",
        history.split('data-role="history"')[1],
        re.S,
    )
    assert [row[1].strip() for row in rows] == [
        f"Rolled back from run {published.id} to the base model.",
        f"Deployed run {published.id}, replacing the base model (all-MiniLM-L6-v2).",
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", row[0]) for row in rows)
    assert {row[2] for row in rows} == {"api-token"}
    assert "{" not in text_of(history, "history")  # no raw JSON


def test_imported_models_show_file_name_import_date_and_accuracy(
    client, admin_headers, session
) -> None:
    for name in LABELS:
        make_category(session, name=name)
    session.commit()
    archive = zip_bytes(archive_files(LABELS, seed=4))
    imported = client.post(
        "/admin/api/import-model",
        data={"archive": (io.BytesIO(archive), "support-model-march.zip")},
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert imported.status_code == 201, imported.get_json()
    run_id = imported.get_json()["run_id"]

    html = page(client, admin_headers)
    row = re.search(rf'<tr data-run-id="{run_id}">(.*?)</tr>', html, re.S).group(1)
    words = " ".join(re.sub(r"<[^>]+>", " ", row).split())
    assert re.search(
        r"imported from support-model-march\.zip on \d{4}-\d\d-\d\d \d\d:\d\d UTC", words
    )
    assert re.search(r"\d+\.\d% \([+-]\d+\.\d points\)", words), words
    history = text_of(html, "history")
    assert f"Imported run {run_id} from support-model-march.zip." in history


def test_the_deploy_dialog_speaks_the_admins_language_and_apply_looks_different(
    client, admin_headers, published
) -> None:
    html = page(client, admin_headers)
    dialog = re.search(r'<dialog data-role="deploy-dialog".*?</dialog>', html, re.S).group(0)
    assert "did not meet the deploy criteria" in dialog
    assert "Deploy anyway" in dialog and "Keep the current model" in dialog
    assert "force" not in html.lower().replace("forced", "")
    preview = re.search(r'<button[^>]*data-action="reclassify-preview"[^>]*>', html).group(0)
    apply = re.search(r'<button[^>]*data-action="reclassify-apply"[^>]*>', html).group(0)
    assert 'class="secondary"' in preview and 'class="apply"' in apply


def test_the_panel_escapes_what_it_shows(client, admin_headers, session, config) -> None:
    make_category(session, name="cards")
    make_run(
        session,
        status="imported",
        results={"imported_from": {"filename": "<script>x</script>.zip"}, "accuracy": 0.5},
    )
    session.commit()
    html = page(client, admin_headers)
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;.zip" in html
