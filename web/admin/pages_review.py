"""The keyboard review page: one submission at a time, one key per decision.

The page is a shell; web/static/review.js reads the queue from the admin API
(``GET /admin/api/submissions`` with the page's filters, near duplicates folded) and
saves each decision through it. Without JavaScript it points to the Submissions list,
which works as before.
"""

from __future__ import annotations

from flask import render_template, request, url_for

from shared.submissions.categories import list_categories
from shared.submissions.records import ORDERS, count_reviewed
from web.admin import bp
from web.admin.pages_submissions import search_words
from web.auth import admin_required
from web.db import get_session

# More keys than digits: categories past the ninth are picked with the search (/).
NUMBERED_CATEGORIES = 9


@bp.get("/review")
@admin_required
def review():
    session = get_session()
    order = request.args.get("order") or "uncertain"
    if order not in ORDERS:
        order = "uncertain"
    filters = {
        "category": request.args.get("category") or "",
        "order": order,
        "q": search_words(),
        # The queue holds what is not yet reviewed unless the admin asks for everything.
        "include_reviewed": request.args.get("include_reviewed") == "1",
    }
    api_query = {
        "order": order,
        "category": filters["category"],
        "q": filters["q"],
        "unreviewed": "" if filters["include_reviewed"] else "1",
        "fold_similar": "" if filters["include_reviewed"] else "1",
    }
    already_reviewed = (
        count_reviewed(session, category=filters["category"] or None, q=filters["q"] or None)
        if filters["include_reviewed"]
        else 0
    )
    active = [category.name for category in list_categories(session, active_only=True)]
    return render_template(
        "admin/review.html",
        filters=filters,
        categories=list_categories(session),
        active_categories=active,
        numbered=NUMBERED_CATEGORIES,
        api_query={key: value for key, value in api_query.items() if value},
        already_reviewed=already_reviewed,
        list_url=url_for(
            "admin.submissions",
            category=filters["category"] or None,
            q=filters["q"] or None,
            order=order,
            unreviewed=None if filters["include_reviewed"] else "1",
        ),
    )
