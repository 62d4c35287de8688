"""Embedding backend: scaled cosine similarity between a text and each category.

The anchor of a category is the embedding of its description (zero-shot). A
fine-tuned model (the base or an adapted encoder) adds a calibrated logistic head
(``LinearHead``): each category it was trained on scores ``w_c . x + b_c``; a
category it has no row for is scored from its description on the head's scale.
Models of the earlier format instead carry their labelled examples ("exemplars"):
a category scores by its description plus a soft nearest example.

A head may read a middle block's pooled output beside the last one's
(``MiddleLayer``): the engine fits it both ways and keeps the one its cross-fitted
loss prefers (``worker.fine_tuning.linear_head``). It also reads the texts word by word
(``TokenBank``): how closely each token of a text matches some token of a category's
labelled texts, added to that category's logit with a weight fitted on held-out texts.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

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
# Token cap of a text the classifier embeds (all-MiniLM-L6-v2 was trained up to 256).
# The engine embeds the exemplars it exports the same way, so a labelled text is its
# own nearest exemplar at cosine 1 whatever the training cap.
MAX_LENGTH = 256


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors, ignoring padding (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@dataclass(frozen=True)
class MiddleLayer:
    """A middle block's output read beside the last one's: the head's features are
    ``[pool(last), weight * pool(block index)]``, each pool mean-pooled and normalised.

    The last layer of a sentence encoder is tuned for similarity of meaning; a middle
    block still carries which words and phrasings a text uses, and categories told
    apart by their vocabulary (``alarm`` against ``calendar``) gain from it. ``index``
    counts blocks from 1 (the output of the ``index``-th block; 0 would be the token
    embeddings).
    """

    index: int
    weight: float

    def __post_init__(self) -> None:
        if self.index < 0 or not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"not a middle layer: block {self.index}, weight {self.weight}")


# Query tokens times bank tokens compared at once when matching (bounds the memory).
MATCH_CHUNK = 1 << 22


def content_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """The tokens a text's words are made of: the attention mask without the first and
    the last real token ([CLS] and [SEP]); every real token of a text that has no other."""
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    content = mask.clone()
    content[:, 0] = False
    rows = torch.arange(mask.shape[0], device=mask.device)
    content[rows, (lengths - 1).clamp(min=0)] = False
    empty = ~content.any(dim=1)
    content[empty] = mask[empty]
    return content


def content_tokens(states: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Each text's normalised content token states (fp32), ``[tokens, dim]`` apiece."""
    content = content_mask(attention_mask)
    normalised = functional.normalize(states.float(), dim=-1)
    return list(normalised[content].split(content.sum(dim=1).tolist()))


def flattened(texts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-text token lists as one ``[tokens, dim]`` tensor and each token's text index."""
    owners = torch.repeat_interleave(torch.tensor([len(tokens) for tokens in texts]))
    return torch.cat(list(texts)), owners


def token_match(
    tokens: torch.Tensor,
    owners: torch.Tensor,
    texts: int,
    bank: torch.Tensor,
    rows: torch.Tensor,
    num_rows: int,
    bank_owners: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[texts, num_rows]``: for each text (``owners`` says which text each of ``tokens``
    belongs to), the mean over its tokens of the best cosine with any ``bank`` token of
    each row. With ``bank_owners``, a token never matches a bank token of its own text
    (the engine's held-out matches of the labelled texts themselves)."""
    best = torch.empty(tokens.shape[0], num_rows)
    step = max(1, MATCH_CHUNK // max(1, bank.shape[0]))
    for start in range(0, tokens.shape[0], step):
        # fp32 even under a bf16 autocast (batch work): the maxima below are fp32.
        similarity = (tokens[start : start + step] @ bank.T).float()
        if bank_owners is not None:
            own = owners[start : start + step, None] == bank_owners[None, :]
            similarity = similarity.masked_fill(own, float("-inf"))
        index = rows.unsqueeze(0).expand(similarity.shape[0], -1)
        chunk = torch.full((similarity.shape[0], num_rows), float("-inf")).scatter_reduce(
            1, index, similarity, reduce="amax"
        )
        best[start : start + step] = chunk.nan_to_num(neginf=0.0)
    counts = torch.bincount(owners, minlength=texts).clamp(min=1).unsqueeze(1)
    return torch.zeros(texts, num_rows).index_add_(0, owners, best) / counts


@dataclass(frozen=True, eq=False)
class TokenBank:
    """Each category's words, for matching a text token by token beside the head.

    ``tokens`` are the last layer's normalised token states of every labelled text and of
    each category's description ([CLS] and [SEP] left out), ``rows`` the head row each
    belongs to. A text's match with a category is the mean, over the text's own tokens,
    of the best cosine with any token of that category (late interaction, as ColBERT
    scores a passage): a pooled embedding blurs the one word that decides (``alarm``,
    ``card``), a token match keeps it. The head adds ``token_weight * match`` to each of
    its categories' logits before its temperature, the weight fitted with the
    temperature on held-out texts (``worker.fine_tuning.linear_head.fit_token_weight``).
    The columns ``match`` returns are centred per text, so a category the head has no
    row for still competes on the head's own scale (by its description).
    """

    tokens: torch.Tensor  # [M, dim]
    rows: torch.Tensor  # [M], the head row of each token
    num_rows: int

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2 or self.rows.shape != (self.tokens.shape[0],):
            raise ValueError("the token bank needs one row per token")
        if self.rows.numel() and not (
            int(self.rows.min()) >= 0 and int(self.rows.max()) < self.num_rows
        ):
            raise ValueError("the token bank names a row its head does not have")
        object.__setattr__(self, "tokens", self.tokens.float())
        object.__setattr__(self, "rows", self.rows.long())

    def match(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[n, num_rows]`` from a batch's last-layer token states ``[n, length, dim]``,
        centred per text."""
        return self.match_texts(content_tokens(states, attention_mask))

    def match_texts(self, texts: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[len(texts), num_rows]`` from each text's ``content_tokens``, centred per text."""
        tokens, owners = flattened(texts)
        matched = token_match(tokens, owners, len(texts), self.tokens, self.rows, self.num_rows)
        return matched - matched.mean(dim=1, keepdim=True)


def embed(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    middle: MiddleLayer | None = None,
    bank: TokenBank | None = None,
) -> torch.Tensor:
    """L2-normalised sentence embeddings of a tokenised batch (differentiable); with
    ``middle``, the middle block's normalised, weighted pool is appended to each; with
    ``bank``, each text's token match with every head row after that (not differentiable)."""
    output = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=middle is not None,
    )
    mask = batch["attention_mask"]
    # fp32 pooling even when the encoder runs in bf16 (GPU); a no-op for fp32 models.
    last = functional.normalize(mean_pool(output.last_hidden_state.float(), mask), dim=-1)
    if middle is not None:
        states = output.hidden_states[middle.index].float()
        lower = functional.normalize(mean_pool(states, mask), dim=-1)
        last = torch.cat([last, middle.weight * lower], dim=-1)
    if bank is None:
        return last
    matched = bank.match(output.last_hidden_state.detach().cpu(), mask.cpu())
    return torch.cat([last, matched.to(last.device)], dim=-1)


def middle_block(model: torch.nn.Module, fraction: float) -> int | None:
    """The block ``fraction`` of the way up ``model`` (3 of 6 at 0.5), or None when the
    model has fewer than 2 blocks (no block between the embeddings and the last)."""
    blocks = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
    if blocks < 2:
        return None
    return min(blocks - 1, max(1, round(blocks * fraction)))


def encoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The transformer blocks of a BERT-style encoder (``model.encoder.layer``), else None."""
    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if isinstance(blocks, torch.nn.ModuleList) and hasattr(model, "embeddings"):
        return blocks
    return None


def _run_blocks(
    model: torch.nn.Module,
    blocks: Sequence[torch.nn.Module],
    hidden: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    from transformers.masking_utils import create_bidirectional_mask

    attention = create_bidirectional_mask(
        config=model.config, inputs_embeds=hidden, attention_mask=mask
    )
    for block in blocks:
        output = block(hidden, attention_mask=attention)
        hidden = output if torch.is_tensor(output) else output[0]
    return hidden


def prefix_states(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], layers: int
) -> torch.Tensor:
    """Token states after the embeddings and the first ``layers`` blocks of a BERT-style encoder.

    When only the top blocks are adapted, the bottom ones are the base model's:
    their output can be computed once and shared (``embed_from_prefix``).
    """
    blocks = encoder_blocks(model)
    if blocks is None:
        raise ValueError("prefix states need a BERT-style encoder (embeddings + encoder.layer)")
    hidden = model.embeddings(input_ids=batch["input_ids"])
    return _run_blocks(model, list(blocks)[:layers], hidden, batch["attention_mask"])


def embed_from_prefix(
    model: torch.nn.Module, states: torch.Tensor, attention_mask: torch.Tensor, layers: int
) -> torch.Tensor:
    """``embed`` finished from ``prefix_states(model, batch, layers)``: the remaining blocks, pooling."""
    blocks = encoder_blocks(model)
    if blocks is None:
        raise ValueError("prefix states need a BERT-style encoder (embeddings + encoder.layer)")
    hidden = _run_blocks(model, list(blocks)[layers:], states, attention_mask)
    return functional.normalize(mean_pool(hidden.float(), attention_mask), dim=-1)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on (CPU for the web tier)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def exemplar_scores(
    embeddings: torch.Tensor,
    descriptions: torch.Tensor,
    exemplars: torch.Tensor | None,
    exemplar_classes: torch.Tensor | None,
    temperature: float,
    description_weight: float,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-category similarity: description cosine plus a soft maximum over examples.

    ``score[t, c] = w * cos(t, d_c) + T * logsumexp({cos(t, d_c)} U {cos(t, e) : e in c} / T)``

    A category is a union of sub-topics, so each labelled example counts on its
    own (a soft nearest neighbour) rather than through one centroid; the
    description is always one of the category's exemplars, so a category
    without examples is scored zero-shot. ``exclude[t, n]`` masks pairs (a
    text's own exemplar while training).
    """
    description_similarity = embeddings @ descriptions.T
    if exemplars is None or exemplars.shape[0] == 0:
        return (1.0 + description_weight) * description_similarity
    similarity = embeddings @ exemplars.T / temperature
    if exclude is not None:
        similarity = similarity.masked_fill(exclude, float("-inf"))
    membership = functional.one_hot(exemplar_classes, descriptions.shape[0]).T.bool()
    per_class = similarity[:, None, :].masked_fill(~membership[None], float("-inf"))
    pooled = torch.cat([per_class, (description_similarity / temperature)[:, :, None]], dim=2)
    return description_weight * description_similarity + temperature * torch.logsumexp(
        pooled, dim=2
    )


class LinearHead:
    """The logistic head of a fine-tuned embedding model (fitted by the engine).

    ``logits[:, c] = calibration * (x @ weight[c] + bias[c] + token_weight * m[c])`` for
    the categories in ``labels`` (``m``: the text's centred ``TokenBank`` match, the
    columns after the head's features; none when ``token_weight`` is 0); another category
    ``c`` scores ``calibration * (slope * cos(x, d_c) + intercept)``: by its description,
    on the head's scale.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        labels: Sequence[str],
        *,
        calibration: float,
        slope: float,
        intercept: float,
        token_weight: float = 0.0,
    ) -> None:
        if weight.ndim != 2 or weight.shape[0] != len(labels) or bias.shape != (len(labels),):
            raise ValueError("the linear head does not match its label list")
        self.weight = weight.float()
        self.bias = bias.float()
        self.rows = {label: index for index, label in enumerate(labels)}
        if not (math.isfinite(calibration) and calibration > 0):
            raise ValueError(f"the head's calibration must be a positive number, not {calibration}")
        self.calibration = float(calibration)
        self.slope = float(slope)
        self.intercept = float(intercept)
        if not (math.isfinite(token_weight) and token_weight >= 0):
            raise ValueError(f"the head's token weight must be 0 or more, not {token_weight}")
        self.token_weight = float(token_weight)

    def scores(
        self, embeddings: torch.Tensor, descriptions: torch.Tensor, names: Sequence[str]
    ) -> torch.Tensor:
        """Calibrated logits ``[len(embeddings), len(names)]``."""
        width = self.weight.shape[1]
        features, matched = embeddings[:, :width], embeddings[:, width:]
        if self.token_weight and matched.shape[1] != len(self.rows):
            raise ValueError("this head reads a token match its features do not carry")
        rows = [self.rows.get(name) for name in names]
        known = [position for position, row in enumerate(rows) if row is not None]
        unknown = [position for position, row in enumerate(rows) if row is None]
        logits = torch.empty(embeddings.shape[0], len(names), dtype=embeddings.dtype)
        if known:
            index = torch.tensor([rows[position] for position in known], dtype=torch.long)
            logits[:, known] = features @ self.weight[index].T + self.bias[index]
            if self.token_weight:
                logits[:, known] += self.token_weight * matched[:, index]
        if unknown:
            cosines = features @ descriptions[unknown, :width].T
            logits[:, unknown] = self.slope * cosines + self.intercept
        return self.calibration * logits


def load_encoder(model_path: str, device: str = "cpu") -> tuple[object, torch.nn.Module]:
    """Load tokenizer and encoder for inference, eval mode: fp32 on CPU (the default), bf16 on CUDA."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path)
    if device != "cpu":
        model.to(device=device, dtype=torch.bfloat16)
    model.eval()
    return tokenizer, model


def _in_text_order(chunks: list[tuple[list[int], torch.Tensor]]) -> torch.Tensor:
    """Reassemble per-batch embeddings into the order of the original texts."""
    order = torch.tensor([index for indices, _ in chunks for index in indices])
    ordered = torch.cat([embeddings for _, embeddings in chunks])
    result = torch.empty_like(ordered)
    result[order] = ordered
    return result


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
        exemplars: torch.Tensor | None = None,
        exemplar_labels: Sequence[str] = (),
        temperature: float = 0.05,
        description_weight: float = 0.5,
        scale: float = ZERO_SHOT_SCALE,
        max_length: int = MAX_LENGTH,
        batch_size: int = 64,
        shared_layers: int = 0,
        linear_head: LinearHead | None = None,
        middle_layer: MiddleLayer | None = None,
        token_bank: TokenBank | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.base_model = base_model
        self.version = version
        self.exemplars = exemplars
        self.exemplar_labels = list(exemplar_labels)
        if exemplars is not None and len(self.exemplar_labels) != exemplars.shape[0]:
            raise ValueError("one label per exemplar is needed")
        self.temperature = float(temperature)
        self.description_weight = float(description_weight)
        self.scale = float(scale)
        self.max_length = max_length
        self.batch_size = batch_size
        # Bottom encoder blocks left as in the base model (LoRA on the top blocks only):
        # ``encode_both`` runs them once for the base and the fine-tuned model.
        self.shared_layers = shared_layers
        self.linear_head = linear_head
        # Features of the head: the last layer's pool, and this block's beside it.
        self.middle_layer = middle_layer
        # Each category's tokens, matched with a text's beside the head (its columns
        # follow the head's features in ``encode``).
        self.token_bank = token_bank
        # The encoder's forward pass on another runtime (``onnx_encoder.accelerate``):
        # a callable from a tokenised batch to normalised embeddings. None: torch.
        self.runtime: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
        # A lower precision the encoder's forward pass runs in on the CPU under autocast
        # (batch work on a CPU with native bf16: ``shared.compute.batch_precision``);
        # pooling stays fp32. None: the weights' own precision.
        self.autocast: torch.dtype | None = None
        self._lock = threading.Lock()
        self._description_cache: dict[str, torch.Tensor] = {}

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised embeddings ``[len(texts), dim]``, batched by similar length (with a
        ``middle_layer``, ``[len(texts), 2 * dim]``: the head's features; with a
        ``token_bank``, its match with each of the head's categories after them)."""
        if not texts:
            return torch.zeros(0, 0)
        runtime, middle, bank = self.runtime, self.middle_layer, self.token_bank

        def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            if runtime is None:
                return embed(self.model, batch, middle, bank).cpu()
            if bank is None:
                return runtime(batch)
            pooled, states = runtime.with_states(batch)  # type: ignore[attr-defined]
            matched = bank.match(states, batch["attention_mask"].cpu())
            return torch.cat([pooled, matched], dim=-1)

        lower = self.autocast if runtime is None else None
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=lower or torch.bfloat16, enabled=lower is not None),
        ):
            return _in_text_order(
                [(order, forward(batch)) for order, batch in self._batches(texts)]
            )

    def _batches(self, texts: Sequence[str]) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Tokenised batches of texts of similar length, with their positions in ``texts``."""
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        device = model_device(self.model)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[index] for index in chosen],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            yield chosen, batch

    def _descriptions(self, categories: Sequence[CategorySpec]) -> torch.Tensor:
        missing = [c.text for c in categories if c.text not in self._description_cache]
        if missing:
            for text, vector in zip(missing, self.encode(missing), strict=True):
                self._description_cache[text] = vector
        return torch.stack([self._description_cache[c.text] for c in categories])

    def score(
        self,
        texts: Sequence[str],
        categories: Sequence[CategorySpec],
        embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw logits ``[len(texts), len(categories)]``.

        Base model: scaled cosine to the description. Fine-tuned: the calibrated
        logistic head (``LinearHead``); models of the earlier format score by the
        description plus the soft nearest labelled example of each category
        (exemplars whose label is not among ``categories`` are ignored). ``embeddings`` may carry
        the texts' embeddings from ``encode`` when they are already known.
        """
        with self._lock:
            descriptions = self._descriptions(categories)
            if embeddings is None:
                embeddings = self.encode(texts)
        if self.linear_head is not None:
            return self.linear_head.scores(
                embeddings, descriptions, [category.name for category in categories]
            )
        if self.exemplars is None:
            return self.scale * embeddings @ descriptions.T
        names = {category.name: index for index, category in enumerate(categories)}
        keep = [i for i, label in enumerate(self.exemplar_labels) if label in names]
        classes = torch.tensor([names[self.exemplar_labels[i]] for i in keep], dtype=torch.long)
        scores = exemplar_scores(
            embeddings,
            descriptions,
            self.exemplars[keep],
            classes,
            self.temperature,
            self.description_weight,
        )
        return self.scale * scores

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> list[Prediction]:
        """Predictions for ``texts`` over ``categories`` (softmax of scaled cosines)."""
        check_categories(categories)
        if not texts:
            return []
        return predictions_from_scores(self.score(texts, categories).tolist(), categories)


def last_layer_width(model: torch.nn.Module, features: torch.Tensor) -> int:
    """How many leading columns of ``features`` are the last layer's pool."""
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    return int(hidden) if hidden else features.shape[-1]


def encode_both(
    base: EmbeddingClassifier, tuned: EmbeddingClassifier, texts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of ``texts`` by the base and by the fine-tuned model.

    When both share one encoder (method ``head``), one pass serves both: the base
    model's embedding is the last layer's part of the fine-tuned one's features. When
    the fine-tuned model only changed the top blocks (``tuned.shared_layers`` > 0), the
    bottom ones run once for both: evaluating a LoRA adapter on the top block of six
    then costs about 1.2 base-model passes instead of 2.
    """
    if tuned.model is base.model and base.middle_layer is None and base.token_bank is None:
        features = tuned.encode(texts)
        return features[:, : last_layer_width(tuned.model, features)], features
    layers = tuned.shared_layers
    if (
        layers <= 0
        or tuned.token_bank is not None
        or encoder_blocks(base.model) is None
        or encoder_blocks(tuned.model) is None
    ):
        return base.encode(texts), tuned.encode(texts)
    if not texts:
        return torch.zeros(0, 0), torch.zeros(0, 0)
    base_chunks, tuned_chunks = [], []
    with torch.inference_mode():
        for order, batch in base._batches(texts):
            states = prefix_states(base.model, batch, layers)
            mask = batch["attention_mask"]
            base_chunks.append((order, embed_from_prefix(base.model, states, mask, layers).cpu()))
            tuned_chunks.append((order, embed_from_prefix(tuned.model, states, mask, layers).cpu()))
    return _in_text_order(base_chunks), _in_text_order(tuned_chunks)
