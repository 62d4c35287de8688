"""Few-shot fine-tuning of the zero-shot scorer: LoRA on the encoder, or a head only.

Embedding models score a text against a category by the cosine to the
category's description plus a soft maximum over the category's labelled
examples ("exemplars", see ``shared.classifier.embedding.exemplar_scores``).
Coarse categories are unions of sub-topics, so examples count one by one, not
through a centroid; a category without examples falls back to its description.

- ``lora``: LoRA adapters on the top block of the encoder (``query``/``value``
  for BERT-style models) trained with a leave-one-out objective: cross-entropy of each
  training text's scores against the descriptions and all *other* training
  examples. It pulls same-category texts together and pushes the others apart
  (what makes SetFit's contrastive pairs work), on exactly the scorer that
  serves predictions, plus a supervised contrastive term over the same
  pairs (SetFit's contrastive idea, temperature 0.1). The softmax scale, the
  temperature and the description weight are learned beside it. Early
  stopping on validation loss; best epoch kept. The frozen blocks below the
  adapted one run once per text (a prefix cache), not once per epoch, and
  evaluation shares them between the base and the fine-tuned model.
- ``head``: the encoder stays frozen; only scale, temperature and description
  weight are fitted on cached embeddings (seconds).

The exported model is the base model + adapter + the exemplar embeddings of
every labelled example (train and validation). For NLI models ``lora`` adapts
``q_proj``/``v_proj`` with cross-entropy over the entailment logits of every
category, and ``head`` retrains the model's classification head.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as functional

from shared.classifier import EMBEDDING, NLI, CategorySpec, model_identity
from shared.classifier.artifact import HEAD_PREFIX, AdapterManifest
from shared.classifier.embedding import embed, embed_from_prefix, encoder_blocks, prefix_states
from shared.training_config import TrainingConfig
from worker.fine_tuning import devices

logger = logging.getLogger(__name__)

ZERO_SHOT_LOGIT_SCALE = math.log(20.0)
SUPCON_TEMPERATURE = 0.1
HEAD_STEPS_PER_EPOCH = 20
# The embedding recipe (tuned on banking.csv, see bench/README.md).
RECIPE: dict[str, Any] = {
    "temperature": 0.05,  # softness of the nearest-example maximum
    "description_weight": 0.5,  # weight of the description cosine beside the examples
    "learn_scoring": True,  # lora: also learn temperature and description weight
    # lora: weight of a supervised contrastive term (SetFit's pairs, every in-batch text
    # against every other labelled text, temperature 0.1) beside the exemplar loss, with
    # up to ``supcon_full_weight_per_category`` training texts per category; beyond, it
    # fades as (that / per category)^2: it helps few-shot runs, while with more
    # examples it squeezes a category's sub-topics into one cluster (bench/README.md).
    "supcon_weight": 2.0,
    "supcon_full_weight_per_category": 7,
    # lora: adapt only the top N encoder blocks (all when None); the rest run once per text.
    "lora_top_layers": 1,
    # lora: adapter learning rate / the nominal one (one block adapts: larger steps).
    "lora_lr_multiplier": 10.0,
}
NLI_LORA_LR_MULTIPLIER = 3.0
# Prefix states of the frozen bottom blocks are cached up to this size (else recomputed).
PREFIX_CACHE_LIMIT_MB = 512


class TrainingCancelled(Exception):
    """Raised between steps when ``should_cancel()`` answers True."""


class ProgressCallback(Protocol):
    """Called after every optimizer step and at stage changes."""

    def __call__(
        self,
        stage: str,
        step: int,
        total_steps: int,
        epoch: int,
        loss: float | None,
        eta_seconds: float | None,
    ) -> None: ...


@dataclass
class TrainedAdapter:
    """What training produced, ready for ``export.write_adapter``."""

    tensors: dict[str, torch.Tensor]
    peft_fields: dict[str, Any]
    manifest: AdapterManifest
    history: dict[str, Any] = field(default_factory=dict)


def _no_progress(*_: Any) -> None:
    return None


def _never_cancel() -> bool:
    return False


def prepare_dataset(
    texts: Sequence[str], label_ids: Sequence[int], tokenizer: Any, max_length: int
) -> Any:
    """A tokenised ``datasets.Dataset`` (input_ids, attention_mask, label); padding per batch."""
    from datasets import Dataset

    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    return Dataset.from_dict(
        {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "label": [int(label) for label in label_ids],
            "text": list(texts),
        }
    )


def _collate(
    dataset: Any, indices: Sequence[int], pad_id: int, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Pad the selected rows to the longest one in the batch (not max_length), on ``device``."""
    rows = dataset[list(indices)]
    width = max(len(ids) for ids in rows["input_ids"])
    input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(indices), width), dtype=torch.long)
    for row, (ids, mask) in enumerate(zip(rows["input_ids"], rows["attention_mask"], strict=True)):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(mask)] = torch.tensor(mask)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention.to(device),
        "labels": torch.tensor(rows["label"], dtype=torch.long).to(device),
        "texts": list(rows["text"]),
        "indices": torch.tensor(list(indices), dtype=torch.long).to(device),
    }


def default_target_modules(model: torch.nn.Module) -> list[str]:
    """LoRA targets per architecture: q_proj/v_proj (BART), query/value (BERT), q_lin/v_lin."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    for pair in (["q_proj", "v_proj"], ["query", "value"], ["q_lin", "v_lin"], ["q", "v"]):
        if set(pair) <= names:
            return pair
    linear = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )
    if not linear:
        raise ValueError("no linear layers to adapt in this model")
    return linear


def setup_lora_model(
    model: torch.nn.Module, config: TrainingConfig, layers: Sequence[int] | None = None
) -> Any:
    """Wrap ``model`` in a peft LoRA model (r, alpha, dropout 0.1, bias none).

    ``layers``: adapt only these encoder blocks (``...layer.<i>...``); all by default.
    """
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        bias="none",
        target_modules=config.target_modules or default_target_modules(model),
        layers_to_transform=list(layers) if layers is not None else None,
        layers_pattern="layer" if layers is not None else None,
    )
    return get_peft_model(model, lora_config)


def peft_fields_of(peft_model: Any) -> dict[str, Any]:
    """The JSON-ready peft LoRA config (what adapter_config.json holds)."""
    config = peft_model.peft_config["default"].to_dict()
    clean: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, set):
            value = sorted(value)
        if hasattr(value, "value"):  # enums
            value = value.value
        try:
            import json

            json.dumps(value)
        except TypeError:
            continue
        clean[key] = value
    return clean


class _Timer:
    """ETA from the mean step time so far."""

    def __init__(self, total_steps: int) -> None:
        self.started = time.perf_counter()
        self.total_steps = total_steps

    def eta(self, step: int) -> float | None:
        if step <= 0:
            return None
        elapsed = time.perf_counter() - self.started
        return max(0.0, elapsed / step * (self.total_steps - step))


def train(
    train_examples: Sequence[dict[str, Any]],
    val_examples: Sequence[dict[str, Any]],
    categories: Sequence[CategorySpec],
    base_model: str,
    kind: str,
    config: TrainingConfig,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[TrainedAdapter, Any]:
    """Train per ``config.method``; return the adapter and the tokenizer used.

    ``*_examples`` are dicts with ``text`` and ``label``; every label must be a
    category name. Raises ``TrainingCancelled`` when ``should_cancel`` says so.
    """
    torch.manual_seed(config.seed)
    labels = [category.name for category in categories]
    unknown = sorted({e["label"] for e in [*train_examples, *val_examples]} - set(labels))
    if unknown:
        raise ValueError(f"examples use labels that are not categories: {unknown}")
    progress = progress or _no_progress
    should_cancel = should_cancel or _never_cancel
    if kind not in (EMBEDDING, NLI):
        raise ValueError(f"unknown model kind {kind!r}")
    device = devices.resolve_device(config.device)
    devices.reset_peak_memory(device)
    trainer: _BaseTrainer | None = None
    try:
        trainer_class = _EmbeddingTrainer if kind == EMBEDDING else _NLITrainer
        trainer = trainer_class(base_model, categories, config, device)
        adapter = trainer.fit(train_examples, val_examples, progress, should_cancel)
        tokenizer = trainer.tokenizer
    finally:
        # Drop every model reference before handing cached GPU blocks back.
        del trainer
        devices.free_device_memory(device)
    adapter.history.update(device=device, peak_gpu_memory_mb=devices.peak_memory_mb(device))
    return adapter, tokenizer


class _BaseTrainer:
    """The shared epoch loop: batches, early stopping, best state, progress, cancel."""

    kind = ""

    def __init__(
        self,
        base_model: str,
        categories: Sequence[CategorySpec],
        config: TrainingConfig,
        device: str = "cpu",
    ):
        self.base_model = base_model
        self.categories = list(categories)
        self.labels = [category.name for category in categories]
        self.config = config
        self.device = device
        self.tokenizer: Any = None

    # Subclasses implement these.
    def trainable_state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def batch_loss(self, batch: dict[str, torch.Tensor], training: bool) -> torch.Tensor:
        raise NotImplementedError

    def export(self, history: dict[str, Any]) -> TrainedAdapter:
        raise NotImplementedError

    def parameter_groups(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def set_mode(self, training: bool) -> None:
        raise NotImplementedError

    def steps_per_epoch(self, size: int) -> int:
        return max(1, math.ceil(size / self.config.batch_size))

    # Batching: fixed batch_size on CPU (unchanged results), token budget on CUDA.
    def cost_multiplier(self) -> int:
        """Sequences the model runs per text (NLI: one per category)."""
        return 1

    def token_lengths(self, dataset: Any) -> list[int]:
        """Padded length each text costs in a batch."""
        return [len(ids) for ids in dataset["input_ids"]]

    def epoch_batches(
        self, dataset: Any, epoch: int, generator: torch.Generator
    ) -> list[list[int]]:
        if not devices.gpu_recipe(self.device):
            order = torch.randperm(len(dataset), generator=generator).tolist()
            size = self.config.batch_size
            return [order[start : start + size] for start in range(0, len(order), size)]
        return devices.token_budget_batches(
            self.token_lengths(dataset),
            self.config.max_batch_tokens,
            seed=self.config.seed * 1000 + epoch,
            cost_multiplier=self.cost_multiplier(),
        )

    def eval_batches(self, dataset: Any) -> list[list[int]]:
        """In-order chunks of 64 on CPU; larger token-budget batches on CUDA (no gradients)."""
        if not devices.gpu_recipe(self.device):
            return [
                list(range(start, min(len(dataset), start + 64)))
                for start in range(0, len(dataset), 64)
            ]
        return devices.token_budget_batches(
            self.token_lengths(dataset),
            4 * self.config.max_batch_tokens,
            seed=0,
            cost_multiplier=self.cost_multiplier(),
        )

    def collate(self, dataset: Any, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """One batch of ``dataset`` on the training device."""
        return _collate(dataset, indices, pad_id, self.device)

    def _label_ids(self, examples: Sequence[dict[str, Any]]) -> list[int]:
        return [self.labels.index(example["label"]) for example in examples]

    def fit(
        self,
        train_examples: Sequence[dict[str, Any]],
        val_examples: Sequence[dict[str, Any]],
        progress: ProgressCallback,
        should_cancel: Callable[[], bool],
    ) -> TrainedAdapter:
        config = self.config
        pad_id = self.tokenizer.pad_token_id or 0
        train_set = prepare_dataset(
            [e["text"] for e in train_examples],
            self._label_ids(train_examples),
            self.tokenizer,
            config.max_length,
        )
        val_set = (
            prepare_dataset(
                [e["text"] for e in val_examples],
                self._label_ids(val_examples),
                self.tokenizer,
                config.max_length,
            )
            if val_examples
            else None
        )
        self.val_set = val_set
        self.before_training(train_set, pad_id)
        optimizer = torch.optim.AdamW(self.parameter_groups(), weight_decay=0.0)
        generator = torch.Generator().manual_seed(config.seed)
        if not devices.gpu_recipe(self.device):
            steps_per_epoch = self.steps_per_epoch(len(train_set))
        else:
            steps_per_epoch = len(self.epoch_batches(train_set, 1, generator))
        total_steps = steps_per_epoch * config.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / max(1, total_steps // 10))
        )
        timer = _Timer(total_steps)
        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
        best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
        step = 0
        started = time.perf_counter()
        progress("training", 0, total_steps, 0, None, None)
        for epoch in range(1, config.epochs + 1):
            self.on_epoch_start(train_set, pad_id, epoch)
            self.set_mode(True)
            losses = []
            for indices in self.epoch_batches(train_set, epoch, generator):
                if should_cancel():
                    raise TrainingCancelled("training was cancelled")
                batch = self.collate(train_set, indices, pad_id)
                loss = self.batch_loss(batch, training=True)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                losses.append(float(loss.detach()))
                total_steps = max(total_steps, step)
                progress("training", step, total_steps, epoch, losses[-1], timer.eta(step))
            history["train_loss"].append(sum(losses) / len(losses))
            if val_set is None:
                best_state, best_epoch = None, epoch
                continue
            val_loss, val_accuracy = self.evaluate_loss(val_set, pad_id)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
            logger.info(
                "epoch=%d train_loss=%.4f val_loss=%.4f val_accuracy=%.3f",
                epoch,
                history["train_loss"][-1],
                val_loss,
                val_accuracy,
            )
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, best_epoch, stale = (
                    val_loss,
                    self.trainable_state(),
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= config.patience:
                    logger.info("early stop at epoch=%d best_epoch=%d", epoch, best_epoch)
                    break
        if best_state is not None:
            self.load_state(best_state)
        history.update(
            best_epoch=best_epoch,
            epochs_run=len(history["train_loss"]),
            steps=step,
            train_seconds=round(time.perf_counter() - started, 3),
        )
        progress("training", total_steps, total_steps, best_epoch, None, 0.0)
        return self.export(history)

    def before_training(self, train_set: Any, pad_id: int) -> None:
        return None

    def on_epoch_start(self, train_set: Any, pad_id: int, epoch: int) -> None:
        return None

    def evaluate_loss(self, dataset: Any, pad_id: int) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``dataset`` (no gradients)."""
        self.set_mode(False)
        total, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for indices in self.eval_batches(dataset):
                batch = self.collate(dataset, indices, pad_id)
                logits = self.logits(batch)
                total += float(functional.cross_entropy(logits, batch["labels"], reduction="sum"))
                correct += int((logits.argmax(dim=1) == batch["labels"]).sum())
                count += len(batch["labels"])
        return total / max(1, count), correct / max(1, count)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def manifest(self, method: str, max_length: int) -> AdapterManifest:
        return AdapterManifest(
            base_model=model_identity(self.base_model),
            kind=self.kind,
            method=method,
            labels=list(self.labels),
            descriptions={c.name: c.description for c in self.categories},
            hypothesis_template=self.config.hypothesis_template if self.kind == NLI else None,
            max_length=max_length,
        )


def _top_blocks(encoder: torch.nn.Module) -> list[int] | None:
    """Indices of the encoder blocks LoRA adapts (RECIPE's top N), None for all."""
    blocks = encoder_blocks(encoder)
    top = RECIPE["lora_top_layers"]
    if blocks is None or not top or top >= len(blocks):
        return None
    return list(range(len(blocks) - top, len(blocks)))


class _EmbeddingTrainer(_BaseTrainer):
    """Description + soft-nearest-example scorer; LoRA on the encoder for method ``lora``.

    Training scores each text against the descriptions and against every other
    training example (its own embedding masked out): a leave-one-out nearest
    neighbour objective that pulls same-category texts together and pushes the
    others away, like SetFit's contrastive pairs, but on exactly the scorer that
    serves predictions. Examples outside the batch come from a bank refreshed
    every epoch; in-batch examples carry gradients.
    """

    kind = EMBEDDING

    def __init__(
        self,
        base_model: str,
        categories: Sequence[CategorySpec],
        config: TrainingConfig,
        device: str = "cpu",
    ):
        super().__init__(base_model, categories, config, device)
        from shared.classifier.embedding import load_encoder

        self.tokenizer, encoder = load_encoder(base_model)
        # Frozen weights in bf16 on CUDA; peft keeps the LoRA weights in fp32.
        encoder.to(device=device, dtype=devices.frozen_dtype(device))
        self.use_lora = config.method == "lora"
        # LoRA on the top blocks only; the frozen bottom blocks run once per text
        # (prefix cache) instead of every epoch, in training and in evaluation.
        adapted = _top_blocks(encoder) if self.use_lora else None
        self.frozen_layers = adapted[0] if adapted else 0
        self.encoder = setup_lora_model(encoder, config, adapted) if self.use_lora else encoder
        self.body = self.encoder.get_base_model() if self.use_lora else self.encoder
        if not self.use_lora:
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(False)
        self._prefix: dict[int, tuple[Any, torch.Tensor]] = {}
        self.descriptions = dict(
            self.tokenizer(
                [c.text for c in self.categories],
                padding=True,
                truncation=True,
                max_length=config.max_length,
                return_tensors="pt",
            ).to(device)
        )
        if self.frozen_layers:
            with torch.no_grad():
                self.body.eval()
                self.descriptions["prefix"] = prefix_states(
                    self.body, self.descriptions, self.frozen_layers
                )
        self.logit_scale = torch.nn.Parameter(torch.tensor(ZERO_SHOT_LOGIT_SCALE, device=device))
        self.log_temperature = torch.nn.Parameter(
            torch.tensor(math.log(RECIPE["temperature"]), device=device)
        )
        self.description_weight = torch.nn.Parameter(
            torch.tensor(float(RECIPE["description_weight"]), device=device)
        )
        self.bank = torch.zeros(0, device=device)
        self.bank_classes = torch.zeros(0, dtype=torch.long, device=device)
        self.supcon_weight = 0.0

    def _embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "prefix" in batch:
            return embed_from_prefix(
                self.body, batch["prefix"], batch["attention_mask"], self.frozen_layers
            )
        return embed(self.encoder, batch)

    def _cache_prefix(self, dataset: Any, pad_id: int) -> None:
        """Run the frozen bottom blocks once over ``dataset`` (if the cache stays small)."""
        if not self.frozen_layers or dataset is None or not len(dataset):
            return
        width = max(len(ids) for ids in dataset["input_ids"])
        hidden = self.body.config.hidden_size
        size_mb = len(dataset) * width * hidden * self.body.dtype.itemsize / 2**20
        if size_mb > PREFIX_CACHE_LIMIT_MB:
            logger.info("prefix cache skipped: %.0f MB over the limit", size_mb)
            return
        chunks = []
        with torch.no_grad():
            self.body.eval()
            for start in range(0, len(dataset), 64):
                indices = list(range(start, min(len(dataset), start + 64)))
                batch = _collate(dataset, indices, pad_id, self.device)
                states = prefix_states(self.body, batch, self.frozen_layers)
                chunks.append(functional.pad(states, (0, 0, 0, width - states.shape[1])))
        self._prefix[id(dataset)] = (dataset, torch.cat(chunks))

    def collate(self, dataset: Any, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate(dataset, indices, pad_id)
        cached = self._prefix.get(id(dataset))
        if cached is not None:
            width = batch["input_ids"].shape[1]
            rows = torch.tensor(list(indices), dtype=torch.long, device=self.device)
            batch["prefix"] = cached[1][rows, :width]
        return batch

    def _embed_all(self, dataset: Any, pad_id: int) -> torch.Tensor:
        """Embeddings of a whole dataset, no gradients."""
        with torch.no_grad():
            self.encoder.eval()
            batches = self.eval_batches(dataset)
            embeddings = torch.cat(
                [self._embed(self.collate(dataset, indices, pad_id)) for indices in batches]
            )
            if not devices.gpu_recipe(self.device):
                return embeddings  # in-order chunks
            order = torch.tensor([index for indices in batches for index in indices])
            result = torch.empty_like(embeddings)
            result[order.to(self.device)] = embeddings
            return result

    def before_training(self, train_set: Any, pad_id: int) -> None:
        self.train_set, self.pad_id = train_set, pad_id
        self._cache_prefix(train_set, pad_id)
        self._cache_prefix(self.val_set, pad_id)
        self.bank = self._embed_all(train_set, pad_id)
        self.bank_classes = torch.tensor(train_set["label"], dtype=torch.long, device=self.device)
        self.supcon_weight = supcon_weight(train_set["label"])

    def on_epoch_start(self, train_set: Any, pad_id: int, epoch: int) -> None:
        if epoch > 1 and self.use_lora:
            self.bank = self._embed_all(train_set, pad_id)

    def _scores(
        self,
        embeddings: torch.Tensor,
        descriptions: torch.Tensor,
        exemplars: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        from shared.classifier.embedding import exemplar_scores

        return self.logit_scale.exp() * exemplar_scores(
            embeddings,
            descriptions,
            exemplars,
            self.bank_classes,
            self.log_temperature.exp(),
            self.description_weight,
            exclude,
        )

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._scores(self._embed(batch), self._embed(self.descriptions), self.bank)

    def batch_loss(self, batch: dict[str, torch.Tensor], training: bool) -> torch.Tensor:
        embeddings = self._embed(batch)
        descriptions = self._embed(self.descriptions)
        indices = batch["indices"]
        exemplars = self.bank.clone()
        exemplars[indices] = embeddings
        exclude = torch.zeros(
            len(indices), exemplars.shape[0], dtype=torch.bool, device=self.device
        )
        exclude[torch.arange(len(indices)), indices] = True
        logits = self._scores(embeddings, descriptions, exemplars, exclude)
        loss = functional.cross_entropy(logits, batch["labels"])
        weight = self.supcon_weight
        if weight > 0:
            loss = loss + weight * _supervised_contrastive(
                embeddings, exemplars, batch["labels"], self.bank_classes, exclude
            )
        return loss

    def set_mode(self, training: bool) -> None:
        self.encoder.train(training)

    def _scoring_parameters(self) -> list[torch.nn.Parameter]:
        parameters = [self.logit_scale]
        if not self.use_lora or RECIPE["learn_scoring"]:
            parameters += [self.log_temperature, self.description_weight]
        return parameters

    def parameter_groups(self) -> list[dict[str, Any]]:
        head_lr = self.config.learning_rate * self.config.head_lr_multiplier
        groups = [{"params": self._scoring_parameters(), "lr": head_lr}]
        if self.use_lora:
            adapter = [p for p in self.encoder.parameters() if p.requires_grad]
            groups.append(
                {
                    "params": adapter,
                    "lr": self.config.learning_rate
                    * (self.config.lora_lr_multiplier or RECIPE["lora_lr_multiplier"]),
                }
            )
        return groups

    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = {
            "__logit_scale": self.logit_scale.detach().clone(),
            "__log_temperature": self.log_temperature.detach().clone(),
            "__description_weight": self.description_weight.detach().clone(),
        }
        if self.use_lora:
            state.update(
                {
                    name: value.detach().clone()
                    for name, value in self.encoder.named_parameters()
                    if value.requires_grad
                }
            )
        return state

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.logit_scale.copy_(state["__logit_scale"])
            self.log_temperature.copy_(state["__log_temperature"])
            self.description_weight.copy_(state["__description_weight"])
            own = dict(self.encoder.named_parameters())
            for name, value in state.items():
                if name in own:
                    own[name].copy_(value)

    def fit(
        self,
        train_examples: Sequence[dict[str, Any]],
        val_examples: Sequence[dict[str, Any]],
        progress: ProgressCallback,
        should_cancel: Callable[[], bool],
    ) -> TrainedAdapter:
        if self.use_lora:
            return super().fit(train_examples, val_examples, progress, should_cancel)
        return self._fit_head(train_examples, val_examples, progress, should_cancel)

    def _fit_head(
        self,
        train_examples: Sequence[dict[str, Any]],
        val_examples: Sequence[dict[str, Any]],
        progress: ProgressCallback,
        should_cancel: Callable[[], bool],
    ) -> TrainedAdapter:
        """Frozen encoder: learn scale, temperature and description weight on cached embeddings."""
        started = time.perf_counter()
        config = self.config
        pad_id = self.tokenizer.pad_token_id or 0
        train_set = prepare_dataset(
            [e["text"] for e in train_examples],
            self._label_ids(train_examples),
            self.tokenizer,
            config.max_length,
        )
        self.val_set = (
            prepare_dataset(
                [e["text"] for e in val_examples],
                self._label_ids(val_examples),
                self.tokenizer,
                config.max_length,
            )
            if val_examples
            else None
        )
        self.before_training(train_set, pad_id)
        train_y = self.bank_classes
        val_x = self._embed_all(self.val_set, pad_id) if self.val_set is not None else None
        val_y = (
            torch.tensor(self.val_set["label"], device=self.device)
            if self.val_set is not None
            else None
        )
        with torch.no_grad():
            descriptions = self._embed(self.descriptions)
        exclude = torch.eye(len(train_y), dtype=torch.bool, device=self.device)
        optimizer = torch.optim.Adam(self.parameter_groups())
        total_steps = HEAD_STEPS_PER_EPOCH * config.epochs
        timer = _Timer(total_steps)
        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
        best_loss, best_state, best_epoch, stale, step = math.inf, None, 0, 0, 0
        for epoch in range(1, config.epochs + 1):
            if should_cancel():
                raise TrainingCancelled("training was cancelled")
            for _ in range(HEAD_STEPS_PER_EPOCH):
                loss = functional.cross_entropy(
                    self._scores(self.bank, descriptions, self.bank, exclude), train_y
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
            history["train_loss"].append(float(loss.detach()))
            progress("training", step, total_steps, epoch, float(loss.detach()), timer.eta(step))
            if val_x is None:
                best_epoch = epoch
                continue
            with torch.no_grad():
                val_scores = self._scores(val_x, descriptions, self.bank)
                val_loss = float(functional.cross_entropy(val_scores, val_y))
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(
                    float((val_scores.argmax(1) == val_y).float().mean())
                )
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, best_epoch, stale = (
                    val_loss,
                    self.trainable_state(),
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best_state is not None:
            self.load_state(best_state)
        history.update(
            best_epoch=best_epoch,
            epochs_run=len(history["train_loss"]),
            steps=step,
            train_seconds=round(time.perf_counter() - started, 3),
        )
        progress("training", total_steps, total_steps, best_epoch, None, 0.0)
        return self.export(history)

    def export(self, history: dict[str, Any]) -> TrainedAdapter:
        """Adapter + every labelled example (train and validation) as exemplars."""
        exemplars = [self._embed_all(self.train_set, self.pad_id)]
        classes = [torch.tensor(self.train_set["label"], dtype=torch.long)]
        if self.val_set is not None and len(self.val_set):
            exemplars.append(self._embed_all(self.val_set, self.pad_id))
            classes.append(torch.tensor(self.val_set["label"], dtype=torch.long))
        tensors = {
            f"{HEAD_PREFIX}exemplars": torch.cat(exemplars).float().cpu().contiguous(),
            f"{HEAD_PREFIX}exemplar_classes": torch.cat(classes).contiguous(),
            f"{HEAD_PREFIX}logit_scale": self.logit_scale.detach().cpu().clone().reshape(()),
            f"{HEAD_PREFIX}temperature": self.log_temperature.detach().cpu().exp().reshape(()),
            f"{HEAD_PREFIX}description_weight": self.description_weight.detach()
            .cpu()
            .clone()
            .reshape(()),
        }
        peft_fields: dict[str, Any] = {"peft_type": None}
        if self.use_lora:
            from peft import get_peft_model_state_dict

            for name, value in get_peft_model_state_dict(self.encoder).items():
                tensors[name] = value.detach().float().cpu().clone().contiguous()
            peft_fields = peft_fields_of(self.encoder)
        peft_fields["base_model_name_or_path"] = model_identity(self.base_model)
        return TrainedAdapter(
            tensors=tensors,
            peft_fields=peft_fields,
            manifest=self.manifest(self.config.method, self.config.max_length),
            history=history,
        )


def supcon_weight(labels: Sequence[int]) -> float:
    """The recipe's contrastive weight for a training set (fades with examples per category)."""
    if not labels:
        return 0.0
    per_category = len(labels) / len(set(labels))
    full = float(RECIPE["supcon_full_weight_per_category"])
    return float(RECIPE["supcon_weight"]) * min(1.0, (full / per_category) ** 2)


def _supervised_contrastive(
    embeddings: torch.Tensor,
    exemplars: torch.Tensor,
    labels: torch.Tensor,
    exemplar_classes: torch.Tensor,
    exclude: torch.Tensor,
) -> torch.Tensor:
    """SupCon: each text against every other exemplar, same-class ones as positives."""
    similarity = (embeddings @ exemplars.T / SUPCON_TEMPERATURE).masked_fill(exclude, float("-inf"))
    log_probability = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (labels[:, None] == exemplar_classes[None, :]) & ~exclude
    log_probability = log_probability.masked_fill(~positives, 0.0)
    return (-(log_probability.sum(1)) / positives.sum(1).clamp(min=1)).mean()


def _keep_head_in_fp32(model: torch.nn.Module, head_names: Sequence[str]) -> None:
    """Trainable head modules in fp32 beside a bf16 body: cast their inputs up."""
    prefixes = {name.rsplit(".", 2)[0] for name in head_names}
    for prefix in prefixes:
        module = model.get_submodule(prefix)
        module.float()
        module.register_forward_pre_hook(
            lambda _module, args: tuple(
                arg.float() if torch.is_tensor(arg) and arg.is_floating_point() else arg
                for arg in args
            )
        )


class _NLITrainer(_BaseTrainer):
    """Cross-entropy over the entailment logits of all categories for each text."""

    kind = NLI

    def __init__(
        self,
        base_model: str,
        categories: Sequence[CategorySpec],
        config: TrainingConfig,
        device: str = "cpu",
    ):
        super().__init__(base_model, categories, config, device)
        from shared.classifier.nli import entailment_index, load_nli_model

        self.tokenizer, model = load_nli_model(base_model)
        # Frozen weights in bf16 on CUDA; LoRA (peft) and a trained head stay fp32.
        model.to(device=device, dtype=devices.frozen_dtype(device))
        self.entail = entailment_index(model.config)
        self.hypotheses = [config.hypothesis_template.format(c.text) for c in self.categories]
        if config.method == "lora":
            self.model = setup_lora_model(model, config)
            self.head_names: list[str] = []
        else:
            self.model = model
            self.head_names = [
                name
                for name, _ in model.named_parameters()
                if "classification_head" in name or name.startswith("classifier")
            ]
            if not self.head_names:
                raise ValueError("this NLI model has no classification head to train")
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name in self.head_names)
            if devices.gpu_recipe(device):
                _keep_head_in_fp32(model, self.head_names)
        self.texts: list[str] = []
        self.hypothesis_tokens = max(
            len(ids) for ids in self.tokenizer(self.hypotheses, truncation=True)["input_ids"]
        )

    def cost_multiplier(self) -> int:
        return len(self.hypotheses)

    def token_lengths(self, dataset: Any) -> list[int]:
        return [len(ids) + self.hypothesis_tokens for ids in dataset["input_ids"]]

    def _pair_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from shared.classifier.nli import entailment_logits, pair_batch

        pairs = pair_batch(
            self.tokenizer, batch["texts"], self.hypotheses, self.config.max_length + 32
        )
        return entailment_logits(self.model, pairs, self.entail, len(self.hypotheses))

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._pair_logits(batch)

    def batch_loss(self, batch: dict[str, torch.Tensor], training: bool) -> torch.Tensor:
        return functional.cross_entropy(self._pair_logits(batch), batch["labels"])

    def set_mode(self, training: bool) -> None:
        self.model.train(training)

    def parameter_groups(self) -> list[dict[str, Any]]:
        multiplier = (
            (self.config.lora_lr_multiplier or NLI_LORA_LR_MULTIPLIER)
            if self.config.method == "lora"
            else self.config.head_lr_multiplier / 5
        )
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        return [{"params": trainable, "lr": self.config.learning_rate * multiplier}]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {
            name: value.detach().clone()
            for name, value in self.model.named_parameters()
            if value.requires_grad
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(value)

    def export(self, history: dict[str, Any]) -> TrainedAdapter:
        tensors: dict[str, torch.Tensor] = {}
        if self.config.method == "lora":
            from peft import get_peft_model_state_dict

            for name, value in get_peft_model_state_dict(self.model).items():
                tensors[name] = value.detach().float().cpu().clone().contiguous()
            peft_fields = peft_fields_of(self.model)
        else:
            own = dict(self.model.named_parameters())
            for name in self.head_names:
                tensors[f"{HEAD_PREFIX}params.{name}"] = copy.deepcopy(
                    own[name].detach().float().cpu()
                ).contiguous()
            peft_fields = {"peft_type": None}
        peft_fields["base_model_name_or_path"] = model_identity(self.base_model)
        return TrainedAdapter(
            tensors=tensors,
            peft_fields=peft_fields,
            manifest=self.manifest(self.config.method, self.config.max_length),
            history=history,
        )
