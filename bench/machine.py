"""The machine a benchmark ran on, for its JSON: figures from two machines do not compare.

The development machine is not always the same one: the sessions of 2026-12-03 to
2026-12-07 ran on a CPU with AVX-512 and native bf16 (AVX512-BF16, no AMX), the session of
2026-12-08 on an AMD EPYC with AVX2 only, where bf16 is emulated (about 6 times slower
than fp32 for the encoder) and every timing differs. Each benchmark records ``describe()`` beside its
results, and ``learning_curve.py`` records ``summary()`` in every run it stores.

    python bench/machine.py     # what this machine is, as the benchmarks record it
"""

from __future__ import annotations

import json
import os
import platform
from functools import cache
from importlib import metadata
from pathlib import Path

# The instruction sets that change what a CPU benchmark measures here: AVX2 (the
# baseline), AVX-512, native bf16 (batch work's precision, SORTLOOP_BATCH_PRECISION) and
# AMX tiles.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
PACKAGES = ("torch", "onnxruntime", "transformers", "scikit-learn", "numpy")


def _cpuinfo(text: str) -> tuple[str, set[str]]:
    """(model name, flags) of the first processor in a /proc/cpuinfo text."""
    model, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags":
            flags = set(value.split())
            break
    return model, flags


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@cache
def describe(cpuinfo: str | None = None) -> dict:
    """The CPU (model, cores, the instruction sets of ``FLAGS`` it has), the OS and
    Python, and the versions of the packages that compute (``PACKAGES``)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.is_file() else ""
    model, flags = _cpuinfo(cpuinfo)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "instruction_sets": [flag for flag in FLAGS if flag in flags],
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {package: _version(package) for package in PACKAGES},
    }


def summary(cpuinfo: str | None = None) -> str:
    """One line: ``"AMD EPYC, 2 cores, avx2"``."""
    found = describe(cpuinfo)
    return f"{found['cpu']}, {found['cores']} cores, {' '.join(found['instruction_sets']) or '-'}"


if __name__ == "__main__":
    print(json.dumps(describe(), indent=2))
