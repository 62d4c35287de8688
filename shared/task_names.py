"""Celery task names. Web enqueues by these names and never imports worker code."""

PING = "sortloop.ping"
VALIDATE_DATA = "sortloop.validate_data"
TRAIN = "sortloop.train"
EVALUATE = "sortloop.evaluate"
REAP_STALE_RUNS = "sortloop.reap_stale_runs"
AUTO_TRAIN = "sortloop.auto_train"
RECLASSIFY = "sortloop.reclassify"

TRAINING_QUEUE = "training"
DEFAULT_QUEUE = "default"

# Which queue each task goes to: the GPU worker consumes only `training`.
ROUTES = {
    VALIDATE_DATA: TRAINING_QUEUE,
    TRAIN: TRAINING_QUEUE,
    EVALUATE: TRAINING_QUEUE,
}
