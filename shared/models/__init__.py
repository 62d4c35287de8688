"""ORM models, split by aggregate."""

from shared.models.base import Base, UTCDateTime, utcnow
from shared.models.deployment import DEFAULT_SETTINGS, AdminUser, DeploymentEvent, Setting
from shared.models.notifications import (
    EmailRecipient,
    NotificationDelivery,
    NotificationEvent,
    Webhook,
)
from shared.models.shadow import Shadow, ShadowPrediction
from shared.models.submissions import Category, Submission
from shared.models.training import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    FineTuningRun,
    RunLogLine,
    TrainingExample,
)

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_SETTINGS",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "AdminUser",
    "Base",
    "Category",
    "DeploymentEvent",
    "EmailRecipient",
    "FineTuningRun",
    "NotificationDelivery",
    "NotificationEvent",
    "RunLogLine",
    "Setting",
    "Shadow",
    "ShadowPrediction",
    "Submission",
    "TrainingExample",
    "UTCDateTime",
    "Webhook",
    "utcnow",
]
