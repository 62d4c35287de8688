"""Celery worker: `celery -A worker worker -Q training,default`.

The app object is built here (Celery needs it at import), but building it opens no
connection; the tasks module registers the pipeline.
"""

from worker.celery_app import create_celery

celery = create_celery()
app = celery

# tasks/tasks_models register the tasks on the app; warmup makes training workers import
# torch & co. once, before they fork their children.
from worker import tasks, tasks_models, warmup  # noqa: E402,F401
