"""Logging in through the real login form, as every browser test starts."""

from __future__ import annotations


def log_in(page, live_server, username, password, landing: str = "/admin/**") -> None:
    """Fill and send the login form; wait until the browser lands on ``landing``."""
    page.goto(f"{live_server.url}/admin/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}{landing}")
