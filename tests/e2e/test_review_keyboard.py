"""Review at keyboard speed, in real Chromium against a live web process and PostgreSQL.

An admin clears a queue of 50 suggestions with the keyboard only (accept, pick by
number, undo, category search, select-and-set), every key counted; each decision must
be the right training example and still be there after a reload. Then the list: search
as you type with highlights, page sizes, and a shift-click range set in bulk.
The screenshots in docs/screenshots/ are taken here (``make screenshots`` refreshes them;
`make test` writes them to a temporary folder so a test run leaves the tree clean).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from sqlalchemy import select

from shared.models import Submission, TrainingExample
from shared.seed import seed_default_categories
from tests.banking_data import banking_examples
from tests.e2e.admin_login import log_in

QUEUE = 50
SCREENSHOTS = Path(
    os.environ.get("SORTLOOP_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="sortloop-shots-")
)
# The review page numbers the active categories by name.
NUMBERED = [
    "housing",
    "noise and nuisance",
    "other",
    "parks and green spaces",
    "public transport",
    "roads and traffic",
    "taxes and payments",
    "waste and recycling",
]
FOLDED_AT = 5  # the queue item with two near duplicates folded under it
COPIES = ["my card still hasn't arrived!!", "MY CARD STILL HASN'T ARRIVED"]


def add_queue(session) -> list[Submission]:
    """50 unreviewed submissions, least confident first in id order, each with a suggestion."""
    seed_default_categories(session)
    texts = [text for text, _ in banking_examples(10, categories=6)][:QUEUE]
    texts[FOLDED_AT] = "My card still hasn't arrived"
    queue = []
    for position, text in enumerate(texts):
        suggestion = NUMBERED[position % len(NUMBERED)]
        confidence = round(0.30 + position * 0.01, 2)
        rest = round((1 - confidence) / (len(NUMBERED) - 1), 4)
        queue.append(
            Submission(
                message=text,
                contributor_type="resident",
                category=suggestion,
                predicted_category=suggestion,
                confidence=confidence,
                scores={name: confidence if name == suggestion else rest for name in NUMBERED},
                model_version="base:e2e",
            )
        )
    session.add_all(queue)
    session.flush()
    for copy in COPIES:  # more confident than the first, so folded under it
        session.add(
            Submission(
                message=copy,
                contributor_type="resident",
                category="other",
                predicted_category="other",
                confidence=0.99,
                scores={name: 0.99 if name == "other" else 0.001 for name in NUMBERED},
                model_version="base:e2e",
            )
        )
    session.commit()
    return queue


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


class CountingKeyboard:
    """Presses keys in the page and counts every one."""

    def __init__(self, page):
        self.page = page
        self.count = 0

    def press(self, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)
            self.count += 1

    def type(self, text: str) -> None:
        self.press(*text)


def test_fifty_suggestions_reviewed_with_the_keyboard_only(
    live_server, page, admin_account, session
):
    queue = add_queue(session)
    log_in(page, live_server, *admin_account)
    page.get_by_role("link", name="Review with the keyboard").click()
    counter = page.locator("#review-counter")
    counter.filter(has_text=f"0 of {QUEUE} reviewed").wait_for()
    assert page.locator("#review-message").inner_text() == queue[0].message  # least confident
    page.locator("#review-card", has_text="Also likely:").wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review-mode.png"), full_page=True)
    keys = CountingKeyboard(page)
    expected: dict[int, str] = {}

    def focused_is(position: int) -> None:
        page.locator("#review-id", has_text=f"#{queue[position].id}").wait_for()

    # 0-39: accept each suggestion, one key each (Enter, or A).
    for position in range(40):
        focused_is(position)
        keys.press("a" if position % 2 else "Enter")
        expected[position] = queue[position].predicted_category
    counter.filter(has_text=f"40 of {QUEUE} reviewed").wait_for()
    similar = page.locator("#review-similar")
    assert similar.is_hidden()

    # 40, 41: pick by number.
    focused_is(40)
    keys.press("2")
    expected[40] = NUMBERED[1]
    keys.press("3")
    expected[41] = NUMBERED[2]

    # 42: accept, think again, undo, pick another.
    focused_is(42)
    keys.press("Enter")
    focused_is(43)
    keys.press("u")
    focused_is(42)
    page.locator("#review-status", has_text="undone").wait_for()
    counter.filter(has_text=f"42 of {QUEUE} reviewed").wait_for()
    keys.press("1")
    expected[42] = NUMBERED[0]

    # 43: search the categories.
    focused_is(43)
    keys.press("/")
    keys.type("pub")
    keys.press("Enter")
    expected[43] = "public transport"

    # 44-46: select three, then one number sets them all.
    focused_is(44)
    keys.press("x", "x", "x")
    page.locator("#review-selection", has_text="3 selected").wait_for()
    keys.press("8")
    for position in (44, 45, 46):
        expected[position] = "waste and recycling"

    # 47-49: accept.
    for position in (47, 48, 49):
        focused_is(position)
        keys.press("Enter")
        expected[position] = queue[position].predicted_category

    counter.filter(has_text=f"{QUEUE} of {QUEUE} reviewed").wait_for()
    page.locator("#review-done").wait_for()
    page.locator("#review[data-saving='0']").wait_for()
    decisions = len(expected)
    assert decisions == QUEUE
    # 1 key per accepted suggestion; corrections, the undo, the search and the bulk
    # set included, the whole queue took at most 1.2 keys per decision.
    assert keys.count <= 1.2 * decisions, keys.count

    session.expire_all()
    examples = {
        example.submission_id: example for example in session.scalars(select(TrainingExample))
    }
    for position, category in expected.items():
        example = examples[queue[position].id]
        assert example.corrected_category == category, (position, example.message)
        assert example.is_correction == (category != queue[position].predicted_category)
    folded = session.scalars(select(Submission).where(Submission.message.in_(COPIES))).all()
    assert {examples[copy.id].corrected_category for copy in folded} == {expected[FOLDED_AT]}
    assert len(examples) == QUEUE + len(COPIES)

    # After a reload the queue is empty, and with reviewed ones included every one shows
    # the category it was given.
    page.reload()
    page.locator("#review-done").wait_for()
    page.goto(f"{live_server.url}/admin/review?include_reviewed=1&order=uncertain")
    counter.filter(has_text=f"{QUEUE + 2} of {QUEUE + 2} reviewed").wait_for()
    page.locator("#review-state", has_text=f"reviewed: {expected[0]}").wait_for()
    page.keyboard.press("?")
    page.locator("#review-help").wait_for()


def test_search_as_you_type_page_sizes_and_a_bulk_range(live_server, page, admin_account, session):
    queue = add_queue(session)
    log_in(page, live_server, *admin_account)
    page.goto(f"{live_server.url}/admin/submissions?order=oldest")
    assert page.locator("[data-role=filter-button]").is_hidden()  # filters apply as they change

    page.get_by_label("Search").fill("card")
    total = page.locator("#submissions-total")
    expected = [s for s in queue if any(w.startswith("card") for w in words(s.message))]
    total.filter(has_text=f"{len(expected) + len(COPIES)} submissions").wait_for()
    assert "q=card" in page.url
    marks = page.locator("tbody td.message mark").all_inner_texts()
    assert marks and all(text.lower().startswith("card") for text in marks)

    page.get_by_label("Per page").select_option("50")
    page.wait_for_function("() => location.search.includes('per_page=50')")
    page.get_by_label("Search").fill("")
    total.filter(has_text=f"{QUEUE + len(COPIES)} submissions").wait_for()
    assert page.locator("tbody tr").count() == 50

    rows = page.locator("input.row-select")
    rows.nth(2).click()
    rows.nth(6).click(modifiers=["Shift"])
    page.locator("#bulk-count", has_text="5 selected").wait_for()
    page.get_by_label("Category", exact=True).last.select_option("housing")
    page.locator("#bulk-form button[type=submit]").click()
    page.locator(".flash", has_text="5 submissions set to 'housing'").wait_for()

    session.expire_all()
    saved = session.scalars(select(TrainingExample).order_by(TrainingExample.submission_id)).all()
    assert [example.submission_id for example in saved] == [s.id for s in queue[2:7]]
    assert {example.corrected_category for example in saved} == {"housing"}
    page.screenshot(path=str(SCREENSHOTS / "submissions-bulk.png"), full_page=False)


def test_a_save_the_server_refuses_leaves_the_submission_undecided(
    live_server, page, admin_account, session
):
    """The decision shows at once; when its save fails the page says so, takes it back
    (the counter and the card), and nothing was stored."""
    queue = add_queue(session)
    log_in(page, live_server, *admin_account)
    refused: list[str] = []

    def refuse(route):
        refused.append(route.request.url)
        route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": "the database is not reachable; try again later"}',
        )

    page.route(re.compile(r".*/admin/api/submissions/\d+/category$"), refuse)
    page.goto(f"{live_server.url}/admin/review")
    counter = page.locator("#review-counter")
    counter.filter(has_text=f"0 of {QUEUE} reviewed").wait_for()
    page.locator("#review-id", has_text=f"#{queue[0].id}").wait_for()
    page.keyboard.press("Enter")

    page.locator("#review-status", has_text="could not save").wait_for()
    status = page.locator("#review-status").inner_text()
    assert "not reachable" in status and "undecided again" in status
    assert refused
    counter.filter(has_text=f"0 of {QUEUE} reviewed").wait_for()
    page.keyboard.press("k")  # back to the refused one
    page.locator("#review-id", has_text=f"#{queue[0].id}").wait_for()
    assert "not reviewed" in page.locator("#review-state").inner_text()
    page.keyboard.press("u")
    page.locator("#review-status", has_text="nothing to undo").wait_for()
    session.expire_all()
    assert session.get(Submission, queue[0].id).reviewed_at is None
