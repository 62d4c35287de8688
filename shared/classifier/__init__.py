"""The one classifier interface web and worker share.

Importing this package is cheap: torch and transformers are imported inside
the ``load_*`` functions, and peft is never needed (adapters are merged into
the base weights at load time). Callers load a classifier once and cache it;
``classify`` is thread-safe.

    >>> classifier = load_base_classifier(default_base_model())      # doctest: +SKIP
    >>> classifier.classify(["my card never arrived"], [CategorySpec("cards", "card delivery")])
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from shared.classifier.base import (
    DEFAULT_HYPOTHESIS_TEMPLATE,
    EMBEDDING,
    MODEL_KINDS,
    NLI,
    CategorySpec,
    Classifier,
    ClassifierError,
    Prediction,
    predictions_from_scores,
)
from shared.classifier.identity import (
    base_model_version,
    default_base_model,
    infer_model_kind,
    model_identity,
    same_base_model,
)

__all__ = [
    "DEFAULT_HYPOTHESIS_TEMPLATE",
    "EMBEDDING",
    "MODEL_KINDS",
    "NLI",
    "CategorySpec",
    "Classifier",
    "ClassifierError",
    "Prediction",
    "default_base_model",
    "infer_model_kind",
    "load_base_classifier",
    "load_finetuned_classifier",
    "finetuned_from_base",
    "model_identity",
    "predictions_from_scores",
]

logger = logging.getLogger(__name__)


def _resolve_kind(base_model: str, kind: str | None) -> str:
    resolved = kind or infer_model_kind(base_model)
    if resolved not in MODEL_KINDS:
        raise ClassifierError(f"unknown model kind {resolved!r}; expected one of {MODEL_KINDS}")
    return resolved


def load_base_classifier(
    base_model: str, kind: str | None = None, device: str = "cpu"
) -> Classifier:
    """The zero-shot classifier for ``base_model`` (a local path or an offline-cached hub name).

    ``device`` is ``"cpu"`` everywhere but in the worker's evaluation on a GPU
    (``"cuda"``: bf16 weights; scores come back on the CPU either way).
    """
    resolved = _resolve_kind(base_model, kind)
    version = base_model_version(base_model)
    logger.info("loading base classifier model=%s kind=%s", model_identity(base_model), resolved)
    try:
        if resolved == EMBEDDING:
            from shared.classifier.embedding import EmbeddingClassifier, load_encoder

            tokenizer, model = load_encoder(base_model, device)
            return EmbeddingClassifier(
                tokenizer,
                model,
                base_model=base_model,
                version=version,
                batch_size=64 if device == "cpu" else 256,
            )
        from shared.classifier.nli import NLIClassifier, load_nli_model

        tokenizer, model = load_nli_model(base_model, device)
        return NLIClassifier(
            tokenizer,
            model,
            base_model=base_model,
            version=version,
            pair_batch_size=64 if device == "cpu" else 512,
        )
    except (OSError, ValueError) as error:
        raise ClassifierError(f"cannot load base model {base_model!r}: {error}") from error


def load_finetuned_classifier(
    base_model: str, adapter_dir: str | Path, version: str, kind: str | None = None
) -> Classifier:
    """The base scorer plus the adapter the engine exported to ``adapter_dir``.

    LoRA deltas are merged into a private copy of the base weights, so the
    fine-tuned model costs the same to run as the base one. Categories the
    adapter was not trained on are scored zero-shot by the adapted encoder
    (a category without labelled examples is scored by its description alone).
    """
    from shared.classifier import artifact

    try:
        peft_fields, manifest = artifact.read_adapter_config(adapter_dir)
        tensors = artifact.read_adapter_tensors(adapter_dir)
    except (OSError, ValueError) as error:
        raise ClassifierError(f"cannot read adapter in {adapter_dir}: {error}") from error
    if not same_base_model(manifest.base_model, base_model):
        raise ClassifierError(
            f"adapter in {adapter_dir} was trained on {manifest.base_model!r}, "
            f"not on {model_identity(base_model)!r}"
        )
    resolved = _resolve_kind(base_model, kind or manifest.kind)
    if resolved != manifest.kind:
        raise ClassifierError(f"adapter is for a {manifest.kind!r} model, not {resolved!r}")
    lora_tensors, head = artifact.split_tensors(tensors)
    try:
        if resolved == EMBEDDING:
            from shared.classifier.embedding import load_encoder

            tokenizer, model = load_encoder(base_model)
        else:
            from shared.classifier.nli import load_nli_model

            tokenizer, model = load_nli_model(base_model)
        return _build_finetuned(
            tokenizer, model, base_model, version, manifest, peft_fields, lora_tensors, head
        )
    except (OSError, ValueError, KeyError) as error:
        raise ClassifierError(f"cannot apply adapter in {adapter_dir}: {error}") from error


def finetuned_from_base(base: Classifier, adapter_dir: str | Path, version: str) -> Classifier:
    """The fine-tuned classifier built on a copy of an already loaded base classifier.

    Saves a second model load when both are needed (evaluation scores the base
    model and the fine-tuned one on the same test set). ``base`` is not changed.
    """
    import copy

    from shared.classifier import artifact

    try:
        peft_fields, manifest = artifact.read_adapter_config(adapter_dir)
        tensors = artifact.read_adapter_tensors(adapter_dir)
    except (OSError, ValueError) as error:
        raise ClassifierError(f"cannot read adapter in {adapter_dir}: {error}") from error
    if manifest.kind != base.kind or not same_base_model(manifest.base_model, base.base_model):
        raise ClassifierError(
            f"adapter is for {manifest.kind} model {manifest.base_model!r}, "
            f"not {base.kind} model {model_identity(base.base_model)!r}"
        )
    lora_tensors, head = artifact.split_tensors(tensors)
    model = base.model  # type: ignore[attr-defined]
    if lora_tensors or any(key.startswith("params.") for key in head):
        model = copy.deepcopy(model)  # the adapter changes weights: never touch the base
    tokenizer = base.tokenizer  # type: ignore[attr-defined]
    try:
        return _build_finetuned(
            tokenizer, model, base.base_model, version, manifest, peft_fields, lora_tensors, head
        )
    except (ValueError, KeyError) as error:
        raise ClassifierError(f"cannot apply adapter in {adapter_dir}: {error}") from error


def _build_finetuned(
    tokenizer: object,
    model: object,
    base_model: str,
    version: str,
    manifest: object,
    peft_fields: dict,
    lora_tensors: dict,
    head: dict,
) -> Classifier:
    """Apply an adapter to a freshly loaded (or copied) base model and wrap it."""
    from shared.classifier import artifact
    from shared.classifier.embedding import model_device

    _apply_adapter(model, lora_tensors, head, peft_fields)
    on_cpu = model_device(model).type == "cpu"  # type: ignore[arg-type]
    if manifest.kind == EMBEDDING:  # type: ignore[attr-defined]
        from shared.classifier.embedding import (
            ZERO_SHOT_SCALE,
            EmbeddingClassifier,
            LinearHead,
            MiddleLayer,
            TokenBank,
        )

        labels = manifest.labels  # type: ignore[attr-defined]
        exemplars = head.get("exemplars")
        exemplar_labels: list[str] = []
        if exemplars is not None:
            classes = head["exemplar_classes"].tolist()
            if len(classes) != exemplars.shape[0] or any(not 0 <= c < len(labels) for c in classes):
                raise ValueError("adapter exemplars do not match its label list")
            exemplar_labels = [labels[c] for c in classes]
        scale = math.exp(float(head["logit_scale"])) if "logit_scale" in head else ZERO_SHOT_SCALE
        linear_head, middle_layer = None, None
        if "middle_layer_index" in head:
            middle_layer = MiddleLayer(
                int(head["middle_layer_index"]), float(head["middle_layer_weight"])
            )
        token_bank = None
        if "linear_weight" in head:
            linear_head = LinearHead(
                head["linear_weight"],
                head["linear_bias"],
                labels,
                calibration=float(head["linear_calibration"]),
                slope=float(head["zero_shot_slope"]),
                intercept=float(head["zero_shot_intercept"]),
                token_weight=float(head["token_weight"]) if "token_weight" in head else 0.0,
            )
            _check_head_width(model, linear_head, middle_layer)
            if "token_bank" in head:
                token_bank = TokenBank(head["token_bank"], head["token_bank_rows"], len(labels))
                _check_bank_width(model, token_bank)
        return EmbeddingClassifier(
            tokenizer,
            model,  # type: ignore[arg-type]
            base_model=base_model,
            version=version,
            exemplars=exemplars,
            exemplar_labels=exemplar_labels,
            temperature=float(head["temperature"]) if "temperature" in head else 0.05,
            description_weight=(
                float(head["description_weight"]) if "description_weight" in head else 0.5
            ),
            scale=scale,
            batch_size=64 if on_cpu else 256,
            shared_layers=artifact.untouched_bottom_layers(lora_tensors, head),
            linear_head=linear_head,
            middle_layer=middle_layer,
            token_bank=token_bank,
        )
    from shared.classifier.nli import NLIClassifier

    return NLIClassifier(
        tokenizer,
        model,  # type: ignore[arg-type]
        base_model=base_model,
        version=version,
        hypothesis_template=manifest.hypothesis_template or DEFAULT_HYPOTHESIS_TEMPLATE,  # type: ignore[attr-defined]
        pair_batch_size=64 if on_cpu else 512,
    )


def _check_bank_width(model: object, bank: object) -> None:
    """A token bank holds the last layer's token states: as wide as the model's."""
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    width = bank.tokens.shape[1]  # type: ignore[attr-defined]
    if hidden is not None and width != int(hidden):
        raise ValueError(
            f"the adapter's token bank is {width} wide, the base model's tokens {hidden}: "
            "it was trained on another base model"
        )


def _check_head_width(model: object, head: object, middle: object) -> None:
    """A head reads the last layer's pool, and a middle block's beside it if it says so:
    its rows must be that wide (else it was trained on another base model)."""
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    width = head.weight.shape[1]  # type: ignore[attr-defined]
    expected = None if hidden is None else int(hidden) * (1 if middle is None else 2)
    if expected is not None and width != expected:
        raise ValueError(f"the adapter's head reads {width} features, the encoder gives {expected}")
    blocks = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if middle is not None and blocks is not None and not middle.index < int(blocks):  # type: ignore[attr-defined]
        raise ValueError(f"the adapter's head reads block {middle.index}, the encoder has {blocks}")  # type: ignore[attr-defined]


def _apply_adapter(model: object, lora_tensors: dict, head: dict, peft_fields: dict) -> None:
    """Merge LoRA deltas and copy replacement parameters (``params.<name>``) into ``model``."""
    import torch

    from shared.classifier import artifact

    if lora_tensors:
        artifact.merge_lora_weights(model, lora_tensors, artifact.lora_scaling(peft_fields))
    replacements = {
        key[len("params.") :]: value for key, value in head.items() if key.startswith("params.")
    }
    if replacements:
        own = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in replacements.items():
                if name not in own or own[name].shape != value.shape:
                    raise ValueError(f"adapter parameter {name!r} does not fit the base model")
                own[name].copy_(value)
