"""Batch speed of `sortloop import-submissions`: 1,000 short real texts (banking77),
imported into a throwaway PostgreSQL database with the default 8 categories.

Phases, each on emptied tables, wall time of the whole command including its start-up:

- ``inline_batch64``: the command classifying itself in batches of 64 (before issue 21's
  batch work; the issue measured 6.9 s),
- ``inline_batch256``: the same with the new default batch of 256,
- ``on_worker``: ``--on-worker``: the rows are stored at once and a warm CPU worker
  (queue ``default``, its own private redis-server) classifies them in batches of
  ``SORTLOOP_WORKER_BATCH_SIZE``; timed until the last row is classified.

Also the classification alone, in this process after warm-up (texts/s per batch size).
Prints one JSON object (and writes it to bench/results/import_speed.json).

    python bench/import_speed.py [--texts 1000] [--env KEY=VALUE ...] [--output FILE]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import machine  # noqa: E402
from load import create_database, drop_database  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "banking.csv"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_texts(path: Path, count: int) -> list[str]:
    with DATA.open(encoding="utf-8") as handle:
        texts = [row["text"] for row in itertools.islice(csv.DictReader(handle), count)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([text] for text in texts)
    return texts


def run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=REPO)
    return round(time.perf_counter() - started, 2)


def empty_submissions(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE submissions, training_examples RESTART IDENTITY CASCADE"))
    engine.dispose()


def classified_count(url: str) -> tuple[int, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        total = connection.scalar(text("SELECT count(*) FROM submissions"))
        done = connection.scalar(
            text("SELECT count(*) FROM submissions WHERE model_version IS NOT NULL")
        )
    engine.dispose()
    return total, done


def worker_batches(log: Path, skip_lines: int) -> list[tuple[int, float]]:
    """(texts, seconds) of each ``classify_pending`` batch the worker logged after the
    first ``skip_lines`` lines of its log."""
    import re

    lines = log.read_text().splitlines()[skip_lines:]
    found = (re.search(r"classify_pending batch=(\d+) seconds=([\d.]+)", line) for line in lines)
    return [(int(m.group(1)), float(m.group(2))) for m in found if m]


def classification_only(env: dict[str, str], texts: list[str]) -> dict:
    """texts/s of the model alone (warm), per batch size, in this process."""
    from shared.config import Config
    from shared.db import make_engine, make_session_factory, session_scope
    from shared.deployment.active_model import ActiveModel
    from shared.submissions.categories import active_category_specs

    config = Config.from_env(env)
    sessions = make_session_factory(make_engine(config.database_url))
    with session_scope(sessions) as session:
        categories = active_category_specs(session)
    model = ActiveModel(config, sessions, owner="bench")
    model.classify(texts[:64], categories)
    result = {}
    for batch in (64, 256):
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            model.classify(texts[start : start + batch], categories)
        result[f"batch{batch}_texts_per_s"] = round(len(texts) / (time.perf_counter() - started), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every process")
    parser.add_argument("--output", default="import_speed.json", help="a file in bench/results")
    args = parser.parse_args()

    name, url = create_database()
    scratch = Path(tempfile.mkdtemp(prefix="sortloop-import-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(scratch)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    broker = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DATABASE_URL": url,
        "MODELS_DIR": str(scratch / "models"),
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "PYTHONUNBUFFERED": "1",
    }
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    sortloop = str(Path(sys.executable).parent / "sortloop")
    csv_path = scratch / "texts.csv"
    texts = write_texts(csv_path, args.texts)
    small = scratch / "warm.csv"
    write_texts(small, 10)
    worker = None
    result: dict = {"texts": len(texts), "overrides": args.env, "phases": {}}
    result["machine"] = machine.describe()
    try:
        subprocess.run([sortloop, "migrate"], env=env, check=True, capture_output=True)
        run([sortloop, "classify", "warm the ONNX cache"], env)  # the export is a one-off
        for label, options in (("inline_batch64", ["--batch-size", "64"]), ("inline_batch256", [])):
            empty_submissions(url)
            seconds = run([sortloop, "import-submissions", str(csv_path), *options], env)
            total, done = classified_count(url)
            assert total == done == len(texts), (total, done)
            result["phases"][label] = {"seconds": seconds, "texts_per_s": round(total / seconds, 1)}

        log = (scratch / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q",
             "default,inference", "--concurrency", "1", "--loglevel", "INFO", "--without-gossip",
             "--without-mingle"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        empty_submissions(url)
        run([sortloop, "import-submissions", str(small), "--on-worker"], env)  # a warm worker
        empty_submissions(url)
        log.flush()
        logged_before = (scratch / "worker.log").read_text().count("\n")
        seconds = run([sortloop, "import-submissions", str(csv_path), "--on-worker"], env)
        total, done = classified_count(url)
        assert total == done == len(texts), (total, done)
        batches = worker_batches(scratch / "worker.log", logged_before)
        result["phases"]["on_worker"] = {
            "seconds": seconds,
            "texts_per_s": round(total / seconds, 1),
            # the worker's own rate: its batches' texts over their seconds (the model and
            # the database writes; not the command's start-up nor the hand-over)
            "worker_texts_per_s": round(
                sum(n for n, _ in batches) / max(1e-9, sum(t for _, t in batches)), 1
            ),
            "worker_batches": batches,
        }
        result["classification_only"] = classification_only(env, texts)
        from shared import compute
        from shared.config import Config

        config = Config.from_env(env)
        result["cores"] = compute.available_cores()
        result["worker_batch_size"] = config.worker_batch_size
        result["inference_backend"] = config.inference_backend
        # what the worker and the command encode in (the web tier: always fp32)
        result["batch_precision"] = compute.batch_precision(config)
        result["cpu_worker_threads"] = compute.plan_for("cpu", config, concurrency=1).torch_threads
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        redis.terminate()
        redis.wait(timeout=30)
        drop_database(name)
    out = REPO / "bench" / "results" / args.output
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
