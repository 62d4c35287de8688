"""Learning curve: zero-shot base vs ``lora`` vs ``head`` vs the frozen probe vs SetFit.

Tasks (``--dataset``): ``banking``, the 8 coarse topics of banking.csv; ``intents``,
10 of its 77 fine intents drawn once (seed 7), each named by its intent; ``hwu``, the
18 scenarios of hwu.csv. These three are issue 19's datasets (``--all-datasets``
reports their mean). Two more tasks with many categories check that the recipe holds
there too: ``banking77``, all 77 fine intents of banking.csv, and ``hwu64``, the 64
intents of hwu.csv (``alarm_query`` -> "alarm query"; k up to 16: its smallest intent
has 27 training texts); ``--all-datasets`` also reports the mean over all five.
For each k in 4, 8, 16, 32 examples per category and each seed, k examples per
category are sampled from the ``split=train`` rows (the same sample for every
method). Our engine splits them 85/15 into train/validation (early stopping);
SetFit trains on all k. Every method is scored on the same fixed, stratified
subsample of the ``split=test`` rows (up to 100 per category, seed 123: 800
texts for banking, all 399 for intents) to keep a run's evaluation time bounded. Each (method, k, seed) runs in its own
subprocess so that its wall time and peak RSS are its own; results accumulate
in a JSON file (re-running skips what is there), a summary is printed as JSON,
and ``--plot`` writes accuracy vs k.

    python bench/learning_curve.py --methods zero_shot,lora,head --ks 4,8,16,32 --seeds 0,1,2
    .venv-bench/bin/python bench/learning_curve.py --methods setfit   # SetFit lives in .venv-bench
    python bench/learning_curve.py --summary --plot
    python bench/learning_curve.py --dataset intents --methods zero_shot,lora,head

Not a test: nothing here is time-gated.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import machine  # noqa: E402

DATA_DIR = REPO.parent / "shared" / "data"
DATA = DATA_DIR / "banking.csv"
RESULTS = REPO / "bench" / "results"
TEST_PER_CATEGORY = 100
TEST_SEED = 123
VAL_FRACTION = 0.15
METHODS = ("zero_shot", "probe", "head", "lora", "setfit")
# Two tasks on banking.csv's texts: the 8 coarse topics (unions of sub-topics), and
# 10 fine intents drawn once at random (one topic each, named by the intent).
DATASETS = ("banking", "intents", "hwu")
# Every intent of each file as its own category: many categories, a few texts each.
MANY_CATEGORY_TASKS = ("banking77", "hwu64")
TASKS = DATASETS + MANY_CATEGORY_TASKS
INTENTS = 10
INTENT_SEED = 7


def output_file(dataset: str, suffix: str) -> Path:
    """``learning_curve<suffix>`` for banking, ``learning_curve_<dataset><suffix>`` otherwise."""
    return RESULTS / f"learning_curve{'' if dataset == 'banking' else '_' + dataset}{suffix}"


def intent_label(intent: str) -> str:
    """``card_payment_not_recognised`` -> ``card payment not recognised``."""
    return intent.replace("_", " ").strip(" ?").lower()


def load_rows(dataset: str = "banking") -> list[dict[str, str]]:
    path = DATA_DIR / "hwu.csv" if dataset.startswith("hwu") else DATA
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if dataset in ("banking", "hwu"):  # topics / scenarios, named as the file names them
        return rows
    if dataset in MANY_CATEGORY_TASKS:
        return [{**r, "label": intent_label(r["intent"])} for r in rows]
    chosen = set(random.Random(INTENT_SEED).sample(sorted({r["intent"] for r in rows}), INTENTS))
    return [{**r, "label": intent_label(r["intent"])} for r in rows if r["intent"] in chosen]


def labels_of(rows: list[dict[str, str]]) -> list[str]:
    return sorted({row["label"] for row in rows})


def test_set(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The fixed stratified test subsample (up to 100 per category of split=test)."""
    rng = random.Random(TEST_SEED)
    chosen = []
    for label in labels_of(rows):
        members = [r for r in rows if r["split"] == "test" and r["label"] == label]
        chosen += rng.sample(members, min(TEST_PER_CATEGORY, len(members)))
    return [
        {"id": f"test-{i}", "text": r["text"], "label": r["label"]} for i, r in enumerate(chosen)
    ]


def training_sample(rows: list[dict[str, str]], k: int, seed: int) -> tuple[list[dict], list[dict]]:
    """k per category from split=train, then 85/15 into train/validation (same for all methods)."""
    train, val = [], []
    for label in labels_of(rows):
        members = [r for r in rows if r["split"] == "train" and r["label"] == label]
        picked = random.Random(f"{seed}:{label}").sample(members, k)
        examples = [
            {"id": f"{label}-{i}", "text": r["text"], "label": label} for i, r in enumerate(picked)
        ]
        n_val = max(1, round(k * VAL_FRACTION))
        val += examples[:n_val]
        train += examples[n_val:]
    return train, val


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(method: str, k: int, seed: int, dataset: str = "banking") -> dict:
    """One measured run in this process: what a pipeline run does, end to end."""
    import torch

    torch.set_num_threads(2)
    started = time.perf_counter()
    rows = load_rows(dataset)
    labels = labels_of(rows)
    test = test_set(rows)
    train, val = training_sample(rows, k, seed)
    truth = [e["label"] for e in test]
    result: dict = {"method": method, "k": k, "seed": seed, "num_test": len(test)}
    result["machine"] = machine.summary()  # runs accumulate over sessions and machines
    if method == "setfit":
        result.update(_run_setfit(train + val, test, labels, seed))
    elif method == "probe":
        result.update(_run_probe(train + val, test, labels))
    else:
        import tempfile

        from shared.classifier import CategorySpec, default_base_model, load_base_classifier
        from shared.training_config import TrainingConfig
        from worker.fine_tuning import engine
        from worker.fine_tuning.metrics import calibration, classification_metrics

        categories = [CategorySpec(label, label) for label in labels]
        base_model = default_base_model()
        if method == "zero_shot":
            base = load_base_classifier(base_model)
            classified = base.classify([e["text"] for e in test], categories)
            scores = classification_metrics(truth, [p.label for p in classified], labels)
            result.update(
                accuracy=scores["accuracy"],
                macro_f1=scores["macro_f1"],
                calibration_error=calibration(truth, classified)["ece"],
            )
        else:
            config = TrainingConfig(method=method, seed=seed)
            with tempfile.TemporaryDirectory() as scratch:
                examples = train + val
                checked = engine.validate(examples, (0.85, 0.15, 0.0), seed)
                info = engine.train_model(
                    engine.examples_by_ids(examples, checked["split"]["train"]),
                    engine.examples_by_ids(examples, checked["split"]["val"]),
                    config,
                    base_model,
                    categories,
                    output_dir=Path(scratch) / "adapter",
                )
                evaluated = engine.evaluate_model(info["adapter_dir"], base_model, test, categories)
            result.update(
                accuracy=evaluated["accuracy"],
                macro_f1=evaluated["macro_f1"],
                baseline_accuracy=evaluated["baseline_accuracy"],
                calibration_error=evaluated["calibration"]["ece"],
                baseline_calibration_error=evaluated["baseline_calibration"]["ece"],
                calibration_error_before_scaling=(
                    evaluated["calibration_before_scaling"] or {}
                ).get("ece"),
                meets_criteria=evaluated["meets_criteria"],
                train_seconds=info["train_seconds"],
                eval_seconds=evaluated["eval_seconds"],
                best_epoch=info["best_epoch"],
                epochs_run=info["epochs_run"],
            )
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def _run_probe(examples: list[dict], test: list[dict], labels: list[str]) -> dict:
    """The frozen linear probe of issue 19: ``LogisticRegression(C=10)`` on mean-pooled,
    normalised all-MiniLM-L6-v2 embeddings of all k examples, nothing else."""
    from sklearn.linear_model import LogisticRegression

    from shared.classifier import default_base_model, load_base_classifier
    from worker.fine_tuning.metrics import classification_metrics

    encoder = load_base_classifier(default_base_model())
    started = time.perf_counter()
    train_x = encoder.encode([e["text"] for e in examples]).numpy()
    model = LogisticRegression(C=10, max_iter=2000).fit(train_x, [e["label"] for e in examples])
    train_seconds = time.perf_counter() - started
    predicted = model.predict(encoder.encode([e["text"] for e in test]).numpy())
    scores = classification_metrics([e["label"] for e in test], list(predicted), labels)
    return {
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "train_seconds": round(train_seconds, 2),
    }


def _run_setfit(examples: list[dict], test: list[dict], labels: list[str], seed: int) -> dict:
    """SetFit with its default settings on the same base model and examples."""
    import tempfile

    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from shared.classifier import default_base_model

    started = time.perf_counter()
    model = SetFitModel.from_pretrained(default_base_model(), labels=labels)
    dataset = Dataset.from_dict(
        {
            "text": [e["text"] for e in examples],
            "label": [labels.index(e["label"]) for e in examples],
        }
    )
    trainer = Trainer(
        model=model,
        # Defaults except the seed; checkpoints go to a temporary folder, not the repo.
        args=TrainingArguments(
            seed=seed, show_progress_bar=False, output_dir=tempfile.mkdtemp(prefix="setfit-")
        ),
        train_dataset=dataset,
    )
    trainer.train()
    train_seconds = time.perf_counter() - started
    predicted = model.predict([e["text"] for e in test], as_numpy=True)
    predicted = [labels[int(p)] if not isinstance(p, str) else p for p in predicted]
    from worker.fine_tuning.metrics import classification_metrics

    scores = classification_metrics([e["label"] for e in test], predicted, labels)
    import setfit

    return {
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "train_seconds": round(train_seconds, 2),
        "setfit_version": setfit.__version__,
    }


def load_results(dataset: str = "banking") -> list[dict]:
    path = output_file(dataset, ".json")
    if path.is_file():
        return json.loads(path.read_text())["runs"]
    return []


def save_results(runs: list[dict], dataset: str = "banking") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = sorted(runs, key=lambda r: (METHODS.index(r["method"]), r["k"], r["seed"]))
    output_file(dataset, ".json").write_text(
        json.dumps({"runs": runs, "summary": summarize(runs)}, indent=2) + "\n"
    )


def summarize(runs: list[dict]) -> dict:
    """Mean accuracy / seconds / peak RSS per method and k (over the seeds present)."""
    summary: dict = {}
    for run in runs:
        summary.setdefault(run["method"], {}).setdefault(str(run["k"]), []).append(run)
    table: dict = {}
    for method, by_k in summary.items():
        table[method] = {}
        for k, group in sorted(by_k.items(), key=lambda item: int(item[0])):
            accuracies = [r["accuracy"] for r in group]
            mean = sum(accuracies) / len(accuracies)
            std = (sum((a - mean) ** 2 for a in accuracies) / max(1, len(accuracies) - 1)) ** 0.5
            table[method][k] = {
                "accuracy_mean": round(mean, 4),
                "accuracy_std": round(std, 4),
                "seeds": sorted(r["seed"] for r in group),
                "seconds_mean": round(sum(r["seconds"] for r in group) / len(group), 2),
                "peak_rss_mb_max": max(r["peak_rss_mb"] for r in group),
            }
    return table


def markdown_table(runs: list[dict]) -> str:
    """Accuracy mean ± std (seeds) per method and k, plus mean seconds and peak RSS."""
    table = summarize(runs)
    ks = sorted({int(k) for by_k in table.values() for k in by_k})
    lines = [
        "| method | " + " | ".join(f"k={k}" for k in ks) + " | seconds (k=8) | peak RSS MB |",
        "| --- | " + " | ".join("---" for _ in ks) + " | --- | --- |",
    ]
    for method in METHODS:
        if method not in table:
            continue
        cells = []
        for k in ks:
            entry = table[method].get(str(k))
            cells.append(
                f"{entry['accuracy_mean']:.3f} ± {entry['accuracy_std']:.3f} (n={len(entry['seeds'])})"
                if entry
                else "—"
            )
        at8 = table[method].get("8")
        seconds = f"{at8['seconds_mean']:.1f}" if at8 else "—"
        rss = max(entry["peak_rss_mb_max"] for entry in table[method].values())
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {seconds} | {rss:.0f} |")
    return "\n".join(lines)


def mean_over_datasets_table(datasets: tuple[str, ...] = DATASETS) -> str:
    """Markdown: per method and k, the mean over datasets of each dataset's seed mean
    (only where every dataset has that method and k), and the gap to the frozen probe."""
    tables = {dataset: summarize(load_results(dataset)) for dataset in datasets}
    ks = sorted({int(k) for table in tables.values() for by_k in table.values() for k in by_k})
    means: dict[str, dict[int, float]] = {}
    for method in METHODS:
        for k in ks:
            entries = [tables[d].get(method, {}).get(str(k)) for d in datasets]
            if all(entries):
                means.setdefault(method, {})[k] = sum(e["accuracy_mean"] for e in entries) / len(
                    entries
                )
    lines = [
        f"| mean over {', '.join(datasets)} | " + " | ".join(f"k={k}" for k in ks) + " |",
        "| --- | " + " | ".join("---" for _ in ks) + " |",
    ]
    for method, by_k in means.items():
        cells = []
        for k in ks:
            if k not in by_k:
                cells.append("—")
                continue
            probe = means.get("probe", {}).get(k)
            gap = (
                f" ({100 * (by_k[k] - probe):+.1f})"
                if probe is not None and method != "probe"
                else ""
            )
            cells.append(f"{by_k[k]:.3f}{gap}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], dataset: str = "banking") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarize(runs)
    figure, axis = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        if method not in table:
            continue
        ks = sorted(int(k) for k in table[method])
        means = [table[method][str(k)]["accuracy_mean"] for k in ks]
        stds = [table[method][str(k)]["accuracy_std"] for k in ks]
        axis.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=method)
    axis.set_xscale("log", base=2)
    axis.set_xticks([4, 8, 16, 32], labels=["4", "8", "16", "32"])
    axis.set_xlabel("examples per category")
    num_test = runs[0]["num_test"] if runs else 0
    labels = labels_of(load_rows(dataset))
    axis.set_ylabel(f"accuracy ({num_test} test texts)")
    axis.set_title(f"{dataset}: all-MiniLM-L6-v2, {len(labels)} categories, mean ± std over seeds")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(output_file(dataset, ".png"), dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="zero_shot,head,lora")
    parser.add_argument("--ks", default="4,8,16,32")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rerun", action="store_true", help="replace stored runs")
    parser.add_argument(
        "--summary", action="store_true", help="run nothing: only report the stored runs"
    )
    parser.add_argument("--dataset", choices=TASKS, default="banking")
    parser.add_argument(
        "--plot",
        action="store_true",
        help="write the plot next to the results (after running what is missing; see --summary)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print a Markdown table (after running what is missing; see --summary)",
    )
    parser.add_argument(
        "--all-datasets",
        action="store_true",
        help="run nothing: print each task's table and the means over tasks (Markdown)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: method,k,seed
    args = parser.parse_args()
    dataset = args.dataset
    if args.all_datasets:
        for name in TASKS:
            print(f"### {name}\n\n{markdown_table(load_results(name))}\n")
        print(mean_over_datasets_table() + "\n")
        print(mean_over_datasets_table(TASKS))
        return
    if args.one:
        method, k, seed = args.one.split(",")
        print(json.dumps(run_one(method, int(k), int(seed), dataset)))
        return
    runs = load_results(dataset)
    if not args.summary:
        for method in args.methods.split(","):
            for k in [int(k) for k in args.ks.split(",")]:
                for seed in [int(s) for s in args.seeds.split(",")]:
                    done = [
                        r for r in runs if (r["method"], r["k"], r["seed"]) == (method, k, seed)
                    ]
                    if done and not args.rerun:
                        continue
                    output = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--dataset",
                            dataset,
                            "--one",
                            f"{method},{k},{seed}",
                        ],
                        capture_output=True,
                        text=True,
                    )
                    if output.returncode != 0:
                        print(output.stderr[-3000:], file=sys.stderr)
                        raise SystemExit(f"run {method} k={k} seed={seed} failed")
                    result = json.loads(output.stdout.strip().splitlines()[-1])
                    print(json.dumps(result), file=sys.stderr, flush=True)
                    # Re-read before writing: another benchmark process (SetFit runs for
                    # an hour) may have stored its own results meanwhile.
                    runs = [
                        r
                        for r in load_results(dataset)
                        if (r["method"], r["k"], r["seed"]) != (method, k, seed)
                    ]
                    runs.append(result)
                    save_results(runs, dataset)
    if args.plot:
        plot(runs, dataset)
    if args.markdown:
        print(markdown_table(runs))
        return
    print(json.dumps(summarize(runs), indent=2))


if __name__ == "__main__":
    main()
