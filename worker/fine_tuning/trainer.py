"""Few-shot fine-tuning: the shared training loop and the ``train`` entry point.

``train`` picks the trainer for the model kind:

- embedding models (``embedding_trainer.py``): ``lora`` adapts the top encoder
  block through the description + soft-nearest-example scorer that serves
  predictions; ``head`` fits that scorer's few parameters on frozen embeddings;
- NLI models (``nli_trainer.py``): ``lora`` adapts ``q_proj``/``v_proj`` with
  cross-entropy over the entailment logits of every category; ``head``
  retrains the model's classification head.

Here: tokenised datasets (Hugging Face ``datasets``), batching (fixed size on
CPU, token budget on CUDA), peft LoRA setup, and ``BaseTrainer``'s epoch loop
with early stopping on validation loss, the best epoch kept, progress with ETA
and a cooperative cancel flag.

Over 400 lines: the epoch loop, early stopping and the LoRA setup are one lifecycle that
both trainers (embedding, NLI) subclass; they change together.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as functional

from shared.classifier import EMBEDDING, NLI, CategorySpec, model_identity
from shared.classifier.artifact import AdapterManifest
from shared.training_config import TrainingConfig
from worker.fine_tuning import devices

logger = logging.getLogger(__name__)


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
    trainer: BaseTrainer | None = None
    try:
        if kind == EMBEDDING:
            from worker.fine_tuning.embedding_trainer import EmbeddingTrainer as trainer_class
        else:
            from worker.fine_tuning.nli_trainer import NLITrainer as trainer_class
        trainer = trainer_class(base_model, categories, config, device)
        adapter = trainer.fit(train_examples, val_examples, progress, should_cancel)
        tokenizer = trainer.tokenizer
    finally:
        # Drop every model reference before handing cached GPU blocks back.
        del trainer
        devices.free_device_memory(device)
    adapter.history.update(device=device, peak_gpu_memory_mb=devices.peak_memory_mb(device))
    return adapter, tokenizer


class EarlyStopping:
    """Early stopping on validation loss; remembers the best epoch's trainable state."""

    def __init__(self, trainer: BaseTrainer, patience: int) -> None:
        self.trainer = trainer
        self.patience = patience
        self.best_loss, self.best_state, self.best_epoch, self.stale = math.inf, None, 0, 0

    def without_validation(self, epoch: int) -> None:
        """No validation set: the last epoch is the one kept."""
        self.best_state, self.best_epoch = None, epoch

    def should_stop(self, epoch: int, val_loss: float) -> bool:
        if val_loss < self.best_loss - 1e-4:
            self.best_loss, self.best_epoch, self.stale = val_loss, epoch, 0
            self.best_state = self.trainer.trainable_state()
            return False
        self.stale += 1
        if self.stale >= self.patience:
            logger.info("early stop at epoch=%d best_epoch=%d", epoch, self.best_epoch)
            return True
        return False

    def finish(
        self,
        history: dict[str, Any],
        steps: int,
        started: float,
        progress: ProgressCallback,
        total_steps: int,
    ) -> TrainedAdapter:
        """Restore the best epoch, complete the history, export the adapter."""
        if self.best_state is not None:
            self.trainer.load_state(self.best_state)
        history.update(
            best_epoch=self.best_epoch,
            epochs_run=len(history["train_loss"]),
            steps=steps,
            train_seconds=round(time.perf_counter() - started, 3),
        )
        progress("training", total_steps, total_steps, self.best_epoch, None, 0.0)
        return self.trainer.export(history)


class BaseTrainer:
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
        # Token cap of the tokenised train and validation sets.
        self.max_length = config.max_length

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

    def batch_size(self, size: int) -> int:
        """Texts per CPU batch for a training set of ``size`` texts."""
        return self.config.batch_size

    def batches_per_epoch(self, size: int) -> int:
        return max(1, math.ceil(size / self.batch_size(size)))

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
            size = self.batch_size(len(dataset))
            return [order[start : start + size] for start in range(0, len(order), size)]
        return devices.token_budget_batches(
            self.token_lengths(dataset),
            self.config.max_batch_tokens,
            seed=self.config.seed * 1000 + epoch,
            cost_multiplier=self.cost_multiplier(),
        )

    def eval_batches(self, dataset: Any) -> list[list[int]]:
        """Batches of similar length (little padding), no gradients: chunks of 64 on CPU,
        larger token-budget batches on CUDA. Callers put the results back in order."""
        if not devices.gpu_recipe(self.device):
            lengths = self.token_lengths(dataset)
            order = sorted(range(len(dataset)), key=lambda index: lengths[index])
            return [order[start : start + 64] for start in range(0, len(order), 64)]
        return devices.token_budget_batches(
            self.token_lengths(dataset),
            4 * self.config.max_batch_tokens,
            seed=0,
            cost_multiplier=self.cost_multiplier(),
        )

    def collate(self, dataset: Any, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """One batch of ``dataset`` on the training device."""
        return _collate(dataset, indices, pad_id, self.device)

    def datasets(
        self, train_examples: Sequence[dict[str, Any]], val_examples: Sequence[dict[str, Any]]
    ) -> tuple[Any, Any]:
        """Tokenised train and validation sets (validation None when there is none)."""

        def tokenised(examples: Sequence[dict[str, Any]]) -> Any:
            return prepare_dataset(
                [example["text"] for example in examples],
                self._label_ids(examples),
                self.tokenizer,
                self.max_length,
            )

        return tokenised(train_examples), (tokenised(val_examples) if val_examples else None)

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
        train_set, val_set = self.datasets(train_examples, val_examples)
        self.val_set = val_set
        self.before_training(train_set, pad_id)
        optimizer = torch.optim.AdamW(self.parameter_groups(), weight_decay=0.0)
        generator = torch.Generator().manual_seed(config.seed)
        if not devices.gpu_recipe(self.device):
            batches_per_epoch = self.batches_per_epoch(len(train_set))
        else:
            batches_per_epoch = len(self.epoch_batches(train_set, 1, generator))
        accumulation = config.gradient_accumulation_steps
        total_steps = math.ceil(batches_per_epoch / accumulation) * config.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / max(1, total_steps // 10))
        )
        timer = _Timer(total_steps)
        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
        stopping = EarlyStopping(self, config.patience)
        step = 0
        started = time.perf_counter()
        progress("training", 0, total_steps, 0, None, None)
        starting_loss = self.starting_point(pad_id, should_cancel)
        if starting_loss is not None:
            stopping.should_stop(0, starting_loss)  # epoch 0: kept unless an epoch beats it
            history["start_val_loss"] = starting_loss
        for epoch in range(1, config.epochs + 1):
            self.on_epoch_start(train_set, pad_id, epoch)
            self.set_mode(True)
            losses = []
            batches = self.epoch_batches(train_set, epoch, generator)
            # One optimizer step per group of ``accumulation`` batches; each batch's mean
            # loss is weighted by its share of the group's texts, so the step follows
            # the mean over the whole group, as one large batch would.
            for start in range(0, len(batches), accumulation):
                group = batches[start : start + accumulation]
                group_size = sum(len(indices) for indices in group)
                optimizer.zero_grad()
                group_loss = 0.0
                for indices in group:
                    if should_cancel():
                        raise TrainingCancelled("training was cancelled")
                    batch = self.collate(train_set, indices, pad_id)
                    loss = self.batch_loss(batch, training=True)
                    if len(group) > 1:
                        loss = loss * (len(indices) / group_size)
                    loss.backward()
                    group_loss += float(loss.detach())
                optimizer.step()
                scheduler.step()
                step += 1
                losses.append(group_loss)
                total_steps = max(total_steps, step)
                progress("training", step, total_steps, epoch, losses[-1], timer.eta(step))
            history["train_loss"].append(sum(losses) / len(losses))
            if val_set is None:
                stopping.without_validation(epoch)
                continue
            val_loss, val_accuracy = self.evaluate_loss(val_set, pad_id)
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
            if stopping.should_stop(epoch, val_loss):
                break
        return stopping.finish(history, step, started, progress, total_steps)

    def before_training(self, train_set: Any, pad_id: int) -> None:
        return None

    def starting_point(self, pad_id: int, should_cancel: Callable[[], bool]) -> float | None:
        """Prepare the state training starts from (after ``before_training``).

        Its validation loss, when returned, makes it a candidate (epoch 0) that an
        epoch must beat to be kept; None when there is no candidate.
        """
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
