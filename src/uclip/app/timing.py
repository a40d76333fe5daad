"""Side-by-side timing shared by the benchmark scripts: interleaved calls, paired ratios, device.

Every timing in ``benchmarks/`` is a ratio measured in one run: the functions under test run one
after the other on the same input, in an order that rotates every call, so slow drifts of a
shared machine hit all of them alike; a ratio is then paired call by call.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from uclip.errors import UclipError

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def time_interleaved(
    functions: Mapping[str, Callable[[int], object]],
    *,
    repeats: int,
    warmup: int = 1,
    clock: Clock = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds of ``fn(r)`` for every repeat ``r``, ``{name: [seconds, ...]}``.

    Every function first gets ``warmup`` untimed calls (``r = 0, 1, ...``); then repeat ``r`` runs
    all functions once, in an order rotated by ``r`` so none always runs first or last and slow
    drifts of a shared machine hit all of them alike. Ratios of two lists are then paired
    (:func:`paired_ratio`). ``clock`` returns seconds (tests pass a fake one).
    """
    if not functions:
        raise UclipError("time_interleaved needs at least one function to time")
    if repeats < 1 or warmup < 0:
        raise UclipError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    names = list(functions)
    for name in names:
        for w in range(warmup):
            functions[name](w)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in [*names[shift:], *names[:shift]]:
            start = clock()
            functions[name](r)
            times[name].append(clock() - start)
            log.debug("repeat %d/%d %s: %.3f s", r + 1, repeats, name, times[name][-1])
    return times


def paired_ratio(times: Sequence[float], reference: Sequence[float]) -> float:
    """Median over repeats of ``times[r] / reference[r]`` (both measured in repeat ``r``)."""
    if len(times) != len(reference) or not times:
        raise UclipError("paired_ratio needs two equally long, non-empty lists of timings")
    return statistics.median(t / ref for t, ref in zip(times, reference, strict=True))


def batch_at(items: Sequence[Any], index: int, size: int) -> list[Any]:
    """Batch number ``index`` of ``size`` items, wrapping around ``items``."""
    start = (index * size) % len(items)
    return [items[(start + j) % len(items)] for j in range(size)]


def device_description() -> dict[str, Any]:
    """What the timings ran on: CPU model, cores, torch threads, OpenMP setting."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "device": f"cpu: {cpu}",
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
    }
