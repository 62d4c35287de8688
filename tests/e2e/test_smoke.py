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


def test_wrong_password_keeps_the_admin_out(live_server, page, admin_account):
    username, _ = admin_account
    page.goto(f"{live_server.url}/admin/login")
    page.fill("#username", username)
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert "Unknown username or wrong password" in page.content()
    assert "/admin/login" in page.url
