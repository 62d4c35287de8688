"""GPU benchmark: one full engine run (data checks, training, evaluation) per batch setting.

On a CUDA machine it times ``engine.run_all`` for token budgets that give
about 32, 128 and 512 sequences per optimizer step, on

- the default model (packaged all-MiniLM-L6-v2, embedding scorer), and
- a bart-large-mnli-shaped NLI model built from a config with random weights
  (d_model 1024, 12+12 layers, 16 heads, ffn 4096, the packaged tokenizer's
  vocabulary; no download),

with 64 examples x 8 categories (NLI: 512 text/hypothesis pairs per epoch),
10 epochs, LoRA r=8 (q_proj/v_proj on BART). It prints JSON: seconds, steps,
mean sequences per step, peak GPU memory and the memory still allocated after
the engine's cleanup. First it runs the product's default recipe
(``TrainingConfig()``, method ``head``) once on CUDA and once on the CPU, on the
same split, to compare time and accuracy; last, it times bulk classification of
1,000 texts against the 8 categories on CUDA with each model (what compose's
``worker-inference`` does with waiting submissions). Without CUDA it prints
``{"skipped": "no CUDA device"}`` and exits 0.

    python bench/gpu_training.py                 # on a GPU machine
    python bench/gpu_training.py --data FILE.csv # another labeled CSV (text,label,split)
    python bench/gpu_training.py --smoke         # CPU: the GPU recipe on a tiny BART (code path check)

Not a test: nothing here is time-gated.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import machine  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "banking.csv"
PER_CATEGORY = 8
TEST_PER_CATEGORY = 25
SEQUENCES_PER_STEP = (32, 128, 512)
EPOCHS = 10


def dataset(data: Path = DATA) -> tuple[list[dict], list[dict], list[str]]:
    """64 training texts (8 x 8 categories) and a test set; banking.csv when present."""
    rng = random.Random(0)
    if data.is_file():
        with data.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        labels = sorted({row["label"] for row in rows})[:8]
        train, test = [], []
        for label in labels:
            pool = [r["text"] for r in rows if r["label"] == label and r["split"] == "train"]
            held = [r["text"] for r in rows if r["label"] == label and r["split"] == "test"]
            train += [(t, label) for t in rng.sample(pool, PER_CATEGORY)]
            test += [(t, label) for t in rng.sample(held, TEST_PER_CATEGORY)]
    else:  # the GPU machine may not carry ../shared/data: synthetic texts of similar length
        labels = [f"topic{i}" for i in range(8)]
        words = [f"w{label}{j}" for label in range(8) for j in range(40)]

        def text(label: int) -> str:
            own = [f"wtopic{label}{j}" for j in range(40)]
            size = rng.randint(6, 30)
            return " ".join(rng.choice(own if rng.random() < 0.5 else words) for _ in range(size))

        train = [(text(i), labels[i]) for i in range(8) for _ in range(PER_CATEGORY)]
        test = [(text(i), labels[i]) for i in range(8) for _ in range(TEST_PER_CATEGORY)]
    as_dicts = [
        [{"id": f"{name}{i}", "text": t, "label": label} for i, (t, label) in enumerate(group)]
        for name, group in (("x", train), ("t", test))
    ]
    return as_dicts[0], as_dicts[1], labels


def build_bart_large_nli(out_dir: Path, layers: int = 12, d_model: int = 1024) -> str:
    """A bart-large-mnli-shaped model with random weights, saved with the packaged tokenizer."""
    from shared.classifier.tiny import build_tiny_nli_model

    return build_tiny_nli_model(
        out_dir,
        d_model=d_model,
        layers=layers,
        heads=max(1, d_model // 64),
        ffn_multiplier=4,
        max_positions=1024,
    )


def token_budget(model_path: str, kind: str, train: list[dict], labels: list[str], n: int) -> int:
    """A token budget that gives about ``n`` sequences per step on this data."""
    from transformers import AutoTokenizer

    from shared.training_config import TrainingConfig

    config = TrainingConfig()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    lengths = [
        len(ids)
        for ids in tokenizer(
            [e["text"] for e in train], truncation=True, max_length=config.max_length
        )["input_ids"]
    ]
    width = sorted(lengths)[len(lengths) // 2]
    if kind == "nli":
        hypotheses = [config.hypothesis_template.format(label) for label in labels]
        width += max(len(ids) for ids in tokenizer(hypotheses)["input_ids"])
    return max(64, n * width)


def timed_run(model_path: str, config, train, test, labels) -> tuple[dict, float]:
    """``engine.run_all`` with ``config`` (every category named by its label), its wall
    time, and the GPU's peak memory counted from its start."""
    import torch

    from shared.classifier import CategorySpec
    from worker.fine_tuning import engine

    categories = [CategorySpec(label, label) for label in labels]
    if config.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as scratch:
        results = engine.run_all(
            train, categories, model_path, config, Path(scratch) / "adapter", test=test
        )
    if config.device == "cuda":
        torch.cuda.synchronize()
    return results, time.perf_counter() - started


def one_run(model_path: str, kind: str, budget: int, train, test, labels, epochs: int) -> dict:
    from shared.training_config import TrainingConfig
    from worker.fine_tuning import devices

    device = devices.resolve_device("auto")
    config = TrainingConfig(
        method="lora",
        lora_r=8,
        epochs=epochs,
        patience=epochs,  # time every epoch: no early stop
        split=(0.85, 0.15, 0.0),
        max_batch_tokens=budget,
        target_modules=["q_proj", "v_proj"] if kind == "nli" else None,
        device=device,
    )
    results, seconds = timed_run(model_path, config, train, test, labels)
    training = results["training"]
    sequences = len(training["train_loss"]) and (
        training["num_train"] * training["epochs_run"] * (len(labels) if kind == "nli" else 1)
    )
    return {
        "max_batch_tokens": budget,
        "seconds": round(seconds, 2),
        "train_seconds": training["train_seconds"],
        "eval_seconds": results["eval_seconds"],
        "steps": training["steps"],
        "sequences_per_step": round(sequences / max(1, training["steps"]), 1),
        "peak_gpu_memory_mb_training": training["peak_gpu_memory_mb"],
        "peak_gpu_memory_mb_run": devices.peak_memory_mb(device),
        "gpu_memory_mb_after_cleanup": devices.allocated_memory_mb(device),
        "accuracy": round(results["accuracy"], 4),
        "device": training["device"],
    }


def default_method_run(model_path: str, train, test, labels, device: str) -> dict:
    """One run of the product's default recipe (``TrainingConfig()``) on ``device``.

    The same split on CPU and CUDA gives the accuracy to compare: the engine keeps
    the frozen body in bf16 on CUDA and fp32 on the CPU.
    """
    from shared.training_config import TrainingConfig
    from worker.fine_tuning import devices

    config = TrainingConfig(device=device)
    results, seconds = timed_run(model_path, config, train, test, labels)
    training = results["training"]
    return {
        "method": config.method,
        "seconds": round(seconds, 2),
        "train_seconds": training["train_seconds"],
        "eval_seconds": results["eval_seconds"],
        "accuracy": round(results["accuracy"], 4),
        "baseline_accuracy": round(results["baseline_accuracy"], 4),
        "middle_layer": training.get("linear_head", {}).get("middle_layer"),
        "peak_gpu_memory_mb_run": devices.peak_memory_mb(device),
        "device": training["device"],
    }


def inference_rate(
    model_path: str, kind: str, texts: list[str], labels: list[str], device: str
) -> dict:
    """Bulk classification as the ``inference`` worker runs it: the base classifier on
    ``device`` (bf16 on CUDA) scoring ``texts`` against every category, after a warm-up."""
    import torch

    from shared.classifier import CategorySpec, load_base_classifier

    classifier = load_base_classifier(model_path, kind, device=device)
    categories = [CategorySpec(label, label) for label in labels]
    classifier.classify(texts[:32], categories)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    classifier.classify(texts, categories)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del classifier
    return {
        "texts": len(texts),
        "categories": len(labels),
        "seconds": round(seconds, 3),
        "texts_per_s": round(len(texts) / seconds, 1),
        "device": device,
    }


def bench(models: list[tuple[str, str, str]], train, test, labels, epochs: int) -> dict:
    report: dict = {"examples": len(train), "categories": len(labels), "epochs": epochs}
    for name, path, kind in models:
        budgets = {n: token_budget(path, kind, train, labels, n) for n in SEQUENCES_PER_STEP}
        one_run(path, kind, budgets[SEQUENCES_PER_STEP[-1]], train, test, labels, 1)  # warm-up
        report[name] = {
            f"~{n} sequences/step": one_run(path, kind, budget, train, test, labels, epochs)
            for n, budget in budgets.items()
        }
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run the GPU recipe on the CPU with a tiny BART (checks the code path only)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="a labeled CSV (text,label,split); default ../shared/data/banking.csv "
        "(synthetic texts when it is missing, as on a GPU host without ../shared)",
    )
    args = parser.parse_args()
    import torch

    from shared.classifier import default_base_model

    train, test, labels = dataset(args.data)
    if args.smoke:
        from worker.fine_tuning import devices

        devices.gpu_recipe = lambda device: True  # bf16 body + token-budget batches on CPU
        with tempfile.TemporaryDirectory(prefix="gpu-bench-smoke-") as scratch:
            tiny = build_bart_large_nli(Path(scratch) / "bart", layers=1, d_model=64)
            report = bench([("tiny_bart_nli", tiny, "nli")], train, test, labels, 2)
            texts = [e["text"] for e in test]
            report["inference"] = {
                "tiny_bart_nli": inference_rate(tiny, "nli", texts, labels, "cpu")
            }
            print(json.dumps(report))
        return
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "data": args.data.name if args.data.is_file() else "synthetic",
        "machine": machine.describe(),
    }
    minilm = default_base_model()
    default_method_run(minilm, train, test, labels, "cuda")  # warm-up
    report["default method, all-MiniLM-L6-v2"] = {
        device: default_method_run(minilm, train, test, labels, device)
        for device in ("cuda", "cpu")
    }
    print(json.dumps(report), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as scratch:
        bart = build_bart_large_nli(Path(scratch) / "bart-large-shaped")
        report.update(
            bench(
                [
                    ("all-MiniLM-L6-v2", minilm, "embedding"),
                    ("bart-large-mnli-shaped (random)", bart, "nli"),
                ],
                train,
                test,
                labels,
                EPOCHS,
            )
        )
        # What compose's worker-inference does with waiting submissions, per model in use.
        texts = [e["text"] for e in test] * 5  # 1,000 short texts
        report["inference"] = {
            name: inference_rate(path, kind, texts, labels, "cuda")
            for name, path, kind in (
                ("all-MiniLM-L6-v2", minilm, "embedding"),
                ("bart-large-mnli-shaped (random)", bart, "nli"),
            )
        }
        print(json.dumps(report["inference"]), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
