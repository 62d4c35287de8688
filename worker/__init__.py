"""The worker tier: the fine-tuning engine (``worker.fine_tuning``) and its Celery tasks.

Importing this package builds nothing: the Celery app lives in ``worker.celery_app``
(``celery -A worker.celery_app worker -Q training,default,inference``), so the engine, the
``sortloop train`` command, the benchmarks and the tests import without Celery.
"""
