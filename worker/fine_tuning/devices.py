"""Where training runs (CPU or one CUDA GPU) and how a GPU is fed.

Measured on an H100 (see DESIGN.md): an optimizer step costs ~90 ms whatever
its batch, so the GPU path trains in few, large steps built by *token budget*
from length buckets; frozen base weights are kept in bf16 while the trainable
LoRA/head parameters stay fp32; GPU memory is released after every run. The
CPU path is unchanged (fixed ``batch_size``, fp32), so CPU results stay
bit-for-bit what they were.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Sequence
from typing import Any

from shared.training_config import DEVICES


class DeviceUnavailable(ValueError):
    """``device="cuda"`` was asked for on a machine without a usable CUDA GPU."""


def resolve_device(device: str | None = "auto") -> str:
    """``"cuda"`` or ``"cpu"`` for a configured ``auto``/``cpu``/``cuda`` (None = auto)."""
    import torch

    requested = device or "auto"
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {requested!r}")
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise DeviceUnavailable("device 'cuda' was requested but no CUDA GPU is available")
    if requested == "auto":
        return "cuda" if available else "cpu"
    return requested


def gpu_recipe(device: str) -> bool:
    """Whether training on ``device`` uses the GPU recipe (token-budget batches, bf16 body)."""
    return device != "cpu"


def frozen_dtype(device: str) -> Any:
    """dtype of the frozen base weights: bf16 with the GPU recipe, fp32 on CPU."""
    import torch

    return torch.bfloat16 if gpu_recipe(device) else torch.float32


def token_budget_batches(
    lengths: Sequence[int],
    max_tokens: int,
    seed: int,
    *,
    cost_multiplier: int = 1,
    bucket_width: int = 8,
) -> list[list[int]]:
    """Index batches of at most ``max_tokens`` padded tokens, from length buckets.

    Texts are shuffled (``seed``), grouped into buckets of similar length
    (``bucket_width`` tokens), packed greedily from the shortest bucket on: a
    batch's cost is ``size x longest length x cost_multiplier`` (the NLI
    trainer scores every text against every category: multiplier = number of
    categories). The batches are then shuffled. Every index appears exactly
    once; a single example over the budget gets a batch of its own.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda index: lengths[index] // max(1, bucket_width))  # stable: shuffled ties
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        width = max(longest, int(lengths[index]))
        if current and (len(current) + 1) * width * cost_multiplier > max_tokens:
            batches.append(current)
            current, width = [], int(lengths[index])
        current.append(index)
        longest = width
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def reset_peak_memory(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float | None:
    """Peak allocated GPU memory since the last reset (MB), None on CPU."""
    import torch

    if device != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def allocated_memory_mb(device: str) -> float | None:
    import torch

    if device != "cuda":
        return None
    return round(torch.cuda.memory_allocated() / 2**20, 1)


def free_device_memory(device: str) -> None:
    """Collect garbage and hand cached CUDA blocks back (call after dropping model refs).

    On the CPU, reference counting frees the models already; a full collection
    there would only cost time (about 0.3 s a call with a model loaded)."""
    if device == "cuda":
        import torch

        gc.collect()
        torch.cuda.empty_cache()


# glibc's malloc raises its mmap threshold as large blocks are freed (up to 32 MB), after
# which activations come from the heap and stay there. Backpropagating through every
# encoder block with batches of changing shapes then held about 0.4-0.7 GB more than it
# used: peak RSS 1.53 GB at 32 per category on banking and 1.8 GB on the intents,
# against 1.10 GB with a fixed threshold of 64 KB (bench/README.md).
CPU_MMAP_THRESHOLD = 64 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameter, malloc.h


def return_large_blocks_to_the_os() -> bool:
    """Serve CPU blocks of 64 KB and more by mmap, so freed activations leave the process.

    Process-wide and kept for the process's life; it costs some speed (more page
    faults), so only the every-block LoRA recipe turns it on. False where the C
    library is not glibc (nothing changes there).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, CPU_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False
