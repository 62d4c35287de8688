"""How long folding near duplicates takes in the review queue (prints JSON).

Stores N banking.csv texts as unreviewed submissions in a fresh SQLite database and
times ``list_submissions(..., fold_similar=True)`` for the first page (it reads the
ids and texts of every matching submission and groups them) against the same page
unfolded, and ``similar_groups`` alone.

    python bench/review_queue.py --sizes 1000,5000,10000
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import machine  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "banking.csv"


def measure(size: int, texts: list[str]) -> dict:
    from shared.db import make_engine, make_session_factory
    from shared.models import Base, Submission
    from shared.submissions.records import list_submissions
    from shared.training.data_quality import similar_groups

    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{scratch}/queue.db")
        Base.metadata.create_all(engine)
        sessions = make_session_factory(engine)
        chosen = (texts * (size // len(texts) + 1))[:size]  # repeats are exact duplicates
        with sessions() as session:
            session.add_all(
                Submission(message=text, contributor_type="resident", confidence=index / size)
                for index, text in enumerate(chosen)
            )
            session.commit()
            timings = {}
            for fold in (False, True):
                started = time.perf_counter()
                page = list_submissions(
                    session, unreviewed=True, order="uncertain", fold_similar=fold
                )
                timings["folded_page_seconds" if fold else "plain_page_seconds"] = round(
                    time.perf_counter() - started, 3
                )
            started = time.perf_counter()
            groups = similar_groups(chosen)
            timings["grouping_seconds"] = round(time.perf_counter() - started, 3)
        engine.dispose()
    return {"submissions": size, "groups": len(groups), "folded": page.folded, **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    args = parser.parse_args()
    with DATA.open(newline="", encoding="utf-8") as stream:
        texts = [row["text"] for row in csv.DictReader(stream)]
    for size in [int(size) for size in args.sizes.split(",")]:
        print(json.dumps({**measure(size, texts), "machine": machine.summary()}), flush=True)


if __name__ == "__main__":
    main()
