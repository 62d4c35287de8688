"""Embedding backend: scaled cosine similarity between a text and each category.

The anchor of a category is the embedding of its description (zero-shot). A
fine-tuned model adds a learned prototype to the anchors of the labels it was
trained on and learns the softmax scale; categories it never saw keep their
description anchor, scored by the (adapted) encoder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as functional

from shared.classifier.base import (
    EMBEDDING,
    CategorySpec,
    Prediction,
    check_categories,
    predictions_from_scores,
)

logger = logging.getLogger(__name__)

ZERO_SHOT_SCALE = 20.0


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors, ignoring padding (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def embed(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2-normalised sentence embeddings of a tokenised batch (differentiable)."""
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return functional.normalize(
        mean_pool(output.last_hidden_state, batch["attention_mask"]), dim=-1
    )


def combine_anchors(
    description_embeddings: torch.Tensor, prototypes: torch.Tensor | None
) -> torch.Tensor:
    """Category anchors: description embedding plus the learned prototype, normalised."""
    if prototypes is None:
        return functional.normalize(description_embeddings, dim=-1)
    return functional.normalize(
        functional.normalize(description_embeddings, dim=-1) + prototypes, dim=-1
    )


def load_encoder(model_path: str) -> tuple[object, torch.nn.Module]:
    """Load tokenizer and encoder for inference (CPU or the first GPU), float32, eval mode."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path)
    model.eval()
    return tokenizer, model


class EmbeddingClassifier:
    """Sentence-encoder classifier; thread-safe; description embeddings are cached."""

    kind = EMBEDDING

    def __init__(
        self,
        tokenizer: object,
        model: torch.nn.Module,
        *,
        base_model: str,
        version: str,
        labels: Sequence[str] = (),
        prototypes: torch.Tensor | None = None,
        scale: float = ZERO_SHOT_SCALE,
        max_length: int = 256,
        batch_size: int = 64,
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.base_model = base_model
        self.version = version
        self.labels = list(labels)
        self.prototypes = (
            {label: prototypes[index] for index, label in enumerate(self.labels)}
            if prototypes is not None
            else {}
        )
        self.scale = float(scale)
        self.max_length = max_length
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._description_cache: dict[str, torch.Tensor] = {}

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised embeddings ``[len(texts), dim]``, batched by similar length."""
        if not texts:
            return torch.zeros(0, 0)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        chunks: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch_texts = [texts[index] for index in order[start : start + self.batch_size]]
                batch = self.tokenizer(
                    batch_texts,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                chunks.append(embed(self.model, batch))
        ordered = torch.cat(chunks)
        result = torch.empty_like(ordered)
        result[torch.tensor(order)] = ordered
        return result

    def _descriptions(self, categories: Sequence[CategorySpec]) -> torch.Tensor:
        missing = [c.text for c in categories if c.text not in self._description_cache]
        if missing:
            for text, vector in zip(missing, self.encode(missing), strict=True):
                self._description_cache[text] = vector
        return torch.stack([self._description_cache[c.text] for c in categories])

    def anchors(self, categories: Sequence[CategorySpec]) -> torch.Tensor:
        """One normalised anchor per category (learned prototype where trained)."""
        descriptions = self._descriptions(categories)
        rows = []
        for category, description in zip(categories, descriptions, strict=True):
            prototype = self.prototypes.get(category.name)
            rows.append(
                combine_anchors(description[None], None if prototype is None else prototype[None])[
                    0
                ]
            )
        return torch.stack(rows)

    def score(self, texts: Sequence[str], categories: Sequence[CategorySpec]) -> torch.Tensor:
        """Raw logits ``[len(texts), len(categories)]`` (scaled cosine similarities)."""
        with self._lock:
            anchors = self.anchors(categories)
            embeddings = self.encode(texts)
        return self.scale * embeddings @ anchors.T

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> list[Prediction]:
        """Predictions for ``texts`` over ``categories`` (softmax of scaled cosines)."""
        check_categories(categories)
        if not texts:
            return []
        return predictions_from_scores(self.score(texts, categories).tolist(), categories)
