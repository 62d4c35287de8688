"""Configuration: parsed once from the environment, strictly, into a typed object.

Every variable has a working local default. A bad value stops the process with a
message that names the variable; nothing is guessed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from limits import parse_many

from shared.classifier.identity import configured_default_base_model, infer_model_kind

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONTRIBUTOR_TYPES = ("resident", "business", "visitor", "organisation", "staff", "other")


class ConfigError(ValueError):
    """A configuration variable has a value we cannot use."""


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false")


def _parse_int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _parse_float(name: str, raw: str, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


MIN_SECRET_KEY_LENGTH = 32
# Keys that were ever shipped or suggested by this project, and words placeholders use:
# a cookie signed with a published key is a forged admin session.
KNOWN_SECRET_KEYS = frozenset(
    {"dev-secret-key-change-me", "change-me-to-a-long-random-string", "secret", "dev", "changeme"}
)
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-me", "your-secret", "example")
SECRET_KEY_ADVICE = (
    "set it to a long random value, e.g. "
    "python3 -c 'import secrets; print(secrets.token_urlsafe(48))' "
    "(make dev generates one per checkout in instance/secret_key)"
)


def check_secret_key(secret_key: str) -> None:
    """Refuse a session key an attacker could know or guess: ConfigError naming SECRET_KEY.

    Every web process checks this at start, whatever its mode: a development key that
    reaches production signs forged admin sessions, so there is no insecure mode to forget.
    """
    key = secret_key.strip()
    if not key:
        raise ConfigError(f"SECRET_KEY is not set: {SECRET_KEY_ADVICE}")
    lowered = key.lower()
    if lowered in KNOWN_SECRET_KEYS or any(word in lowered for word in PLACEHOLDER_WORDS):
        raise ConfigError(f"SECRET_KEY is a published default or placeholder: {SECRET_KEY_ADVICE}")
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"SECRET_KEY is too short ({len(key)} characters, at least "
            f"{MIN_SECRET_KEY_LENGTH}): {SECRET_KEY_ADVICE}"
        )
    if len(set(key)) < 8:
        raise ConfigError(f"SECRET_KEY repeats a few characters: {SECRET_KEY_ADVICE}")


@dataclass(frozen=True)
class Config:
    """Everything Sortloop reads from its environment. Field docs are the README's table."""

    database_url: str = field(
        default_factory=lambda: f"sqlite:///{PROJECT_ROOT / 'instance' / 'sortloop.db'}",
        metadata={"env": "DATABASE_URL", "help": "SQLAlchemy URL of the database"},
    )
    broker_url: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata={"env": "CELERY_BROKER_URL", "help": "Celery broker (Redis)"},
    )
    result_backend: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata={"env": "CELERY_RESULT_BACKEND", "help": "Celery result backend (Redis)"},
    )
    models_dir: str = field(
        default_factory=lambda: str(PROJECT_ROOT / "instance" / "models"),
        metadata={"env": "MODELS_DIR", "help": "shared volume where adapters are published"},
    )
    base_model: str = field(
        default_factory=configured_default_base_model,
        metadata={"env": "BASE_MODEL", "help": "base model: a directory or a hub name"},
    )
    base_model_kind: str = field(
        default="",
        metadata={"env": "BASE_MODEL_KIND", "help": "embedding or nli (inferred when empty)"},
    )
    secret_key: str = field(
        default="",
        metadata={"env": "SECRET_KEY", "help": "Flask session signing key (required by web)"},
    )
    admin_token: str = field(
        default="",
        metadata={"env": "SORTLOOP_ADMIN_TOKEN", "help": "bearer token for the admin API"},
    )
    contributor_types: tuple[str, ...] = field(
        default=DEFAULT_CONTRIBUTOR_TYPES,
        metadata={"env": "SORTLOOP_CONTRIBUTOR_TYPES", "help": "comma-separated list"},
    )
    ratelimit_storage_url: str = field(
        default="memory://",
        metadata={"env": "RATELIMIT_STORAGE_URL", "help": "Flask-Limiter storage (redis://...)"},
    )
    public_rate_limit: str = field(
        default="30 per minute",
        metadata={"env": "SORTLOOP_PUBLIC_RATE_LIMIT", "help": "limit on public endpoints"},
    )
    session_idle_minutes: int = field(
        default=30,
        metadata={
            "env": "SORTLOOP_SESSION_IDLE_MINUTES",
            "help": "an admin session ends after this many minutes without a request",
        },
    )
    login_rate_limit: str = field(
        default="10 per minute",
        metadata={
            "env": "SORTLOOP_LOGIN_RATE_LIMIT",
            "help": "failed logins allowed per account and per client",
        },
    )
    session_cookie_secure: bool = field(
        default=False,
        metadata={"env": "SESSION_COOKIE_SECURE", "help": "send cookies over HTTPS only"},
    )
    heartbeat_timeout_seconds: float = field(
        default=300.0,
        metadata={"env": "SORTLOOP_HEARTBEAT_TIMEOUT", "help": "reaper: run is lost after"},
    )
    outage_patience_seconds: float = field(
        default=60.0,
        metadata={
            "env": "SORTLOOP_OUTAGE_PATIENCE",
            "help": "seconds a training worker's writes retry through a database outage",
        },
    )
    training_time_limit_seconds: int = field(
        default=6 * 3600,
        metadata={"env": "SORTLOOP_TRAINING_TIME_LIMIT", "help": "hard limit of one task"},
    )
    training_device: str = field(
        default="auto",
        metadata={
            "env": "SORTLOOP_TRAINING_DEVICE",
            "help": "training worker: auto (CUDA when available), cpu or cuda",
        },
    )
    inference_device: str = field(
        default="cpu",
        metadata={
            "env": "SORTLOOP_INFERENCE_DEVICE",
            "help": "worker's bulk classification (queue inference): cpu, cuda or auto",
        },
    )
    training_max_batch_tokens: int = field(
        default=8192,
        metadata={
            "env": "SORTLOOP_MAX_BATCH_TOKENS",
            "help": "training worker on CUDA: padded tokens per batch (lower it on a smaller GPU)",
        },
    )
    training_gradient_accumulation: int = field(
        default=1,
        metadata={
            "env": "SORTLOOP_GRADIENT_ACCUMULATION",
            "help": "training worker: batches per optimizer step (1..64)",
        },
    )
    model_check_interval_seconds: float = field(
        default=1.0,
        metadata={"env": "SORTLOOP_MODEL_CHECK_INTERVAL", "help": "hot-reload check period"},
    )
    alembic_dir: str = field(
        default="",
        metadata={
            "env": "SORTLOOP_ALEMBIC_DIR",
            "help": "the alembic/ folder, when the code is installed away from it",
        },
    )
    inference_backend: str = field(
        default="onnx",
        metadata={
            "env": "SORTLOOP_INFERENCE_BACKEND",
            "help": "onnx (ONNX Runtime, same labels, faster; torch when not installed) or torch",
        },
    )
    batch_precision: str = field(
        default="auto",
        metadata={
            "env": "SORTLOOP_BATCH_PRECISION",
            "help": "batch work's encoder precision on a CPU: auto (bf16 where the CPU "
            "computes it natively, else fp32), bf16 or fp32",
        },
    )
    web_workers: int = field(
        default=0,
        metadata={
            "env": "SORTLOOP_WEB_WORKERS",
            "help": "gunicorn worker processes (unset: one per core, at least 2)",
        },
    )
    web_threads: int = field(
        default=8,
        metadata={
            "env": "SORTLOOP_WEB_THREADS",
            "help": "request threads per web process (their classifications are batched)",
        },
    )
    web_torch_threads: int = field(
        default=0,
        metadata={
            "env": "SORTLOOP_WEB_TORCH_THREADS",
            "help": "compute threads per web process (unset: 1 up to 4 cores, else 2)",
        },
    )
    training_threads: int = field(
        default=0,
        metadata={
            "env": "SORTLOOP_TRAINING_THREADS",
            "help": "training worker's compute threads (unset: all cores but 1, 2 above 8)",
        },
    )
    cpu_worker_threads: int = field(
        default=0,
        metadata={
            "env": "SORTLOOP_CPU_WORKER_THREADS",
            "help": "CPU worker's compute threads (unset: the cores shared by its children)",
        },
    )
    training_nice: int = field(
        default=10,
        metadata={
            "env": "SORTLOOP_TRAINING_NICE",
            "help": "workers' CPU niceness added at start (0..19; the web tier keeps 0)",
            "minimum": 0,
        },
    )
    batch_wait_ms: float = field(
        default=2.0,
        metadata={
            "env": "SORTLOOP_BATCH_WAIT_MS",
            "help": "web: how long a classification waits for others to share its batch",
        },
    )
    batch_max_size: int = field(
        default=64,
        metadata={"env": "SORTLOOP_BATCH_MAX_SIZE", "help": "web: texts per analyzer batch"},
    )
    classify_on: str = field(
        default="auto",
        metadata={
            "env": "SORTLOOP_CLASSIFY_ON",
            "help": "where a public submission is classified: auto, web or worker",
        },
    )
    web_classify_budget_ms: float = field(
        default=150.0,
        metadata={
            "env": "SORTLOOP_WEB_CLASSIFY_BUDGET_MS",
            "help": "auto: a model slower than this per submission classifies on the worker",
        },
    )
    worker_batch_size: int = field(
        default=256,
        metadata={
            "env": "SORTLOOP_WORKER_BATCH_SIZE",
            "help": "texts per batch on the worker (waiting submissions, imports, re-classify)",
        },
    )
    flower_url: str = field(
        default="",
        metadata={
            "env": "SORTLOOP_FLOWER_URL",
            "help": "where web reaches Flower for /admin/flower/ (empty: not offered)",
        },
    )
    flower_basic_auth: str = field(
        default="",
        metadata={"env": "FLOWER_BASIC_AUTH", "help": "Flower's user:password"},
    )
    beat_interval_seconds: float = field(
        default=30.0,
        metadata={"env": "SORTLOOP_BEAT_INTERVAL", "help": "reaper / auto-train period"},
    )

    notify_retry_seconds: float = field(
        default=10.0,
        metadata={
            "env": "SORTLOOP_NOTIFY_RETRY_SECONDS",
            "help": "first wait before a failed webhook or email is retried (doubles each try)",
        },
    )
    notify_max_attempts: int = field(
        default=8,
        metadata={
            "env": "SORTLOOP_NOTIFY_MAX_ATTEMPTS",
            "help": "tries of one webhook delivery or email before it is given up",
        },
    )
    webhook_timeout_seconds: float = field(
        default=10.0,
        metadata={
            "env": "SORTLOOP_WEBHOOK_TIMEOUT",
            "help": "seconds a webhook receiver has to answer one delivery",
        },
    )
    smtp_host: str = field(
        default="",
        metadata={"env": "SORTLOOP_SMTP_HOST", "help": "SMTP server for emails (empty: no email)"},
    )
    smtp_port: int = field(
        default=587,
        metadata={"env": "SORTLOOP_SMTP_PORT", "help": "SMTP port"},
    )
    smtp_tls: str = field(
        default="starttls",
        metadata={
            "env": "SORTLOOP_SMTP_TLS",
            "help": "starttls, ssl (implicit TLS, usually port 465) or none",
        },
    )
    smtp_username: str = field(
        default="",
        metadata={"env": "SORTLOOP_SMTP_USERNAME", "help": "SMTP login (empty: no login)"},
    )
    smtp_password: str = field(
        default="",
        metadata={"env": "SORTLOOP_SMTP_PASSWORD", "help": "SMTP password"},
    )
    smtp_from: str = field(
        default="sortloop@localhost",
        metadata={"env": "SORTLOOP_SMTP_FROM", "help": "the From address of Sortloop's emails"},
    )

    def __post_init__(self) -> None:
        if self.base_model_kind not in ("", "embedding", "nli"):
            raise ConfigError(
                f"BASE_MODEL_KIND={self.base_model_kind!r}: use embedding or nli (or leave unset)"
            )
        if not self.base_model_kind:
            object.__setattr__(self, "base_model_kind", infer_model_kind(self.base_model))
        if self.training_device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"SORTLOOP_TRAINING_DEVICE={self.training_device!r}: use auto, cpu or cuda"
            )
        if self.inference_device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"SORTLOOP_INFERENCE_DEVICE={self.inference_device!r}: use auto, cpu or cuda"
            )
        if self.training_max_batch_tokens < 64:
            raise ConfigError("SORTLOOP_MAX_BATCH_TOKENS must be at least 64")
        if not 1 <= self.training_gradient_accumulation <= 64:
            raise ConfigError("SORTLOOP_GRADIENT_ACCUMULATION must be from 1 to 64")
        if self.classify_on not in ("auto", "web", "worker"):
            raise ConfigError(f"SORTLOOP_CLASSIFY_ON={self.classify_on!r}: use auto, web or worker")
        if self.inference_backend not in ("onnx", "torch"):
            raise ConfigError(
                f"SORTLOOP_INFERENCE_BACKEND={self.inference_backend!r}: use onnx or torch"
            )
        if self.batch_precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(
                f"SORTLOOP_BATCH_PRECISION={self.batch_precision!r}: use auto, bf16 or fp32"
            )
        if not 0 <= self.training_nice <= 19:
            raise ConfigError("SORTLOOP_TRAINING_NICE must be from 0 to 19")
        if self.batch_wait_ms > 1000:
            raise ConfigError("SORTLOOP_BATCH_WAIT_MS must be at most 1000")
        for name, value in (
            ("SORTLOOP_LOGIN_RATE_LIMIT", self.login_rate_limit),
            ("SORTLOOP_PUBLIC_RATE_LIMIT", self.public_rate_limit),
        ):
            try:
                parse_many(value)
            except ValueError:
                raise ConfigError(
                    f"{name}={value!r} is not a rate limit: write e.g. '10 per minute'"
                ) from None
        if self.smtp_tls not in ("starttls", "ssl", "none"):
            raise ConfigError(f"SORTLOOP_SMTP_TLS={self.smtp_tls!r}: use starttls, ssl or none")
        if self.webhook_timeout_seconds <= 0:
            raise ConfigError("SORTLOOP_WEBHOOK_TIMEOUT must be more than 0")
        if not self.contributor_types:
            raise ConfigError("SORTLOOP_CONTRIBUTOR_TYPES must name at least one type")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build the config from environment variables; raise ConfigError naming a bad one."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for spec in fields(cls):
            name = spec.metadata["env"]
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            default = cls.__dataclass_fields__[spec.name]
            kind = default.type
            if kind == "bool":
                values[spec.name] = _parse_bool(name, raw)
            elif kind == "int":
                values[spec.name] = _parse_int(name, raw, minimum=spec.metadata.get("minimum", 1))
            elif kind == "float":
                values[spec.name] = _parse_float(name, raw, minimum=0.0)
            elif kind.startswith("tuple"):
                items = tuple(item.strip() for item in raw.split(",") if item.strip())
                values[spec.name] = items
            else:
                values[spec.name] = raw.strip()
        return cls(**values)

    def training_overrides(self) -> dict[str, object]:
        """This host's training settings (TrainingConfig fields) beside the admin's choices."""
        return {
            "device": self.training_device,
            "max_batch_tokens": self.training_max_batch_tokens,
            "gradient_accumulation_steps": self.training_gradient_accumulation,
        }

    def with_overrides(self, **changes: object) -> Config:
        return replace(self, **changes)

    @staticmethod
    def documented_variables() -> list[tuple[str, str]]:
        """(variable, help) pairs: the README's configuration table is checked against these."""
        return [(spec.metadata["env"], spec.metadata["help"]) for spec in fields(Config)]
