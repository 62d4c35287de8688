"""Embedding models: a calibrated logistic head on the encoder (``head``, the default),
after LoRA on the encoder's top block, or every block with more data (``lora``).

Every run ends with ``export``: a logistic head with the descriptions as anchors and a
temperature fitted on cross-fitted logits (``worker.fine_tuning.linear_head``), on the
embeddings of every labelled text as the classifier embeds them. For ``lora`` that
temperature is at least the frozen encoder's: an adapter trained on the labelled texts
makes the folds' held-out texts look easier than new ones.

- ``head``: the encoder stays frozen; each labelled text is embedded once and the
  head is fitted (seconds).
- ``lora``: LoRA adapters on the top block of the encoder (``query``/``value`` for
  BERT-style models; on every block from 12 training texts per category on). The
  adapter is trained through a soft-nearest-exemplar scorer (the engine's scorer
  before the logistic head; ``shared.classifier.embedding.exemplar_scores``): a
  leave-one-out cross-entropy of each training text against the descriptions and all
  *other* training examples, plus a supervised contrastive term over the same pairs
  (temperature 0.1). That scorer's scale, temperature and description weight are
  fitted first on the frozen encoder, and that start counts as epoch 0: an adapter
  epoch must beat it on validation to be kept. The frozen blocks below the adapted
  one run once per text (a prefix cache), not once per epoch, and evaluation shares
  them between the base and the fine-tuned model.

Over 400 lines: the adapter's objective, its prefix cache and the export share the
trainer's state (encoder, token caches, label ids); split, each part would reach into
the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional

from shared.classifier import EMBEDDING, CategorySpec, model_identity
from shared.classifier.artifact import HEAD_PREFIX, MIDDLE_LAYER_FORMAT, TOKEN_BANK_FORMAT
from shared.classifier.embedding import (
    MAX_LENGTH,
    MiddleLayer,
    content_tokens,
    embed,
    embed_from_prefix,
    encoder_blocks,
    flattened,
    middle_block,
    prefix_states,
    token_match,
)
from shared.training_config import ALL_LAYERS_FROM_PER_CATEGORY, TrainingConfig
from worker.fine_tuning import devices
from worker.fine_tuning.trainer import (
    BaseTrainer,
    EarlyStopping,
    ProgressCallback,
    TrainedAdapter,
    TrainingCancelled,
    _collate,
    _Timer,
    peft_fields_of,
    prepare_dataset,
    setup_lora_model,
)

logger = logging.getLogger(__name__)

ZERO_SHOT_LOGIT_SCALE = math.log(20.0)
SUPCON_TEMPERATURE = 0.1
HEAD_STEPS_PER_EPOCH = 20
# lora's cross-entropy weighs every category the same (``balanced_weights``), as the
# head it ends with does (``linear_head.CLASS_WEIGHT``); with as many texts in every
# category it changes nothing (measured on uneven sets: bench/README.md).
CLASS_BALANCED = True
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
    # lora with more data: from this many training texts per category on, every block
    # adapts (no prefix cache) at this learning-rate multiplier. With 7 per category the
    # top block is as good and 3-4 times faster; with 14 and 27 the whole encoder gained
    # 0.4-1.0 points on banking (bench/README.md).
    "all_layers_from_per_category": ALL_LAYERS_FROM_PER_CATEGORY,
    "all_layers_lr_multiplier": 5.0,
    # head: the logistic head may also read the pooled output of the encoder's middle
    # block (block 3 of all-MiniLM-L6-v2's 6), normalised and weighted 0.5, beside the
    # last layer's; each run fits it with and without and keeps the lower cross-fitted
    # loss. On the five tasks, 3 seeds (bench/middle_layer.py), it gained 0.5, 0.5 and
    # 0.4 points on the mean at 4, 8 and 16 per category (hwu up to 2.1, the 64 hwu
    # intents up to 1.3), lost at most 0.1 on any task, and left the calibration error
    # as it was. Blocks 2 to 4 at weights 0.5 to 1 all came within 0.2 points of it on
    # the mean (0.7 gained 0.1 more but lost 0.7 on the banking intents at 4).
    "middle_layer_fraction": 0.5,
    "middle_layer_weight": 0.5,  # None: the last layer alone
    # Both methods: the head also matches a text's tokens with each category's labelled
    # tokens (``shared.classifier.embedding.TokenBank``), weighted by a fit on held-out
    # texts that leaves the head alone where the match adds nothing. On the five tasks,
    # 3 seeds, the mean rose 0.0 / 0.4 / 1.1 points at 4 / 8 / 16 per category, no task
    # lost more than 0.04, and the calibration error fell a little (bench/README.md,
    # "Word by word").
    "token_match": True,
    # The labelled texts of a category whose tokens go into the bank (a seeded sample
    # beyond it): every process matches a text with every bank token, so the bank's size
    # is serving time (at 1 thread, +1 ms a text with 1,100 tokens, +9 ms with 17,000).
    # All the gains above were measured at 32 or fewer texts a category.
    "token_bank_texts_per_category": 32,
    # lora: fit the scoring parameters on the frozen encoder first (method head); the
    # adapter starts from there and an epoch is kept only if it beats that state on
    # validation. Without it, lora lost a point to head on the intents task.
    "head_first": True,
    # lora on the CPU: batches grow with the training set so that an epoch takes at most
    # this many optimizer steps. The recipe was tuned at 8 per category (4-5 steps an
    # epoch, left as they are); at 64 per category, 16-text batches made 30+ steps an
    # epoch and the adapter lost to head (bench/README.md).
    "steps_per_epoch": 8,
    # ... but a CPU batch holds at most this many texts, so memory stops growing with the
    # data: backprop through every block costs about 4 MB a text (1.29 GB peak with
    # 55-text batches at 64 per category on banking, bench/README.md). Larger sets take
    # more than 8 steps an epoch.
    "max_cpu_batch": 64,
}
# Prefix states of the frozen bottom blocks are cached up to this size (else recomputed).
PREFIX_CACHE_LIMIT_MB = 512


def lora_block_indices(encoder: torch.nn.Module, per_category: float) -> list[int] | None:
    """Indices of the encoder blocks LoRA adapts for ``per_category`` training texts per
    category: RECIPE's top N for few examples, every block (None) for many. The same
    rule as ``shared.training_config.adapted_blocks``, which names it for estimates."""
    blocks = encoder_blocks(encoder)
    top = RECIPE["lora_top_layers"]
    if per_category >= RECIPE["all_layers_from_per_category"]:
        top = None
    if blocks is None or not top or top >= len(blocks):
        return None
    return list(range(len(blocks) - top, len(blocks)))


def texts_per_category(examples: Sequence[dict[str, Any]]) -> float:
    """Mean number of training texts per category that has any."""
    if not examples:
        return 0.0
    return len(examples) / len({example["label"] for example in examples})


class EmbeddingTrainer(BaseTrainer):
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
        # head: every text is embedded with the middle block's pool beside the last
        # layer's; ``export`` fits the head on both and on the last layer's part alone.
        self.middle: MiddleLayer | None = None
        self.reads_middle = False  # whether the exported head kept it
        # The token bank the exported head matches with (tokens, their rows), if kept.
        self.token_bank: tuple[torch.Tensor, torch.Tensor] | None = None
        self._held_out_matched: np.ndarray | None = None  # the token match of the fit
        if not self.use_lora:
            # Nothing trains through the encoder: embed as the classifier will.
            self.max_length = MAX_LENGTH
            block = middle_block(encoder, RECIPE["middle_layer_fraction"])
            # A weight of None: the last layer alone, as method lora reads it.
            if block is not None and encoder_blocks(encoder) and RECIPE["middle_layer_weight"]:
                self.middle = MiddleLayer(block, float(RECIPE["middle_layer_weight"]))
        # lora wraps the encoder once the training set is known (``setup_adapter``).
        self.encoder = self.body = encoder
        self.frozen_layers = 0
        self.adapter_lr_multiplier = 1.0
        if not self.use_lora:
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(False)
        self._prefix: dict[int, tuple[Any, torch.Tensor]] = {}
        self._frozen_embeddings: dict[int, tuple[Any, torch.Tensor]] = {}
        # head: each dataset's content tokens, captured in the same pass as its embeddings.
        self._frozen_tokens: dict[int, tuple[Any, list[torch.Tensor]]] = {}
        self.descriptions = dict(
            self.tokenizer(
                [c.text for c in self.categories],
                padding=True,
                truncation=True,
                max_length=MAX_LENGTH,  # as the classifier embeds them
                return_tensors="pt",
            ).to(device)
        )
        # The parts of the descriptions that list them, each an example of its category
        # beside the whole where the head's cross-fitted loss prefers it.
        from worker.fine_tuning.linear_head import description_facets

        facet_texts, self.facet_classes = description_facets([c.text for c in self.categories])
        self.facets = (
            dict(
                self.tokenizer(
                    facet_texts,
                    padding=True,
                    truncation=True,
                    max_length=MAX_LENGTH,
                    return_tensors="pt",
                ).to(device)
            )
            if facet_texts
            else None
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
        # Each category's weight in the cross-entropy (``balanced_weights``): set with
        # the training texts, None until then.
        self.class_weight: torch.Tensor | None = None
        self.supcon_weight = 0.0
        # lora: the head's multiplier on the frozen encoder, fitted before the adapter
        # moves (``before_training``); it caps the tuned head's (``export``).
        self.frozen_calibration: float | None = None
        self.frozen_label_issues: list[dict[str, Any]] | None = None

    def setup_adapter(self, per_category: float) -> None:
        """lora: wrap the encoder in LoRA for a training set of ``per_category`` texts per
        category. With few examples only the top block adapts: the frozen blocks below
        run once per text (prefix cache) instead of every epoch, in training and in
        evaluation. With many, every block adapts."""
        if not self.use_lora or self.encoder is not self.body:
            return  # head, or already wrapped
        adapted = lora_block_indices(self.body, per_category)
        self.frozen_layers = adapted[0] if adapted else 0
        self.adapter_lr_multiplier = float(
            self.config.lora_lr_multiplier
            or RECIPE["all_layers_lr_multiplier" if adapted is None else "lora_lr_multiplier"]
        )
        if adapted is None:
            devices.return_large_blocks_to_the_os()  # full backprop fragments the heap
        self.encoder = setup_lora_model(self.body, self.config, adapted)
        self.body = self.encoder.get_base_model()
        if self.frozen_layers:
            with torch.no_grad():
                self.body.eval()
                self.descriptions["prefix"] = prefix_states(
                    self.body, self.descriptions, self.frozen_layers
                )

    def batch_size(self, size: int) -> int:
        steps = RECIPE["steps_per_epoch"]
        if not self.use_lora or not steps:
            return self.config.batch_size
        grown = min(RECIPE["max_cpu_batch"], math.ceil(size / steps))
        return max(self.config.batch_size, grown)

    def _embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "prefix" in batch:
            return embed_from_prefix(
                self.body, batch["prefix"], batch["attention_mask"], self.frozen_layers
            )
        return embed(self.encoder, batch, self.middle)

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
        cache = torch.zeros(len(dataset), width, hidden, dtype=self.body.dtype, device=self.device)
        with torch.no_grad():
            self.body.eval()
            for indices in self.eval_batches(dataset):
                batch = _collate(dataset, indices, pad_id, self.device)
                states = prefix_states(self.body, batch, self.frozen_layers)
                cache[batch["indices"], : states.shape[1]] = states
        self._prefix[id(dataset)] = (dataset, cache)

    def collate(self, dataset: Any, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate(dataset, indices, pad_id)
        cached = self._prefix.get(id(dataset))
        if cached is not None:
            width = batch["input_ids"].shape[1]
            rows = torch.tensor(list(indices), dtype=torch.long, device=self.device)
            batch["prefix"] = cached[1][rows, :width]
        return batch

    def _embed_all(self, dataset: Any, pad_id: int) -> torch.Tensor:
        """Embeddings of a whole dataset, no gradients (once per dataset when frozen)."""
        frozen = self._frozen_embeddings.get(id(dataset))
        if frozen is not None and frozen[0] is dataset:
            return frozen[1]
        # head: the token match needs each text's last-layer tokens; they come from this
        # same forward pass (a hook on the encoder) instead of a second one.
        states: list[torch.Tensor] = []
        capture = not self.use_lora and RECIPE["token_match"]
        hook = (
            self.encoder.register_forward_hook(
                lambda _module, _args, output: states.append(output.last_hidden_state)
            )
            if capture
            else None
        )
        tokens: dict[int, torch.Tensor] = {}
        try:
            with torch.no_grad():
                self.encoder.eval()
                batches = self.eval_batches(dataset)
                chunks = []
                for indices in batches:
                    batch = self.collate(dataset, indices, pad_id)
                    chunks.append(self._embed(batch))
                    if capture:
                        found = content_tokens(
                            states.pop().float().cpu(), batch["attention_mask"].cpu()
                        )
                        tokens.update(zip(indices, found, strict=True))
                embeddings = torch.cat(chunks)
                order = torch.tensor([index for indices in batches for index in indices])
                result = torch.empty_like(embeddings)
                result[order.to(self.device)] = embeddings
        finally:
            if hook is not None:
                hook.remove()
        if not self.use_lora:  # the encoder never changes: method head embeds each text once
            self._frozen_embeddings[id(dataset)] = (dataset, result)
            if capture:
                self._frozen_tokens[id(dataset)] = (
                    dataset,
                    [tokens[i] for i in range(len(dataset))],
                )
        return result

    def before_training(self, train_set: Any, pad_id: int) -> None:
        self.train_set, self.pad_id = train_set, pad_id
        self._cache_prefix(train_set, pad_id)
        self._cache_prefix(self.val_set, pad_id)
        self.bank = self._embed_all(train_set, pad_id)
        self.bank_classes = torch.tensor(train_set["label"], dtype=torch.long, device=self.device)
        if CLASS_BALANCED:
            self.class_weight = balanced_weights(
                self.bank_classes, len(self.descriptions["input_ids"])
            )
        self.supcon_weight = supcon_weight(train_set["label"])
        if self.use_lora:  # the adapter is still zero: this is the frozen encoder's head
            from worker.fine_tuning.linear_head import fit_linear_head

            head = fit_linear_head(
                *self._labelled_embeddings(self.bank),
                seed=self.config.seed,
                facets=self._embedded_facets(),
            )
            self.frozen_calibration = head.calibration if head.folds >= 2 else None
            # The labels to check, from texts the encoder has not trained on yet.
            self.frozen_label_issues = self._label_issues(head, None)

    def on_epoch_start(self, train_set: Any, pad_id: int, epoch: int) -> None:
        # Exemplars out of the batch come from the bank; validation refreshed it already.
        if epoch > 1 and self.use_lora and self.val_set is None:
            self.bank = self._embed_all(train_set, pad_id)

    def evaluate_loss(self, dataset: Any, pad_id: int) -> tuple[float, float]:
        """Validation against exemplars embedded by the current adapter, as the export has them."""
        if self.use_lora:
            self.bank = self._embed_all(self.train_set, pad_id)
        return super().evaluate_loss(dataset, pad_id)

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
        loss = functional.cross_entropy(logits, batch["labels"], weight=self.class_weight)
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
                    "lr": self.config.learning_rate * self.adapter_lr_multiplier,
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
            self.setup_adapter(texts_per_category(train_examples))
            return super().fit(train_examples, val_examples, progress, should_cancel)
        return self._fit_head(train_examples, val_examples, progress, should_cancel)

    def _fit_head(
        self,
        train_examples: Sequence[dict[str, Any]],
        val_examples: Sequence[dict[str, Any]],
        progress: ProgressCallback,
        should_cancel: Callable[[], bool],
    ) -> TrainedAdapter:
        """Frozen encoder: embed every labelled text once; ``export`` fits the logistic head."""
        started = time.perf_counter()
        pad_id = self.tokenizer.pad_token_id or 0
        train_set, self.val_set = self.datasets(train_examples, val_examples)
        if should_cancel():
            raise TrainingCancelled("training was cancelled")
        progress("training", 0, 1, 0, None, None)
        self.before_training(train_set, pad_id)
        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
        adapter = self.export(history)
        fitted = adapter.history.get("linear_head") or {}
        if self.val_set is not None and len(self.val_set):
            from worker.fine_tuning.linear_head import held_out_scores

            columns = self._head_columns()
            with torch.no_grad():
                descriptions = self._embed(self.descriptions)[:, columns].float().cpu().numpy()
            facets = self._embedded_facets() if fitted.get("description_facets") else None
            val_loss, val_accuracy = held_out_scores(
                self.bank[:, columns].float().cpu().numpy(),
                self.bank_classes.cpu().numpy(),
                self._embed_all(self.val_set, pad_id)[:, columns].float().cpu().numpy(),
                np.asarray(self.val_set["label"]),
                descriptions,
                float(fitted["calibration"]),
                bool(fitted.get("descriptions_as_examples", True)),
                facets.columns(columns) if facets is not None else None,
            )
            adapter.history.update(val_loss=[val_loss], val_accuracy=[val_accuracy])
        loss = fitted.get("cross_fitted_loss")
        adapter.history.update(
            train_loss=[loss] if loss is not None else [],
            best_epoch=1,
            epochs_run=1,
            steps=1,
            train_seconds=round(time.perf_counter() - started, 3),
        )
        # One point on the loss curve: the head's loss on texts each fold did not see.
        progress("training", 1, 1, 1, loss, 0.0)
        return adapter

    def _fit_scoring(
        self,
        pad_id: int,
        progress: ProgressCallback,
        should_cancel: Callable[[], bool],
    ) -> tuple[dict[str, Any], int, EarlyStopping]:
        """Fit the scoring parameters on the current (frozen) embeddings; the caller
        loads ``stopping.best_state`` (``EarlyStopping.finish`` does for method head)."""
        config = self.config
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
        optimizer = torch.optim.Adam(self.parameter_groups()[:1])  # scoring parameters
        total_steps = HEAD_STEPS_PER_EPOCH * config.epochs
        timer = _Timer(total_steps)
        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
        stopping, step = EarlyStopping(self, config.patience), 0
        for epoch in range(1, config.epochs + 1):
            if should_cancel():
                raise TrainingCancelled("training was cancelled")
            for _ in range(HEAD_STEPS_PER_EPOCH):
                loss = functional.cross_entropy(
                    self._scores(self.bank, descriptions, self.bank, exclude),
                    train_y,
                    weight=self.class_weight,
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
            history["train_loss"].append(float(loss.detach()))
            progress("training", step, total_steps, epoch, float(loss.detach()), timer.eta(step))
            if val_x is None:
                stopping.without_validation(epoch)
                continue
            with torch.no_grad():
                val_scores = self._scores(val_x, descriptions, self.bank)
                val_loss = float(functional.cross_entropy(val_scores, val_y))
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(
                    float((val_scores.argmax(1) == val_y).float().mean())
                )
            if stopping.should_stop(epoch, val_loss):
                break
        return history, step, stopping

    def starting_point(self, pad_id: int, should_cancel: Callable[[], bool]) -> float | None:
        """lora: fit the scoring parameters on the base encoder first (method head).

        The adapter starts from there; with a validation set that state is also
        the candidate an adapter epoch must beat to be kept.
        """
        if not RECIPE["head_first"]:
            return None
        _, _, stopping = self._fit_scoring(pad_id, lambda *_: None, should_cancel)
        if stopping.best_state is not None:
            self.load_state(stopping.best_state)
        return stopping.best_loss if math.isfinite(stopping.best_loss) else None

    def _as_served(self, dataset: Any) -> Any:
        """``dataset`` tokenised as the classifier tokenises a query (at ``MAX_LENGTH``)."""
        if self.max_length == MAX_LENGTH or all(
            len(ids) < min(self.max_length, MAX_LENGTH) for ids in dataset["input_ids"]
        ):
            return dataset  # already the same tokens (head, or no text reached a cap)
        return prepare_dataset(dataset["text"], dataset["label"], self.tokenizer, MAX_LENGTH)

    def _labelled_embeddings(
        self, train_embedded: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, classes, descriptions) of every labelled text (train and
        validation) and of each category's description, embedded by the encoder as it
        is now, as the classifier embeds a query (a long text is not cut at the
        training cap). ``train_embedded``: the training set's embeddings by the encoder
        as it is now, if already at hand (used when the served tokens are the same)."""
        served = self._as_served(self.train_set)
        if train_embedded is None or served is not self.train_set:
            train_embedded = self._embed_all(served, self.pad_id)
        embedded = [train_embedded]
        classes = [torch.tensor(self.train_set["label"], dtype=torch.long)]
        if self.val_set is not None and len(self.val_set):
            embedded.append(self._embed_all(self._as_served(self.val_set), self.pad_id))
            classes.append(torch.tensor(self.val_set["label"], dtype=torch.long))
        with torch.no_grad():
            self.encoder.eval()
            descriptions = self._embed(self.descriptions)
        return (
            torch.cat(embedded).float().cpu().numpy(),
            torch.cat(classes).numpy(),
            descriptions.float().cpu().numpy(),
        )

    def export(self, history: dict[str, Any]) -> TrainedAdapter:
        """Adapter + the calibrated logistic head (``worker.fine_tuning.linear_head``),
        fitted on every labelled text (train and validation) embedded as the classifier
        embeds a query (a long text is not cut at the training cap), with each
        category's description as one more example of it."""
        from worker.fine_tuning.linear_head import capped

        head, features = self._fit_linear_head()
        issues = self._label_issues(head, self._held_out_matched)
        if self.use_lora and history.get("best_epoch") and self.frozen_label_issues is not None:
            # The adapter trained on these texts, so the tuned head's folds find their
            # labels easy to believe: the frozen encoder's head, fitted before, says more.
            issues = self.frozen_label_issues
        if self.use_lora and history.get("best_epoch") and self.frozen_calibration is not None:
            # The adapter trained on these texts, so each fold finds the texts it held out
            # easier than new ones: the frozen encoder's multiplier bounds it.
            head = capped(head, self.frozen_calibration)
        tensors = {
            f"{HEAD_PREFIX}linear_weight": torch.tensor(head.weight, dtype=torch.float32),
            f"{HEAD_PREFIX}linear_bias": torch.tensor(head.bias, dtype=torch.float32),
            f"{HEAD_PREFIX}linear_calibration": torch.tensor(head.calibration),
            f"{HEAD_PREFIX}zero_shot_slope": torch.tensor(head.zero_shot_slope),
            f"{HEAD_PREFIX}zero_shot_intercept": torch.tensor(head.zero_shot_intercept),
        }
        manifest = self.manifest(self.config.method, self.config.max_length)
        if self.reads_middle and self.middle is not None:
            tensors[f"{HEAD_PREFIX}middle_layer_index"] = torch.tensor(self.middle.index)
            tensors[f"{HEAD_PREFIX}middle_layer_weight"] = torch.tensor(self.middle.weight)
            manifest = replace(manifest, format_version=MIDDLE_LAYER_FORMAT)
        if head.token_weight > 0 and self.token_bank is not None:
            tokens, rows = self.token_bank
            tensors[f"{HEAD_PREFIX}token_bank"] = tokens.to(torch.float16)
            tensors[f"{HEAD_PREFIX}token_bank_rows"] = rows.to(torch.int64)
            tensors[f"{HEAD_PREFIX}token_weight"] = torch.tensor(head.token_weight)
            manifest = replace(manifest, format_version=TOKEN_BANK_FORMAT)
        peft_fields: dict[str, Any] = {"peft_type": None}
        if self.use_lora:
            from peft import get_peft_model_state_dict

            for name, value in get_peft_model_state_dict(self.encoder).items():
                tensors[name] = value.detach().float().cpu().clone().contiguous()
            peft_fields = peft_fields_of(self.encoder)
        peft_fields["base_model_name_or_path"] = model_identity(self.base_model)
        if not self.use_lora:
            adapted = "no block"
        else:
            adapted = "top block" if self.frozen_layers else "every block"
        return TrainedAdapter(
            tensors={name: value.contiguous() for name, value in tensors.items()},
            peft_fields=peft_fields,
            manifest=manifest,
            history={
                **history,
                "adapted_blocks": adapted,
                "linear_head": {**head.summary(), **features},
                "label_issues": issues,
            },
        )

    def _label_issues(self, head: Any, matched: np.ndarray | None) -> list[dict[str, Any]]:
        """The labelled texts whose labels the cross-fitted ``head`` (with its token match
        ``matched``, if any) doubts (``linear_head.label_issues``), each by its row in the
        labelled texts (train, then validation, as given to ``fit``) and its categories'
        names."""
        from worker.fine_tuning.linear_head import label_issues

        classes = np.asarray(self.train_set["label"], dtype=np.int64)
        if self.val_set is not None and len(self.val_set):
            classes = np.concatenate([classes, np.asarray(self.val_set["label"], dtype=np.int64)])
        return [
            {
                "row": issue.row,
                "label": self.labels[issue.label],
                "suggested": self.labels[issue.suggested],
                "label_probability": round(issue.label_probability, 4),
                "suggested_probability": round(issue.suggested_probability, 4),
            }
            for issue in label_issues(head, matched, classes)
        ]

    def _head_columns(self) -> slice:
        """The columns of this trainer's embeddings the exported head reads: all of them,
        or the last layer's part when the middle block's was left out."""
        if self.middle is None or self.reads_middle:
            return slice(None)
        return slice(0, self.body.config.hidden_size)

    def _fit_linear_head(self) -> tuple[Any, dict[str, Any]]:
        """The head on every labelled text, and what it reads (for the run's history).

        head: fitted on the last layer's pool alone and with the middle block's beside
        it; the lower cross-fitted loss is kept (the last layer alone on a tie)."""
        from worker.fine_tuning.linear_head import best_head, fit_linear_head

        embeddings, classes, descriptions = self._labelled_embeddings()
        seed = self.config.seed
        facets = self._embedded_facets()
        if self.middle is None:
            head = fit_linear_head(embeddings, classes, descriptions, seed=seed, facets=facets)
            return self._with_token_match(head, classes), {"middle_layer": None}
        width = self.body.config.hidden_size
        last = slice(0, width)
        heads = [
            fit_linear_head(
                embeddings[:, last],
                classes,
                descriptions[:, last],
                seed=seed,
                facets=facets.columns(last) if facets is not None else None,
            ),
            fit_linear_head(embeddings, classes, descriptions, seed=seed, facets=facets),
        ]
        self.reads_middle = best_head(heads) == 1
        facts = {
            "middle_layer": (
                {"block": self.middle.index, "weight": self.middle.weight}
                if self.reads_middle
                else None
            ),
            "loss_last_layer_only": _rounded(heads[0].cross_fitted_loss),
            "loss_with_middle_layer": _rounded(heads[1].cross_fitted_loss),
        }
        return self._with_token_match(heads[1 if self.reads_middle else 0], classes), facts

    def _embedded_facets(self) -> Any:
        """``linear_head.Facets``: the description parts embedded by the encoder as it is
        now, as the descriptions are; None where no description lists parts."""
        from worker.fine_tuning.linear_head import Facets

        if self.facets is None:
            return None
        with torch.no_grad():
            self.encoder.eval()
            embedded = self._embed(self.facets).float().cpu().numpy()
        return Facets.of(embedded, self.facet_classes)

    def _with_token_match(self, head: Any, classes: np.ndarray) -> Any:
        """``head`` with the token match beside it where the held-out fit gives it a
        weight (``linear_head.fit_token_weight``); the bank is kept for ``export``."""
        from worker.fine_tuning.linear_head import fit_token_weight

        self.token_bank = self._held_out_matched = None
        if not RECIPE["token_match"] or head.held_out is None:
            return head
        texts = self._token_states(self._as_served(self.train_set))
        if self.val_set is not None and len(self.val_set):
            texts += self._token_states(self._as_served(self.val_set))
        matched, tokens, rows = held_out_token_match(
            texts,
            classes,
            self._description_tokens(),
            RECIPE["token_bank_texts_per_category"],
            self.config.seed,
        )
        fitted = fit_token_weight(head, matched, classes)
        if fitted.token_weight > 0:
            self.token_bank, self._held_out_matched = (tokens, rows), matched
        return fitted

    def _token_states(self, dataset: Any) -> list[torch.Tensor]:
        """Each text's normalised last-layer content tokens, in ``dataset`` order (CPU)."""
        captured = self._frozen_tokens.get(id(dataset))
        if captured is not None and captured[0] is dataset:
            return list(captured[1])
        found: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            self.encoder.eval()
            for indices in self.eval_batches(dataset):
                batch = _collate(dataset, indices, self.pad_id, self.device)
                found.update(zip(indices, self._batch_tokens(batch), strict=True))
        return [found[index] for index in range(len(dataset))]

    def _description_tokens(self) -> list[torch.Tensor]:
        with torch.no_grad():
            self.encoder.eval()
            return self._batch_tokens(self.descriptions)

    def _batch_tokens(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        output = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        states = output.last_hidden_state.float().cpu()
        return content_tokens(states, batch["attention_mask"].cpu())


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def held_out_token_match(
    texts: Sequence[torch.Tensor],
    classes: np.ndarray,
    descriptions: Sequence[torch.Tensor],
    limit: int,
    seed: int,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """The token bank of labelled ``texts`` (each one's ``content_tokens``; at most
    ``limit`` texts a category, ``bank_members``) and of each category's description, and
    each labelled text's centred match with it, never with its own tokens: what an unseen
    text would get. Returns (matches ``[texts, categories]``, bank tokens, their rows),
    the bank sorted by row."""
    members = bank_members(classes, limit, seed)
    banked = [index for index in range(len(texts)) if members[index]]
    banked_tokens, banked_owners = flattened([texts[index] for index in banked])
    banked_owners = torch.tensor(banked, dtype=torch.long)[banked_owners]
    description_tokens, description_rows = flattened(descriptions)
    tokens = torch.cat([banked_tokens, description_tokens])
    rows = torch.cat([torch.as_tensor(classes, dtype=torch.long)[banked_owners], description_rows])
    query, owners = flattened(texts)
    matched = token_match(
        query,
        owners,
        len(texts),
        tokens,
        rows,
        len(descriptions),
        torch.cat([banked_owners, -1 - description_rows]),
    )
    order = torch.argsort(rows, stable=True)
    return (matched - matched.mean(dim=1, keepdim=True)).numpy(), tokens[order], rows[order]


def bank_members(classes: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Which labelled texts give the token bank their tokens: all of a category's up to
    ``limit``, beyond it a seeded sample of ``limit``."""
    classes = np.asarray(classes)
    members = np.zeros(len(classes), dtype=bool)
    rng = np.random.default_rng(seed)
    for label in np.unique(classes):
        rows = np.flatnonzero(classes == label)
        members[rows if len(rows) <= limit else rng.choice(rows, limit, replace=False)] = True
    return members


def balanced_weights(classes: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Cross-entropy weight per category, ``texts / (categories with texts * its texts)``
    (scikit-learn's "balanced", as the head is fitted): every category weighs the same
    in the adapter's loss however many labelled texts it has; 1 for all on an even set."""
    counts = torch.bincount(classes, minlength=num_labels).to(torch.float32)
    present = counts > 0
    weights = torch.zeros(num_labels, dtype=torch.float32, device=classes.device)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


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
