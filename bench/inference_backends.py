"""The analyzer's encoder on torch (fp32), ONNX Runtime (fp32), torch int8 and torch under
bf16 autocast: speed and parity.

On each dataset's fixed test texts (the learning-curve protocol): texts/s of batch
scoring (batches of 64 by default, the classifier's own batching), and, against the fp32 torch
model, the share of equal labels and the accuracy, zero-shot and with a calibrated
head fitted at k=8 (seed 0) on fp32 embeddings, as the engine fits it. A backend is
kept only where labels agree on >= 99 % and accuracy drops <= 0.5 points (issue 21).
The ``*_middle`` backends compute the features of a head that also reads the middle
block (adapter format 2): their head is fitted on those features, and they are
compared with ``torch_middle``. ``torch_bf16`` and ``bf16_middle`` are batch work's
precision on a CPU with native bf16 (``SORTLOOP_BATCH_PRECISION``).

    python bench/inference_backends.py [--threads 2] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import learning_curve as lc
    import numpy as np
    import torch

    from shared.classifier import default_base_model, load_base_classifier, onnx_encoder
    from shared.classifier.embedding import MiddleLayer, middle_block
    from worker.fine_tuning.embedding_trainer import RECIPE
    from worker.fine_tuning.linear_head import fit_linear_head

    torch.set_num_threads(args.threads)
    cache = tempfile.mkdtemp()
    backends = {"torch": load_base_classifier(default_base_model())}
    backends["onnx"] = load_base_classifier(default_base_model())
    assert onnx_encoder.accelerate(backends["onnx"], cache)
    backends["torch_int8"] = load_base_classifier(default_base_model())
    backends["torch_int8"].model = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(backends["torch"].model), {torch.nn.Linear}, dtype=torch.qint8
    )
    middle = MiddleLayer(
        middle_block(backends["torch"].model, RECIPE["middle_layer_fraction"]),
        RECIPE["middle_layer_weight"],
    )
    for name in ("torch_middle", "onnx_middle", "bf16_middle"):
        backends[name] = load_base_classifier(default_base_model())
        backends[name].middle_layer = middle
    assert onnx_encoder.accelerate(backends["onnx_middle"], cache)
    # Batch work's precision on a CPU with native bf16 (SORTLOOP_BATCH_PRECISION).
    backends["torch_bf16"] = load_base_classifier(default_base_model())
    for name in ("torch_bf16", "bf16_middle"):
        backends[name].autocast = torch.bfloat16
    for classifier in backends.values():
        classifier.batch_size = args.batch_size
    width = backends["torch"].encode(["width"]).shape[1]  # the last layer's columns
    report: dict = {"threads": args.threads, "batch_size": args.batch_size, "datasets": {}}
    report["machine"] = machine.describe()
    for dataset in lc.DATASETS:
        rows = lc.load_rows(dataset)
        labels = lc.labels_of(rows)
        index = {label: i for i, label in enumerate(labels)}
        test = lc.test_set(rows)
        texts = [e["text"] for e in test]
        truth = np.array([index[e["label"]] for e in test])
        train, val = lc.training_sample(rows, 8, 0)
        examples = train + val
        heads = {
            reference: fit_linear_head(
                backends[reference].encode([e["text"] for e in examples]).numpy(),
                np.array([index[e["label"]] for e in examples]),
                backends[reference].encode(labels).numpy(),
                seed=0,
            )
            for reference in ("torch", "torch_middle")
        }
        results, predicted = {}, {}
        for name, classifier in backends.items():
            reference = "torch_middle" if name.endswith("_middle") else "torch"
            classifier.encode(texts[:64])  # warm
            started = time.perf_counter()
            embeddings = classifier.encode(texts).numpy()
            seconds = time.perf_counter() - started
            descriptions = classifier.encode(labels).numpy()
            predicted[name] = {
                # zero-shot compares the last layer's pools alone
                "zero_shot": (embeddings[:, :width] @ descriptions[:, :width].T).argmax(1),
                "head": heads[reference].logits(embeddings).argmax(1),
            }
            results[name] = {"texts_per_s": round(len(texts) / seconds, 1)}
        for name in backends:
            reference = "torch_middle" if name.endswith("_middle") else "torch"
            for scorer in ("zero_shot", "head"):
                mine, base = predicted[name][scorer], predicted[reference][scorer]
                results[name][f"{scorer}_agreement"] = round(float((mine == base).mean()), 4)
                results[name][f"{scorer}_accuracy"] = round(float((mine == truth).mean()), 4)
        report["datasets"][dataset] = {"num_texts": len(texts), **results}
        print(dataset, json.dumps(results), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
