"""The validated training configuration of one fine-tuning run (no torch: web checks it too)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# The default comes first. ``head`` (a calibrated logistic head on the frozen encoder)
# is the default because ``lora`` (the same head on a LoRA-adapted encoder) did not beat
# it by the 1 point it must, on the mean over three datasets: -0.1 at 8 per category and
# -0.2 at 16 (banking topics, banking intents, hwu; 3 seeds each; 2026-12-07, both with
# the token match; bench/README.md), at
# 3-8 times the training time. METHOD_NOTES says so where admins choose.
METHODS = ("head", "lora")
DEFAULT_METHOD = METHODS[0]
METHOD_NOTES = {
    "head": (
        "the default: a calibrated logistic head on the frozen encoder, fitted in "
        "seconds; categories without examples are scored by their description"
    ),
    "lora": (
        "also adapts the encoder with LoRA before fitting the same head; measured on "
        "three datasets it is no more accurate on average at 8 or 16 examples per "
        "category and takes 3-8 times as long, so it is not the default"
    ),
}
LORA_RANKS = (8, 16, 32)
LEARNING_RATE_RANGE = (1e-4, 5e-4)
EPOCH_RANGE = (1, 10)
DEFAULT_SPLIT = (0.7, 0.15, 0.15)
# A category trains on at least this many of its examples (all of them when it has fewer).
MIN_TRAIN_PER_CATEGORY = 3
NO_TEST_TEXT = (
    "No example is left for the test set: a category with 3 examples trains on all of "
    "them, and no category here has more. Add examples: a category with 4 or more "
    "gives one to the test set (more make a clearer test)."
)
# Method lora on an embedding model adapts the encoder's top block with few examples and
# every block from this many training texts per category on (bench/README.md). NLI
# models adapt every block; method head adapts none.
ALL_LAYERS_FROM_PER_CATEGORY = 12
ADAPTS = ("no block", "top block", "every block")
DEVICES = ("auto", "cpu", "cuda")
# ~120 bart-large NLI pairs of short texts (~9 GB on an H200: ~1 GB per 1,000 padded
# tokens, bench/README "GPU training") or ~500 short texts
DEFAULT_MAX_BATCH_TOKENS = 8192


@dataclass
class TrainingConfig:
    """What an admin (or ``sortloop train``) may choose, checked on construction.

    ``learning_rate`` is the API's nominal rate (1e-4..5e-4). Few-shot LoRA on a
    small encoder needs larger steps, so the trainer multiplies it by
    ``lora_lr_multiplier`` for the adapter and ``head_lr_multiplier`` for the
    scorer's scale, temperature and description weight.
    """

    method: str = field(
        default=DEFAULT_METHOD,
        metadata={"help": "head (calibrated logistic head, the default) or lora (adapter + head)"},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank: 8, 16 or 32"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2*r)"})
    lora_dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA input"})
    learning_rate: float = field(default=2e-4, metadata={"help": "nominal rate, 1e-4..5e-4"})
    epochs: int = field(default=10, metadata={"help": "maximum epochs, 1..10"})
    batch_size: int = field(
        default=16,
        metadata={
            "help": "texts per optimizer step (embedding lora on the CPU: at least this, "
            "and larger for large sets, so an epoch takes at most 8 steps)"
        },
    )
    split: tuple[float, float, float] = field(
        default=DEFAULT_SPLIT, metadata={"help": "train/validation/test fractions"}
    )
    cross_validation: bool = field(default=False, metadata={"help": "also run k-fold CV"})
    cv_folds: int = field(default=5, metadata={"help": "folds for cross-validation"})
    seed: int = field(default=0, metadata={"help": "seed for sampling, split and init"})
    max_length: int = field(default=64, metadata={"help": "token cap while training"})
    patience: int = field(default=2, metadata={"help": "epochs without val improvement"})
    lora_lr_multiplier: float | None = field(
        default=None,
        metadata={
            "help": "adapter lr / nominal; default per model kind and data (embedding: "
            "10 on the top block, 5 on every block from 12 texts per category; NLI: 3)"
        },
    )
    head_lr_multiplier: float = field(
        default=50.0, metadata={"help": "scoring-parameter lr / nominal"}
    )
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "LoRA targets (default chosen per architecture)"}
    )
    hypothesis_template: str = field(
        default="This text is about {}.", metadata={"help": "NLI hypothesis template"}
    )
    device: str = field(
        default="auto", metadata={"help": "auto (cuda when available, else cpu), cpu or cuda"}
    )
    max_batch_tokens: int = field(
        default=DEFAULT_MAX_BATCH_TOKENS,
        metadata={
            "help": "on CUDA: padded tokens per optimizer step (NLI: text x category pairs); "
            "batches are built by token budget from length buckets, batch_size is the CPU setting"
        },
    )

    gradient_accumulation_steps: int = field(
        default=1,
        metadata={
            "help": "batches whose gradients add up before one optimizer step: a larger "
            "effective batch at the memory of one batch (1..64)"
        },
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.lora_r not in LORA_RANKS:
            raise ValueError(f"lora_r must be one of {LORA_RANKS}, got {self.lora_r!r}")
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_r
        if not isinstance(self.lora_alpha, int) or self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be a positive integer, got {self.lora_alpha!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        low, high = LEARNING_RATE_RANGE
        if not isinstance(self.learning_rate, int | float) or not (
            low <= self.learning_rate <= high
        ):
            raise ValueError(
                f"learning_rate must be between {low:g} and {high:g}, got {self.learning_rate!r}"
            )
        low_epochs, high_epochs = EPOCH_RANGE
        if not isinstance(self.epochs, int) or not low_epochs <= self.epochs <= high_epochs:
            raise ValueError(
                f"epochs must be an integer from {low_epochs} to {high_epochs}, got {self.epochs!r}"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        self.split = validate_split(self.split)
        if not isinstance(self.cv_folds, int) or self.cv_folds < 2:
            raise ValueError(f"cv_folds must be an integer >= 2, got {self.cv_folds!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.max_length, int) or not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be from 8 to 512, got {self.max_length!r}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience must be a positive integer, got {self.patience!r}")
        if self.lora_lr_multiplier is not None and (
            not isinstance(self.lora_lr_multiplier, int | float) or self.lora_lr_multiplier <= 0
        ):
            raise ValueError(
                f"lora_lr_multiplier must be a positive number, got {self.lora_lr_multiplier!r}"
            )
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if not isinstance(self.max_batch_tokens, int) or self.max_batch_tokens < 64:
            raise ValueError(
                f"max_batch_tokens must be an integer >= 64, got {self.max_batch_tokens!r}"
            )
        if (
            not isinstance(self.gradient_accumulation_steps, int)
            or not 1 <= self.gradient_accumulation_steps <= 64
        ):
            raise ValueError(
                "gradient_accumulation_steps must be an integer from 1 to 64, "
                f"got {self.gradient_accumulation_steps!r}"
            )
        if "{}" not in self.hypothesis_template:
            raise ValueError("hypothesis_template must contain '{}' for the category description")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``TrainingConfig.from_dict(c.to_dict()) == c``."""
        data = asdict(self)
        data["split"] = list(self.split)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Build from a dict (unknown keys are refused, naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config field(s): {', '.join(unknown)}")
        return cls(**data)


def validate_split(split: Any) -> tuple[float, float, float]:
    """Check a (train, validation, test) triple of fractions summing to 1."""
    try:
        values = tuple(float(part) for part in split)
    except (TypeError, ValueError) as error:
        raise ValueError(f"split must be three numbers, got {split!r}") from error
    if len(values) != 3:
        raise ValueError(f"split must have three parts (train, validation, test), got {split!r}")
    if any(part < 0 for part in values) or values[0] <= 0:
        raise ValueError(f"split parts must be >= 0 with a positive train part, got {split!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"split must sum to 1, got {split!r} (sum {sum(values):g})")
    return values  # type: ignore[return-value]


def adapted_blocks(kind: str, method: str, train_texts_per_category: float) -> str:
    """What a run adapts, one of ``ADAPTS``; its cost per example depends on it."""
    if method != "lora":
        return "no block"
    if kind == "nli" or train_texts_per_category >= ALL_LAYERS_FROM_PER_CATEGORY:
        return "every block"
    return "top block"


def split_counts(size: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of a category's ``size`` examples go to train, validation and test.

    Small categories favour train: at least ``min(size, 3)`` examples train, so
    a category with 3 examples is all train.
    """
    _, val_fraction, test_fraction = fractions
    val = round(size * val_fraction)
    test = round(size * test_fraction)
    while size - val - test < min(size, MIN_TRAIN_PER_CATEGORY) and val + test > 0:
        if val >= test and val > 0:
            val -= 1
        else:
            test -= 1
    return size - val - test, val, test


def leaves_a_test_text(per_category: Iterable[int], split: Sequence[float]) -> bool:
    """Whether categories of these sizes give the test set at least one text."""
    return any(split_counts(size, split)[2] for size in per_category)
