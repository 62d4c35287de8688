"""NLI backend: entailment logit of premise=text, hypothesis=template(description).

Scores like the transformers zero-shot pipeline (single label): the entailment
logits of one text against every category are softmaxed across categories.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import torch

from shared.classifier.base import (
    DEFAULT_HYPOTHESIS_TEMPLATE,
    NLI,
    CategorySpec,
    ClassifierError,
    Prediction,
    check_categories,
    predictions_from_scores,
)

logger = logging.getLogger(__name__)


def entailment_index(config: object) -> int:
    """Index of the entailment logit from the model config's label names."""
    label2id = getattr(config, "label2id", None) or {}
    for name, index in label2id.items():
        if str(name).lower().startswith("entail"):
            return int(index)
    raise ClassifierError(
        "the NLI model's config has no 'entailment' label (config.label2id = "
        f"{label2id}); use an MNLI-style model or set the kind to 'embedding'"
    )


def load_nli_model(model_path: str, device: str = "cpu") -> tuple[object, torch.nn.Module]:
    """Load tokenizer and sequence-classification model for inference: fp32 on CPU, bf16 on CUDA."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path)
    if device != "cpu":
        model.to(device=device, dtype=torch.bfloat16)
    model.eval()
    return tokenizer, model


def pair_batch(
    tokenizer: object,
    texts: Sequence[str],
    hypotheses: Sequence[str],
    max_length: int,
) -> dict[str, torch.Tensor]:
    """Tokenise every (text, hypothesis) pair, text-major, truncating only the text."""
    premises = [text for text in texts for _ in hypotheses]
    pairs = [hypothesis for _ in texts for hypothesis in hypotheses]
    return tokenizer(
        premises,
        pairs,
        padding=True,
        truncation="only_first",
        max_length=max_length,
        return_tensors="pt",
    )


def entailment_logits(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], entail: int, num_categories: int
) -> torch.Tensor:
    """Entailment logits (fp32, on the model's device) as ``[texts, categories]`` (differentiable)."""
    from shared.classifier.embedding import model_device

    device = model_device(model)
    logits = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
    ).logits
    return logits[:, entail].float().reshape(-1, num_categories)


class NLIClassifier:
    """Cross-encoder zero-shot classifier over (text, hypothesis) pairs; thread-safe."""

    kind = NLI

    def __init__(
        self,
        tokenizer: object,
        model: torch.nn.Module,
        *,
        base_model: str,
        version: str,
        hypothesis_template: str = DEFAULT_HYPOTHESIS_TEMPLATE,
        max_length: int = 256,
        pair_batch_size: int = 64,
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.base_model = base_model
        self.version = version
        self.hypothesis_template = hypothesis_template
        self.max_length = max_length
        self.pair_batch_size = pair_batch_size
        self.entail = entailment_index(model.config)
        # A lower precision the forward pass runs in on the CPU under autocast (batch work
        # with SORTLOOP_BATCH_PRECISION=bf16: ``shared.compute.batch_precision``). None:
        # the weights' own precision.
        self.autocast: torch.dtype | None = None
        self._lock = threading.Lock()

    def hypotheses(self, categories: Sequence[CategorySpec]) -> list[str]:
        return [self.hypothesis_template.format(category.text) for category in categories]

    def score(self, texts: Sequence[str], categories: Sequence[CategorySpec]) -> torch.Tensor:
        """Entailment logits ``[len(texts), len(categories)]``."""
        hypotheses = self.hypotheses(categories)
        texts_per_batch = max(1, self.pair_batch_size // len(hypotheses))
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        rows: list[torch.Tensor] = []
        lower = self.autocast
        with (
            self._lock,
            torch.inference_mode(),
            torch.autocast("cpu", dtype=lower or torch.bfloat16, enabled=lower is not None),
        ):
            for start in range(0, len(order), texts_per_batch):
                chunk = [texts[index] for index in order[start : start + texts_per_batch]]
                batch = pair_batch(self.tokenizer, chunk, hypotheses, self.max_length)
                rows.append(
                    entailment_logits(self.model, batch, self.entail, len(hypotheses)).cpu()
                )
        ordered = torch.cat(rows)
        result = torch.empty_like(ordered)
        result[torch.tensor(order)] = ordered
        return result

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> list[Prediction]:
        """Predictions for ``texts`` over ``categories``."""
        check_categories(categories)
        if not texts:
            return []
        return predictions_from_scores(self.score(texts, categories).tolist(), categories)
