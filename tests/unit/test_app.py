import subprocess
import sys


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["db"] is True
    assert body["broker"] is False  # the unit tier's broker is a closed port
    assert body["status"] == "degraded"
    assert body["model_version"].startswith("base:")


def test_unknown_api_route_answers_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert "error" in response.get_json()


def test_wrong_method_on_api_answers_json_405(client):
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert "error" in response.get_json()


def test_admin_api_refuses_anonymous_access(client):
    response = client.get("/admin/api/model-info")
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_admin_api_accepts_the_bearer_token(client, admin_headers):
    response = client.get("/admin/api/model-info", headers=admin_headers)
    assert response.status_code == 200
    assert response.get_json()["kind"] == "base"


def test_a_wrong_bearer_token_is_refused(client):
    response = client.get("/admin/api/model-info", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def test_admin_pages_redirect_anonymous_users_to_login(client):
    response = client.get("/admin/submissions")
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


def test_importing_web_loads_no_worker_or_training_code():
    code = (
        "import sys, web; web.create_app; "
        "bad = [m for m in ('worker', 'peft', 'datasets', 'accelerate') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
