"""Load benchmark of the public path: the real web tier under 1, 20 and 50 clients.

Starts the project's own processes: a throwaway PostgreSQL database (migrated, the
default 8 categories), gunicorn with ``web/gunicorn_conf.py`` on a free port, and, for
the ``training`` phases, a training run at the training worker's compute settings
(``shared.compute``: spare cores, lower priority) on real data. Every request is
``POST /api/submissions`` with a real short text (the demo submissions). Prints one
JSON object: per phase submissions/s, p50/p95/p99 in ms and errors, and the settings.

    python bench/load.py                                   # the product's settings
    python bench/load.py --clients 1,20 --seconds 20 --training
    python bench/load.py --env SORTLOOP_WEB_TORCH_THREADS=2 --env SORTLOOP_BATCH_MAX_SIZE=1 \\
        --env SORTLOOP_WEB_THREADS=1 --label "before issue 21"
    python bench/load.py --dataset hwu --trained 32 --clients 1,20   # the base model, then a trained one

``--dataset`` replaces the 8 default categories with a labelled dataset's (as
``learning_curve.py`` names them) and posts its test texts. ``--trained K`` measures every
phase twice: on the base model, then on a ``head`` model trained with ``sortloop train``
on K texts a category of the dataset's training split, imported and deployed through the
admin API (what a deployment serves after its first run, the token match included).

The public rate limit is lifted for the run (every client is 127.0.0.1).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import machine  # noqa: E402

ADMIN_URL = os.environ.get(
    "SORTLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TRAINING_RUN = """
import json, sys, time
sys.path.insert(0, {bench!r})
from shared import compute
compute.configure("training")
import learning_curve
started = time.perf_counter()
result = learning_curve.run_one("head", 8, 0, "hwu") if {light} else learning_curve.run_one("lora", 8, 0, "hwu")
print(json.dumps({{"seconds": round(time.perf_counter() - started, 2), "accuracy": result["accuracy"]}}))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_database() -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    name = f"sortloop_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def texts(dataset: str | None) -> list[str]:
    if dataset:
        import learning_curve

        return [row["text"] for row in learning_curve.test_set(learning_curve.load_rows(dataset))]
    from shared.seed import demo_submissions

    return [row["text"] for row in demo_submissions()]


def use_dataset_categories(url: str, dataset: str) -> list[str]:
    """The dataset's labels as the only active categories (each described by its name)."""
    import learning_curve
    from sqlalchemy import create_engine, update
    from sqlalchemy.orm import Session

    from shared.models import Category

    labels = learning_curve.labels_of(learning_curve.load_rows(dataset))
    engine = create_engine(url)
    with Session(engine) as session:
        session.execute(update(Category).values(active=False))
        session.add_all(Category(name=label, description=label) for label in labels)
        session.commit()
    engine.dispose()
    return labels


def train_and_deploy(
    port: int, env: dict[str, str], scratch: Path, dataset: str, per_category: int
) -> dict:
    """Train a ``head`` model with ``sortloop train`` on ``per_category`` texts a category
    (it holds its default test share of them out), then import and deploy it through the
    admin API (forced: this is a benchmark, not a gate). Returns the run's facts; the
    caller waits until the web tier serves it."""
    import csv

    import learning_curve

    from shared.model_store.export import iter_export_zip

    train, validation = learning_curve.training_sample(
        learning_curve.load_rows(dataset), per_category, seed=0
    )
    examples = scratch / "train.csv"
    with examples.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": row["text"], "label": row["label"]} for row in train + validation)
    out = scratch / "trained"
    started = time.perf_counter()
    trained = subprocess.run(
        [str(Path(sys.executable).parent / "sortloop"), "train", "--csv", str(examples)]
        + ["--method", "head", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(trained.stdout[trained.stdout.index("{") :])
    (model_dir,) = [path for path in out.iterdir() if path.is_dir()]  # the run's own folder
    archive = b"".join(iter_export_zip(model_dir))
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; '
            f'filename="trained.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        + archive
        + f"\r\n--{boundary}--\r\n".encode()
    )
    token = {"Authorization": f"Bearer {env['SORTLOOP_ADMIN_TOKEN']}"}
    imported = admin_call(
        port,
        "POST",
        "/admin/api/import-model",
        body,
        {**token, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    deployed = admin_call(
        port,
        "POST",
        f"/admin/api/deploy-model/{imported['run_id']}",
        json.dumps({"force": True}).encode(),
        {**token, "Content-Type": "application/json"},
    )
    return {
        "per_category": per_category,
        "train_seconds": round(time.perf_counter() - started, 1),
        "token_weight": summary.get("token_weight"),
        "version": deployed.get("version", imported.get("version")),
        "archive_bytes": len(archive),
    }


def admin_call(port: int, method: str, path: str, body: bytes, headers: dict) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read() or b"{}")
    connection.close()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {answer}")
    return answer


def post(connection: http.client.HTTPConnection, message: str) -> int:
    body = json.dumps({"message": message, "contributor_type": "resident"})
    connection.request(
        "POST", "/api/submissions", body=body, headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    response.read()
    return response.status


def phase(port: int, clients: int, seconds: float, messages: list[str]) -> dict:
    """``clients`` threads, each posting as fast as answers come, for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        rng = random.Random(number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                status = post(connection, rng.choice(messages))
            except Exception as error:  # a dropped connection counts and reconnects
                with lock:
                    errors.append(type(error).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            elapsed = time.perf_counter() - started
            if status != 201:
                with lock:
                    errors.append(str(status))
            else:
                mine.append(elapsed)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    ordered = sorted(latencies)

    def percentile(share: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "submissions": len(latencies),
        "submissions_per_s": round(len(latencies) / wall, 1),
        "p50_ms": percentile(0.50),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
    }


def wait_until_serving(port: int, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            body = json.loads(response.read() or b"{}")
            if response.status == 200:
                return body.get("model_version", "")
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the web tier did not answer /healthz in time")


def wait_for_backend(
    port: int, token: str, backend: str, timeout: float = 120.0, version: str | None = None
) -> None:
    """Until 10 answers in a row (any worker) say the model in use runs on ``backend``
    (and, given ``version``, is that version)."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 10 and time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(
            "GET", "/admin/api/model-info", headers={"Authorization": f"Bearer {token}"}
        )
        response = connection.getresponse()
        info = json.loads(response.read() or b"{}")
        connection.close()
        ready = info.get("loaded") and info.get("process", {}).get("inference_backend") == backend
        ready = ready and (version is None or info.get("version") == version)
        streak = streak + 1 if ready else 0
        time.sleep(0.05 if ready else 0.5)
    if streak < 10:
        raise SystemExit(f"the web tier did not report {backend} in time")


def training_run(env: dict[str, str], light: bool) -> subprocess.Popen:
    code = TRAINING_RUN.format(bench=str(REPO / "bench"), light=light)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def finish(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=1800)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": f"exit {process.returncode}"}


def stack_env(
    url: str, scratch: Path, name: str, *, redis_db: int, overrides: list[str], **extra: str
) -> dict[str, str]:
    """The environment of a benchmark's own stack: its database, a scratch models folder,
    no public rate limit, a fresh admin token, its own Redis database; then ``extra``
    and the command line's ``KEY=VALUE`` overrides."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DATABASE_URL": url,
        "SECRET_KEY": f"{name}-benchmark-" + uuid.uuid4().hex,
        "MODELS_DIR": str(scratch / "models"),
        "SORTLOOP_PUBLIC_RATE_LIMIT": "10000000 per minute",
        "RATELIMIT_STORAGE_URL": "memory://",
        "SORTLOOP_ADMIN_TOKEN": f"{name}-" + uuid.uuid4().hex,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:6379/{redis_db}",
        **extra,
    }
    for item in overrides:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def measure_training(
    result: dict, port: int, env: dict, counts: list[int], args, messages: list[str], model: str
) -> None:
    """A run alone, then each client count while a run trains."""
    training_env = {key: value for key, value in env.items() if key != "DATABASE_URL"}
    result.setdefault("training_idle", []).append(
        {"model": model, **finish(training_run(training_env, args.light))}
    )
    for clients in counts:
        run = training_run(training_env, args.light)
        time.sleep(3.0)  # into its training
        measured = phase(port, clients, args.seconds, messages)
        result["phases"].append({"phase": "training", "model": model, **measured})
        result.setdefault("training_under_load", []).append(
            {"clients": clients, "model": model, **finish(run)}
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,20,50")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--training", action="store_true", help="also measure while a run trains")
    parser.add_argument("--light", action="store_true", help="the training phase runs head")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the web tier")
    parser.add_argument("--label", default="")
    parser.add_argument("--dataset", help="a learning_curve.py dataset's categories and texts")
    parser.add_argument(
        "--trained", type=int, metavar="K", help="then a head model trained on K a category"
    )
    args = parser.parse_args()
    if args.trained and not args.dataset:
        parser.error("--trained needs --dataset (the texts it is trained on)")
    counts = [int(c) for c in args.clients.split(",") if c]

    name, url = create_database()
    scratch = Path(tempfile.mkdtemp(prefix="sortloop-load-"))
    env = stack_env(url, scratch, "load", redis_db=14, overrides=args.env)
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "sortloop"), "migrate"], env=env, check=True, capture_output=True)
    if args.dataset:
        use_dataset_categories(url, args.dataset)
    port = free_port()
    log = (scratch / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:web.gunicorn_conf"]
        + ["--bind", f"127.0.0.1:{port}", "web:create_app()"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    from shared import compute
    from shared.config import Config

    config = Config.from_env(env)
    result: dict = {
        "label": args.label,
        "machine": machine.describe(),
        "cores": compute.available_cores(),
        "web_workers": compute.web_workers(config),
        "web_threads": config.web_threads,
        "web_torch_threads": compute.plan_for("web", config).torch_threads,
        "batch_max_size": config.batch_max_size,
        "batch_wait_ms": config.batch_wait_ms,
        "inference_backend": config.inference_backend,
        "overrides": args.env,
        "dataset": args.dataset or "demo submissions",
        "phases": [],
    }
    try:
        result["model_version"] = wait_until_serving(port)
        # Measure the steady state: every worker has loaded the model (and, with ONNX,
        # finished the export its first load starts in the background).
        token = env["SORTLOOP_ADMIN_TOKEN"]
        wait_for_backend(port, token, config.inference_backend)
        messages = texts(args.dataset)
        models = [("base", None)] + ([("trained", args.trained)] if args.trained else [])
        for model, per_category in models:
            if per_category:
                trained = train_and_deploy(port, env, scratch, args.dataset, per_category)
                result["trained"] = trained
                wait_for_backend(port, token, config.inference_backend, version=trained["version"])
            phase(port, 4, 3.0, messages)  # warm every worker's model
            for clients in counts:
                measured = phase(port, clients, args.seconds, messages)
                result["phases"].append({"phase": "idle", "model": model, **measured})
            if args.training:
                measure_training(result, port, env, counts, args, messages, model)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        drop_database(name)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
