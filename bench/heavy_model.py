"""A BART-large-shaped model in use: the public path stays fast, the worker classifies.

compose's default base model is bart-large-mnli (407 M parameters; one submission
against 8 categories is 8 premise-hypothesis passes). Its weights cannot be downloaded
here, so this builds a random-weight model of its shape (``build_tiny_nli_model`` with
d_model 1024, 12 + 12 layers, 16 heads, ffn x4) and starts the real stack on it: a
throwaway PostgreSQL database, gunicorn with the product's settings (each web process
times the model at start, ``SORTLOOP_CLASSIFY_ON=auto``, and finds it too slow for the
request path) and one Celery worker of the ``default`` and ``inference`` queues at the
CPU worker's settings. Then, per phase:

- ``burst``: N clients submit once each at the same moment; then the time from each
  submission's 201 to the moment its category is in the database (polled every
  0.25 s), as p50 / p99 / max;
- ``flood``: N clients submit as fast as answers come for ``--seconds`` (the public
  path's submissions/s, p50/p99 and errors); the backlog is far more than the worker
  can classify soon, so this phase only measures how many it classifies per second
  over the next ``--drain-seconds``.

It prints JSON.

    python bench/heavy_model.py                      # 20 clients: a burst, then 10 s of flood
    python bench/heavy_model.py --clients 20 --seconds 10 --env SORTLOOP_CPU_WORKER_THREADS=2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import load  # noqa: E402  (the load benchmark's database, server and client helpers)
import machine  # noqa: E402


def submit_all(port: int, clients: int, seconds: float | None, messages: list[str]) -> dict:
    """``clients`` threads; each submits once (``seconds`` None) or for ``seconds``.
    Returns latencies and the (id, answered-at) of every stored submission."""
    answered: list[tuple[int, float]] = []
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        rng = random.Random(number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        stop_at = time.monotonic() + (seconds or 0.0)
        while True:
            began = time.perf_counter()
            body = json.dumps({"message": rng.choice(messages), "contributor_type": "resident"})
            try:
                connection.request(
                    "POST",
                    "/api/submissions",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                payload = json.loads(response.read() or b"{}")
            except Exception as error:  # a dropped connection counts and reconnects
                with lock:
                    errors.append(type(error).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            else:
                with lock:
                    if response.status == 201:
                        latencies.append(time.perf_counter() - began)
                        answered.append((payload["id"], time.monotonic()))
                    else:
                        errors.append(str(response.status))
            if seconds is None or time.monotonic() >= stop_at:
                break
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    return {"answered": answered, "latencies": latencies, "errors": errors, "wall": wall}


def wait_for_categories(url: str, answered: list[tuple[int, float]], timeout: float) -> dict:
    """Poll the database until every answered submission has its category (or failed)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    waiting = dict(answered)
    done: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    first_done: float | None = None
    with engine.connect() as connection:
        while waiting and time.monotonic() < deadline:
            rows = connection.execute(
                text(
                    "SELECT id FROM submissions WHERE classification_pending = false "
                    "AND id = ANY(:ids)"
                ),
                {"ids": list(waiting)},
            ).all()
            now = time.monotonic()
            for (identifier,) in rows:
                done[identifier] = now - waiting.pop(identifier)
                first_done = first_done or now
            connection.rollback()
            time.sleep(0.25)  # the poll's own resolution: categories land batch by batch
        categorised = connection.execute(
            text("SELECT count(*) FROM submissions WHERE id = ANY(:ids) AND category IS NOT NULL"),
            {"ids": [identifier for identifier, _ in answered]},
        ).scalar_one()
    engine.dispose()
    waits = sorted(done.values())
    last = max((at + done[i] for i, at in answered if i in done), default=None)
    return {
        "classified": len(done),
        "with_category": categorised,
        "never_classified": len(waiting),
        "wait_p50_s": load_percentile(waits, 0.50),
        "wait_p99_s": load_percentile(waits, 0.99),
        "wait_max_s": round(waits[-1], 2) if waits else None,
        "worker_submissions_per_s": (
            round(len(done) / (last - first_done), 2)
            if last and first_done and last > first_done
            else None
        ),
    }


def drain_rate(url: str, seconds: float) -> dict:
    """Submissions the worker classifies per second over ``seconds`` (database counts)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    query = text("SELECT count(*) FROM submissions WHERE classification_pending = false")
    with engine.connect() as connection:
        before = connection.execute(query).scalar_one()
        connection.rollback()
        time.sleep(seconds)  # the measuring window
        after = connection.execute(query).scalar_one()
        waiting = connection.execute(
            text("SELECT count(*) FROM submissions WHERE classification_pending = true")
        ).scalar_one()
    engine.dispose()
    return {
        "worker_submissions_per_s": round((after - before) / seconds, 2),
        "still_waiting": waiting,
    }


def load_percentile(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


def summary(phase: str, clients: int, submitted: dict, categories: dict) -> dict:
    latencies = sorted(submitted["latencies"])
    return {
        "phase": phase,
        "clients": clients,
        "submissions": len(latencies),
        "submissions_per_s": round(len(latencies) / submitted["wall"], 1),
        "p50_ms": None if not latencies else round(1000 * load_percentile(latencies, 0.5), 1),
        "p99_ms": None if not latencies else round(1000 * load_percentile(latencies, 0.99), 1),
        "errors": len(submitted["errors"]),
        **categories,
    }


def wait_for_worker_mode(port: int, token: str, timeout: float = 600.0) -> dict:
    """Until 10 answers in a row (any web process) say classification runs on the worker."""
    deadline, streak, info = time.monotonic() + timeout, 0, {}
    while streak < 10 and time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(
            "GET", "/admin/api/model-info", headers={"Authorization": f"Bearer {token}"}
        )
        info = json.loads(connection.getresponse().read() or b"{}")
        connection.close()
        ready = (info.get("classification") or {}).get("on") == "worker"
        streak = streak + 1 if ready else 0
        time.sleep(0.05 if ready else 1.0)  # each web process times the model at start
    if streak < 10:
        raise SystemExit(f"the web tier did not move classification to the worker: {info}")
    return info["classification"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every process")
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--logs", default="", help="copy the web and worker logs here")
    args = parser.parse_args()

    from shared.classifier.tiny import build_tiny_nli_model

    scratch = Path(tempfile.mkdtemp(prefix="sortloop-heavy-"))
    started = time.monotonic()
    model_dir = build_tiny_nli_model(
        scratch / "bart-large-shaped", d_model=1024, layers=12, heads=16, ffn_multiplier=4
    )
    built_seconds = round(time.monotonic() - started, 1)
    name, url = load.create_database()
    env = load.stack_env(
        url,
        scratch,
        "heavy",
        redis_db=13,
        overrides=args.env,
        BASE_MODEL=model_dir,
        BASE_MODEL_KIND="nli",
    )
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "sortloop"), "migrate"], env=env, check=True, capture_output=True)
    # Tasks a killed earlier run left in its queue would be run by this worker.
    subprocess.run(["redis-cli", "-n", "13", "flushdb"], check=False, capture_output=True)
    port = load.free_port()
    web_log = (scratch / "gunicorn.log").open("w")
    worker_log = (scratch / "worker.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:web.gunicorn_conf"]
        + ["--bind", f"127.0.0.1:{port}", "web:create_app()"],
        cwd=REPO, env=env, stdout=web_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q",
         "default,inference", "--concurrency", "1", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle"],
        cwd=REPO, env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    result: dict = {
        "model": "random weights, bart-large-mnli's shape",
        "machine": machine.describe(),
        "model_build_seconds": built_seconds,
        "overrides": args.env,
        "phases": [],
    }
    try:
        load.wait_until_serving(port, timeout=600)
        result["classification"] = wait_for_worker_mode(port, env["SORTLOOP_ADMIN_TOKEN"])
        messages = load.texts()
        # Warm the worker: its first task loads the model.
        warm = submit_all(port, 1, None, messages)
        wait_for_categories(url, warm["answered"], args.timeout)
        burst = submit_all(port, args.clients, None, messages)
        result["phases"].append(
            summary(
                "burst",
                args.clients,
                burst,
                wait_for_categories(url, burst["answered"], args.timeout),
            )
        )
        flood = submit_all(port, args.clients, args.seconds, messages)
        measured = summary("flood", args.clients, flood, {})
        measured.update(drain_rate(url, args.drain_seconds))
        result["phases"].append(measured)
        print(json.dumps(result, indent=1), flush=True)
    finally:
        # The worker may be deep in a backlog it would finish before a warm shutdown:
        # stop every process of the stack at once.
        for process in (server, worker):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(60)
        web_log.close()
        worker_log.close()
        load.drop_database(name)
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            for log in ("gunicorn.log", "worker.log"):
                shutil.copy(scratch / log, Path(args.logs) / log)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
