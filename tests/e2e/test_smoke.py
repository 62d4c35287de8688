"""A person opens the admin in a real browser and logs in."""


def test_admin_logs_in_and_sees_the_admin_pages(live_server, page, admin_account):
    username, password = admin_account
    page.goto(f"{live_server.url}/admin/submissions")
    assert "/admin/login" in page.url  # anonymous: sent to the login page
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/submissions")
    assert page.locator("nav").inner_text().count("Log out") == 1


def test_every_admin_page_loads_under_the_content_security_policy(
    live_server, page, admin_account, session
):
    """The page fixture fails on any CSP violation; the JavaScript still runs."""
    from tests.factories import make_run

    run = make_run(
        session,
        status="completed",
        results={"confusion_matrix": [[3, 1], [0, 4]], "labels": ["a", "b"]},
    )
    session.commit()
    username, password = admin_account
    page.goto(f"{live_server.url}/admin/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/submissions")
    for path in ("training", "models", "categories", "training-data", "settings",
                 f"training/runs/{run.id}"):  # fmt: skip
        response = page.goto(f"{live_server.url}/admin/{path}")
        assert response.headers["x-frame-options"] == "DENY"
        page.wait_for_load_state("networkidle")
    page.goto(f"{live_server.url}/admin/training/runs/{run.id}")
    cell = page.locator("table.heatmap td.heat").first
    assert cell.evaluate("cell => getComputedStyle(cell).backgroundColor") != "rgba(0, 0, 0, 0)"


def test_wrong_password_keeps_the_admin_out(live_server, page, admin_account):
    username, _ = admin_account
    page.goto(f"{live_server.url}/admin/login")
    page.fill("#username", username)
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert "Unknown username or wrong password" in page.content()
    assert "/admin/login" in page.url


def test_the_api_docs_render_offline_under_the_content_security_policy(live_server, page):
    """Swagger UI at /openapi lists the operations of /openapi.json, with its own
    assets (the browser has no internet) and no CSP violation (the page fixture)."""
    page.goto(f"{live_server.url}/openapi")
    page.wait_for_selector(".opblock", timeout=30000)
    assert page.locator(".opblock").count() >= 20
    assert "/api/submissions" in page.locator(".swagger-ui").inner_text()
    # Its stylesheet applied: an operation block is laid out, not raw unstyled text.
    block = page.locator(".opblock").first
    assert block.evaluate("el => getComputedStyle(el).borderStyle") != "none"
