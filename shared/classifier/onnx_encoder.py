"""The sentence encoder's forward pass on ONNX Runtime: the same numbers, faster on a CPU.

An embedding classifier spends nearly all its time in the encoder. Exported to ONNX
(with eager attention: the traced SDPA path did not reproduce the model's outputs,
max difference 0.09-0.16) and run by ONNX Runtime, all-MiniLM-L6-v2 gives the same
embeddings as torch to within 5e-7 and the same labels on every test text of the
three benchmark datasets, about 2-3 times faster on 2 cores (bench/README.md,
``bench/inference_backends.py``). int8 dynamic quantisation was faster still but
changed 1-23 % of the labels, so it is not offered.

``accelerate(classifier, cache_dir)`` exports the classifier's encoder once (the
file is keyed by the model's version and weights, written atomically, so processes
sharing the models volume export it once between them) and swaps the classifier's
forward pass for an ONNX Runtime session. Anything that goes wrong leaves the
classifier on torch, logged. The torch path stays: ``SORTLOOP_INFERENCE_BACKEND=torch``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

OPSET = 17
# Sessions kept per process (the model in use, the one before it, a shadow or two).
MAX_SESSIONS = 3
_export_lock = threading.Lock()
_sessions: dict[Path, OnnxEncoder] = {}


def available() -> bool:
    """Whether ONNX Runtime (and the exporter's ``onnx``) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


class _Pooled(torch.nn.Module):
    """The classifier's ``embed``: mean pooling over the mask, then L2 normalisation (and
    a middle block's pool beside the last one's where the head reads it); with
    ``states``, the last layer's token states as a second output (for a token bank)."""

    def __init__(self, model: torch.nn.Module, middle: Any = None, states: bool = False) -> None:
        super().__init__()
        self.model = model
        self.middle = middle
        self.states = states

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
            output_hidden_states=self.middle is not None,
        )
        pooled = _pool(output.last_hidden_state, attention_mask)
        if self.middle is not None:
            lower = _pool(output.hidden_states[self.middle.index], attention_mask)
            pooled = torch.cat([pooled, self.middle.weight * lower], dim=-1)
        return (pooled, output.last_hidden_state) if self.states else pooled


def _pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of every weight (a merged adapter changes it; the base never does)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export(
    model: torch.nn.Module, tokenizer: Any, path: Path, middle: Any = None, states: bool = False
) -> Path:
    """Write ``model``'s pooled, normalised embedding (with ``middle``: the head's
    features, ``shared.classifier.embedding.embed``; with ``states``, the last layer's
    token states beside it) as ONNX to ``path`` (atomically)."""
    previous = getattr(model.config, "_attn_implementation", None)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    try:
        sample = tokenizer(
            ["a short text", "and a somewhat longer one to pad"],
            padding=True,
            return_tensors="pt",
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
        os.close(handle)
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(
                    _Pooled(model, middle, states).eval(),
                    (sample["input_ids"], sample["attention_mask"]),
                    scratch,
                    input_names=["input_ids", "attention_mask"],
                    output_names=["embedding", "states"] if states else ["embedding"],
                    dynamic_axes={
                        "input_ids": {0: "batch", 1: "tokens"},
                        "attention_mask": {0: "batch", 1: "tokens"},
                        "embedding": {0: "batch"},
                        **({"states": {0: "batch", 1: "tokens"}} if states else {}),
                    },
                    opset_version=OPSET,
                    dynamo=False,
                )
            os.replace(scratch, path)
        finally:
            if os.path.exists(scratch):
                os.unlink(scratch)
    finally:
        if previous and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(previous)
    return path


class OnnxEncoder:
    """Runs an exported encoder: tokenised batch in, normalised embeddings (torch) out."""

    def __init__(self, path: Path, threads: int | None = None, spinning: bool = True) -> None:
        """``spinning``: whether ONNX Runtime's intra-op threads keep spinning after a run
        for the next one (its default). Off where torch works between runs (a token
        bank's match): the spinning threads take the cores the match needs. Measured on
        2 threads with an 18-scenario bank of 3,638 tokens: one text 10.1-10.7 ms with
        spinning, 4.2-4.4 ms without; the base model alone 2.5-2.8 ms with, 3.0-3.2
        without (bench/README.md, "Serving cost of the token match")."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        self.path = path
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def _run(self, batch: dict[str, torch.Tensor]) -> list[Any]:
        feeds = {
            "input_ids": batch["input_ids"].cpu().numpy().astype("int64"),
            "attention_mask": batch["attention_mask"].cpu().numpy().astype("int64"),
        }
        return self.session.run(None, feeds)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(self._run(batch)[0])

    def with_states(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings and the last layer's token states (a file exported with them)."""
        outputs = self._run(batch)
        if len(outputs) < 2:
            raise ValueError(f"{self.path.name} was exported without token states")
        return torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1])


def accelerate_in_background(classifier: Any, cache_dir: str | Path) -> threading.Thread:
    """``accelerate`` in a daemon thread: the classifier serves on torch until its
    session is ready (the first export takes about 2 s for MiniLM), then switches."""
    thread = threading.Thread(
        target=accelerate, args=(classifier, cache_dir), name="sortloop-onnx", daemon=True
    )
    thread.start()
    return thread


def accelerate(classifier: Any, cache_dir: str | Path) -> bool:
    """Give an embedding ``classifier`` on the CPU an ONNX Runtime forward pass.

    Returns whether it now runs on ONNX Runtime; False (and torch as before) when
    ONNX Runtime is missing, the model is not an embedding model on the CPU, or the
    export or the session fails.
    """
    from shared.classifier.embedding import EmbeddingClassifier, model_device

    if not isinstance(classifier, EmbeddingClassifier) or not available():
        return False
    if model_device(classifier.model).type != "cpu":
        return False
    try:
        # Same weights, same file: a head-only model shares the base model's export
        # (unless its head also reads a middle block or token states: then it has its own).
        middle, states = classifier.middle_layer, classifier.token_bank is not None
        reads = "" if middle is None else f"-block{middle.index}x{middle.weight:g}"
        reads += "-tokens" if states else ""
        path = Path(cache_dir) / f"encoder-{weights_fingerprint(classifier.model)}{reads}.onnx"
        with _export_lock:
            if not path.exists():
                export(classifier.model, classifier.tokenizer, path, middle, states)
                logger.info("exported %s to %s", classifier.version, path)
            runtime = _sessions.get(path)
            if runtime is None:
                runtime = _sessions[path] = OnnxEncoder(path, spinning=not states)
                while len(_sessions) > MAX_SESSIONS:  # the oldest model's session goes
                    _sessions.pop(next(iter(_sessions)))
        classifier.runtime = runtime
    except Exception:
        logger.exception("ONNX Runtime unavailable for %s: staying on torch", classifier.version)
        return False
    logger.info("%s runs on ONNX Runtime (%s)", classifier.version, path.name)
    return True
