"""How many CPU threads each Sortloop process computes with, and at what priority.

Every torch process starts as many compute threads as the host has cores. On a small
host the web processes and the training worker then oversubscribe the CPU and spin
against each other: measured on 2 cores (issue 21), 20 clients got 14 submissions/s,
3.5 while a run trained, and 124 with one thread per process set by hand. So the
product sets them, per role, at process start:

- ``web``: each web process classifies with ``web_torch_threads`` threads (1 on hosts
  of up to 4 cores, 2 above); throughput comes from processes
  (``web_workers``, by default one per core, at least 2) and from batching concurrent
  requests (``web.analyzer``), not from threads inside one matrix product.
- ``training``: the training worker takes the cores the web tier does not need
  (all but one on hosts of up to 8 cores, all but two above; at least 1) and runs at a
  lower CPU priority (``training_nice``), so a run never stalls the public path.
- ``cpu``: the worker of the ``default`` and ``inference`` queues (bulk classification,
  imports, housekeeping): below the web tier's priority, the cores shared among its
  concurrent children (``--concurrency``; every core for one child). At that priority
  it computes with what the web tier leaves: measured on 2 cores with a
  BART-large-shaped model classifying a backlog, 20 clients' p99 stayed 160 ms with
  the worker on 1 thread or on 2, and a burst of 20 submissions had its categories in
  36 s instead of 62 (bench/README.md, ``heavy_model.py``).

Batch work (the ``inference`` queue's bulk classification, ``sortloop import-submissions``)
also chooses its precision (``batch_precision``): on a CPU that computes bf16 natively
(AVX512-BF16 or AMX), the embedding encoder runs under bf16 autocast, 1.6-1.9 times
torch fp32 and 1.3-1.5 times ONNX Runtime fp32 on 2 cores, with the same labels on
99.5-100 % of the texts of five real tasks, zero-shot and with the head (bench/README.md,
``inference_backends.py``). A cross-encoder only when asked (``SORTLOOP_BATCH_PRECISION=bf16``).
The web tier keeps fp32 (ONNX Runtime): a single text is faster there (5.5 ms against
9.5 ms), and a text's confidence does not depend on what else was in its batch.

Every value can be set in the environment (README's configuration table); the plan is
logged at start so an operator sees what a process chose. Plain Python: no Flask, no
Celery, and torch only imported when the plan is applied.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from shared.classifier.base import EMBEDDING
from shared.config import Config

logger = logging.getLogger(__name__)

ROLES = ("web", "training", "cpu")
# Hosts up to this many cores count as small: one compute thread per web process.
SMALL_HOST_CORES = 4


@dataclass(frozen=True)
class ComputePlan:
    """What one process of ``role`` computes with."""

    role: str
    cores: int
    torch_threads: int
    nice: int  # added to the process's CPU niceness (0: unchanged)

    def describe(self) -> str:
        return (
            f"compute role={self.role} cores={self.cores} torch_threads={self.torch_threads} "
            f"nice=+{self.nice} pid={os.getpid()}"
        )


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, as a container limits it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def web_workers(config: Config, cores: int | None = None) -> int:
    """gunicorn worker processes: ``SORTLOOP_WEB_WORKERS``, else one per core (at least 2)."""
    cores = cores or available_cores()
    return config.web_workers or max(2, cores)


def plan_for(
    role: str, config: Config, cores: int | None = None, concurrency: int | None = None
) -> ComputePlan:
    """The plan of a ``role`` process on a host of ``cores`` (this one by default);
    ``concurrency``: a worker's child processes (Celery's default: one per core)."""
    if role not in ROLES:
        raise ValueError(f"unknown compute role {role!r}; expected one of {ROLES}")
    cores = cores or available_cores()
    if role == "web":
        threads = config.web_torch_threads or (1 if cores <= SMALL_HOST_CORES else 2)
        return ComputePlan(role, cores, threads, 0)
    if role == "training":
        spare = 1 if cores <= 8 else 2
        threads = config.training_threads or max(1, cores - spare)
        return ComputePlan(role, cores, threads, config.training_nice)
    children = max(1, concurrency or cores)
    threads = config.cpu_worker_threads or max(1, cores // children)
    return ComputePlan(role, cores, threads, config.training_nice)


def apply(plan: ComputePlan, *, lower_priority: bool = True) -> ComputePlan:
    """Set this process's torch threads and niceness per ``plan``; log it; return it.

    Call it once per process, before the first model runs. A forked child inherits
    the niceness (niceness adds up: pass ``lower_priority=False`` there) and sets its
    own thread pools.
    """
    # torch's intra-op pool (OpenMP): setting OMP_NUM_THREADS here would come too late,
    # the library read it when torch was imported.
    import torch

    torch.set_num_threads(plan.torch_threads)
    # Raises once set, or once parallel work ran in this process: then it stays.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    if plan.nice and lower_priority:
        try:
            os.nice(plan.nice)
        except OSError as error:  # pragma: no cover - a sandbox may refuse it
            logger.warning("could not lower the CPU priority by %d: %s", plan.nice, error)
    logger.info(plan.describe())
    return plan


def configure(role: str, config: Config | None = None) -> ComputePlan:
    """``apply(plan_for(role, config))`` with the environment's config by default."""
    return apply(plan_for(role, config or Config.from_env()))


def native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX tiles):
    elsewhere torch emulates them, slower than fp32."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def batch_precision(config: Config, kind: str = EMBEDDING) -> str:
    """``bf16`` or ``fp32``: what batch work's model of ``kind`` computes in on a CPU
    (``SORTLOOP_BATCH_PRECISION``). ``auto`` takes bf16 for a sentence encoder where
    ``native_bf16``, its labels checked on real data; a cross-encoder (``nli``) only when
    ``bf16`` is asked for: bart-large-mnli's labels in bf16 could not be checked here
    (its weights cannot be downloaded), though a GPU has always run it in bf16."""
    if config.batch_precision == "auto":
        return "bf16" if kind == EMBEDDING and native_bf16() else "fp32"
    return config.batch_precision
