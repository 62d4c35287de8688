"""How long the training-data checks take on thousands of texts (prints JSON).

The dashboard runs ``check_training_data`` on every page load of the Training page,
and the readiness rule runs it twice (before and after duplicates are dropped), so it
must stay well under a second for a few thousand examples. Measured here, never
asserted in a unit test:

    .venv/bin/python bench/data_checks.py [--texts 4000]
"""

from __future__ import annotations

import argparse
import json
import time

import machine

from shared.training.data_quality import check_training_data
from shared.training.readiness import check_readiness


def synthetic_rows(count: int) -> list[tuple[int, str, str]]:
    """Texts of 12 words from a 400-word vocabulary: many near duplicates to look at."""
    words = [f"w{i}" for i in range(400)]
    return [
        (i, " ".join(words[(i * 7 + k * 13) % 400] for k in range(12)), "a" if i % 2 else "b")
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    args = parser.parse_args()
    rows = synthetic_rows(args.texts)
    started = time.perf_counter()
    report = check_training_data(rows)
    checks = time.perf_counter() - started
    started = time.perf_counter()
    check_readiness(rows)
    readiness = time.perf_counter() - started
    print(
        json.dumps(
            {
                "texts": args.texts,
                "check_training_data_seconds": round(checks, 3),
                "check_readiness_seconds": round(readiness, 3),
                "near_duplicate_pairs": report.near_duplicates,
                "machine": machine.describe(),
            }
        )
    )


if __name__ == "__main__":
    main()
