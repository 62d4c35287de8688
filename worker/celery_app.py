"""The Celery application: queues, routes, reliability settings.

Start a worker with ``celery -A worker.celery_app worker -Q training,default,inference``. Celery
needs the app object at import, so importing this module builds it (from
``Config.from_env()``; building opens no connection) and registers the tasks. Nothing
else in ``worker`` builds or imports it: the engine stays importable without Celery.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.signals import celeryd_init, worker_process_init

from shared import compute, task_names
from shared.config import Config

# A worker that consumes only the training queue runs each task in a fresh child, so
# GPU memory and RAM go back to the system after every training step (its parent
# preloaded the training stack: worker.warmup). Other workers (the CPU queue, or one
# worker for both queues in tests) recycle a child every 10 tasks: a fresh child costs
# ~5 s before its first task, too slow for every short task, while re-classification
# loads a model per task and should not keep its memory forever.
TRAINING_WORKER_TASKS_PER_CHILD = 1
OTHER_WORKER_TASKS_PER_CHILD = 10
# Through a Redis restart of up to about a minute the worker keeps trying to publish a
# chain's next step and to store results (kombu's defaults give up within a second).
SHADOW_REPORT_CHECK_SECONDS = 3600
REDIS_RETRY_POLICY = {"max_retries": 20, "interval_start": 0.5, "interval_step": 1.0,
                      "interval_max": 5.0}  # fmt: skip


def create_celery(config: Config | None = None) -> Celery:
    config = config or Config.from_env()
    app = Celery("sortloop", broker=config.broker_url, backend=config.result_backend)
    # A task may outlive the visibility timeout only by being redelivered twice: keep it
    # well above the longest training the time limit allows.
    visibility_timeout = config.training_time_limit_seconds + 3600
    app.conf.update(
        **task_names.messaging_settings(),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": visibility_timeout},
        result_backend_transport_options={
            "visibility_timeout": visibility_timeout,
            "retry_policy": REDIS_RETRY_POLICY,
        },
        task_publish_retry=True,
        task_publish_retry_policy=REDIS_RETRY_POLICY,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker, however long
        task_time_limit=config.training_time_limit_seconds,
        task_soft_time_limit=config.training_time_limit_seconds - 60,
        result_expires=timedelta(days=1),
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        # worker_max_tasks_per_child is set per worker at start-up: see
        # tasks_per_child_for below, the one place that decides it.
        beat_schedule={
            "reap-stale-runs": {
                "task": task_names.REAP_STALE_RUNS,
                "schedule": config.beat_interval_seconds,
                # A tick nobody ran before the next one is dropped, not queued up
                # behind a long training on a worker that consumes both queues.
                "options": {
                    "queue": task_names.DEFAULT_QUEUE,
                    "expires": config.beat_interval_seconds,
                },
            },
            # Events whose after-commit announcement was lost (a broker blip) go out here.
            "notifications-sweep": {
                "task": task_names.DISPATCH_NOTIFICATIONS,
                "schedule": config.beat_interval_seconds,
                "options": {
                    "queue": task_names.DEFAULT_QUEUE,
                    "expires": config.beat_interval_seconds,
                },
            },
            # A sweep: submissions left waiting when the broker was down at submit time.
            "classify-pending": {
                "task": task_names.CLASSIFY_PENDING,
                "schedule": config.beat_interval_seconds,
                "options": {
                    "queue": task_names.queue_of(task_names.CLASSIFY_PENDING),
                    "expires": config.beat_interval_seconds,
                },
            },
            # Hourly check, daily event: shadow.report goes out once a day while a run
            # is in shadow (shared.deployment.shadow.emit_daily_report decides).
            "shadow-report": {
                "task": task_names.SHADOW_REPORT,
                "schedule": SHADOW_REPORT_CHECK_SECONDS,
                "options": {
                    "queue": task_names.DEFAULT_QUEUE,
                    "expires": SHADOW_REPORT_CHECK_SECONDS,
                },
            },
            "auto-train": {
                "task": task_names.AUTO_TRAIN,
                "schedule": config.beat_interval_seconds,
                "options": {
                    "queue": task_names.DEFAULT_QUEUE,
                    "expires": config.beat_interval_seconds,
                },
            },
        },
    )
    app.sortloop_config = config
    return app


def selected_queues(queues: object) -> set[str]:
    """The queue names of ``-Q`` (a comma-separated string or a list; empty: every queue)."""
    if isinstance(queues, str):
        queues = queues.split(",")
    return {str(queue).strip() for queue in queues or ()} - {""}


def tasks_per_child_for(queues: object) -> int:
    """``worker_max_tasks_per_child`` for a worker started with ``-Q queues``: 1 for a
    worker of the training queue alone, 10 for any other."""
    if selected_queues(queues) == {task_names.TRAINING_QUEUE}:
        return TRAINING_WORKER_TASKS_PER_CHILD
    return OTHER_WORKER_TASKS_PER_CHILD


@celeryd_init.connect
def _set_tasks_per_child(sender: str, conf: object, options: dict, **_: object) -> None:
    """The one tasks-per-child decision. A ``--max-tasks-per-child`` on the command line
    would win over it; Procfile, compose and the Dockerfile give none."""
    if options.get("max_tasks_per_child") is None:
        conf.worker_max_tasks_per_child = tasks_per_child_for(options.get("queues"))


def compute_role_for(queues: object) -> str:
    """``training`` for a worker that takes training tasks (no ``-Q``: every queue),
    ``cpu`` for one of the default queue alone (``shared.compute``)."""
    selected = selected_queues(queues)
    if not selected or task_names.TRAINING_QUEUE in selected:
        return "training"
    return "cpu"


_compute_plan: compute.ComputePlan | None = None


@celeryd_init.connect
def _set_compute(sender: str, conf: object, options: dict, **_: object) -> None:
    """Threads and CPU priority of this worker, once in its main process (children
    inherit the priority and set their own thread pools: ``_child_compute``)."""
    global _compute_plan
    plan = compute.plan_for(
        compute_role_for(options.get("queues")),
        celery.sortloop_config,
        concurrency=options.get("concurrency"),
    )
    _compute_plan = compute.apply(plan)


@worker_process_init.connect
def _child_compute(**_: object) -> None:
    if _compute_plan is not None:
        compute.apply(_compute_plan, lower_priority=False)


celery = create_celery()
app = celery

# tasks/tasks_models register the tasks on the app; warmup makes training workers import
# torch & co. once, before they fork their children.
from worker import tasks, tasks_models, tasks_notifications, warmup  # noqa: E402,F401
