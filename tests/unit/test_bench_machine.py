"""Every benchmark records the machine it ran on (bench/machine.py): the development
machine changes between sessions, and figures from two CPUs do not compare."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MACHINE = Path(__file__).resolve().parents[2] / "bench" / "machine.py"

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 fma

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
"""
AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 fma avx2 sha_ni vaes
"""


@pytest.fixture(scope="module")
def machine():
    spec = importlib.util.spec_from_file_location("bench_machine", MACHINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_benchmark_names_the_cpu_and_the_instruction_sets_that_change_its_figures(machine):
    intel = machine.describe(INTEL)
    assert intel["cpu"] == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert intel["instruction_sets"] == [
        "avx2",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
        "amx_tile",
        "amx_bf16",
    ]
    amd = machine.describe(AMD)
    assert amd["cpu"] == "AMD EPYC" and amd["instruction_sets"] == ["avx2"]
    assert machine.summary(AMD) == f"AMD EPYC, {amd['cores']} cores, avx2"
    # The packages that compute, by version: torch's build says CPU or CUDA.
    assert set(amd["packages"]) == {"torch", "onnxruntime", "transformers", "scikit-learn", "numpy"}
    assert amd["packages"]["torch"].startswith("2.13.0")


def test_this_machine_is_described_without_a_cpuinfo_to_read(machine):
    found = machine.describe()
    assert found["cpu"] and found["cores"] >= 1
    assert machine.describe("")["instruction_sets"] == []  # no /proc/cpuinfo: nothing claimed
