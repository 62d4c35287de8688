"""NLI models: LoRA on ``q_proj``/``v_proj``, or the classification head only.

Both train cross-entropy over the entailment logits of every category for
each text (the zero-shot scorer itself). On CUDA the frozen body is bf16 and
the trainables fp32.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as functional

from shared.classifier import NLI, CategorySpec, model_identity
from shared.classifier.artifact import HEAD_PREFIX
from shared.training_config import TrainingConfig, adapted_blocks
from worker.fine_tuning import devices
from worker.fine_tuning.trainer import (
    BaseTrainer,
    TrainedAdapter,
    peft_fields_of,
    setup_lora_model,
)

NLI_LORA_LR_MULTIPLIER = 3.0


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


class NLITrainer(BaseTrainer):
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
            # NLI lora adapts every block whatever the data size.
            history={**history, "adapted_blocks": adapted_blocks(NLI, self.config.method, 0)},
        )
