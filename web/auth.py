"""Admin access: session login for the browser, bearer token for scripts."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as flask_session
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from shared.errors import InvalidInput
from shared.inputs import MAX_ID, parse_whole_number
from shared.models import AdminUser, utcnow
from web.db import get_session
from web.errors import error_response
from web.extensions import csrf, limiter, login_manager

bp = Blueprint("auth", __name__, url_prefix="/admin")


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=100)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


@login_manager.user_loader
def _load_user(session_token: str) -> AdminUser | None:
    """The admin of a session ("<id>:<session version>"), checked on every request: a
    session made before a logout or a password change is anonymous."""
    user_id, _, version = session_token.partition(":")
    try:
        user = get_session().get(AdminUser, parse_whole_number(user_id, "user id", 1, MAX_ID))
    except InvalidInput:
        return None
    if user is None or version != str(user.session_version):
        return None
    return user


def _bearer_token_matches() -> bool:
    expected = current_app.config["SORTLOOP"].admin_token
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip(), expected)


def current_actor() -> str:
    """Who is acting: the admin's username, or 'api-token' for scripts."""
    return g.get("sortloop_actor") or "anonymous"


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse anonymous access: 401 JSON for the API, a redirect to the login page otherwise.

    A bearer token authenticates API calls without a session; those need no CSRF token
    because no browser sends that header on its own.
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user.is_authenticated:
            g.sortloop_actor = current_user.username
            return view(*args, **kwargs)
        if _bearer_token_matches():
            g.sortloop_actor = "api-token"
            return view(*args, **kwargs)
        if request.path.startswith("/admin/api/"):
            return error_response("authentication required: log in or send a bearer token", 401)
        return redirect(url_for("auth.login", next=request.full_path))

    return wrapped


def csrf_exempt(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that needs no CSRF token: the public JSON API, which uses no cookies."""
    view.sortloop_csrf_exempt = True  # type: ignore[attr-defined]
    return view


def protect_forms_from_csrf(app) -> None:
    """CSRF protects cookie sessions; a bearer-token request carries no ambient credential.

    Unmatched routes are left to the router (404/405), exempt views to themselves.
    """

    @app.before_request
    def _csrf_unless_bearer() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint is None:
            return
        view = app.view_functions.get(request.endpoint)
        if view is None or getattr(view, "sortloop_csrf_exempt", False):
            return
        if _bearer_token_matches():
            return
        if request.path.startswith("/admin/api/") and not current_user.is_authenticated:
            return  # no session to forge: admin_required answers 401 (API.md)
        csrf.protect()


def _login_rate_limit() -> str:
    return current_app.config["SORTLOOP"].login_rate_limit


def _login_account() -> str:
    return "login-account:" + (request.form.get("username") or "").strip().lower()[:100]


def _login_failed(response) -> bool:
    return response.status_code == 401


def _login_throttled() -> str:
    return (
        "Too many failed logins for this account or from this address "
        f"(at most {_login_rate_limit()}): wait, then try again."
    )


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    _login_rate_limit,
    methods=["POST"],
    key_func=get_remote_address,
    deduct_when=_login_failed,
    error_message=_login_throttled,
)
@limiter.limit(
    _login_rate_limit,
    methods=["POST"],
    key_func=_login_account,
    deduct_when=_login_failed,
    error_message=_login_throttled,
)
def login():
    form = LoginForm()
    if form.validate_on_submit():
        session = get_session()
        user = session.scalar(select(AdminUser).where(AdminUser.username == form.username.data))
        if user is not None and user.check_password(form.password.data or ""):
            user.last_login_at = utcnow()
            session.commit()
            login_user(user)
            flask_session.permanent = True  # expires after the idle timeout (create_app)
            target = request.args.get("next", "")
            if not target.startswith("/admin") or target.startswith("//"):
                target = url_for("admin.index")
            return redirect(target)
        flash("Unknown username or wrong password.", "error")
    return render_template("auth/login.html", form=form), 200 if request.method == "GET" else 401


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        current_user.end_sessions()  # a copy of the cookie is worth nothing from now on
        get_session().commit()
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
