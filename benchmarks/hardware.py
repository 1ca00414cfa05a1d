"""Measurement utilities for the benchmarks: matmul peak, machine description, interleaved timing.

- `measure_matmul_peak_flops`: the achieved FLOP/s of a chain of N x N matrix products (jax or
  torch), the denominator of "fraction of peak" figures. It is measured in the same run as the
  step it is compared with, because a shared machine's speed drifts.
- `machine_info`: CPU model, cores, RAM, package versions and the UTC date, for result files.
- `interleaved_timing`: runs several timed functions in turns (A B A B ...) so that a ratio of
  their speeds holds on a noisy machine; `median_ratio` turns the per-round results into a ratio.

Example:

    peak = hardware.measure_matmul_peak_flops()
    times = hardware.interleaved_timing(
        {"jax": run_jax, "torch": run_torch}, steps_per_call={"jax": 100, "torch": 10})
    speedup = hardware.median_ratio(times, "jax", "torch")

Only numpy is imported at module level; jax and torch are imported by the functions that use
them, so `machine_info` and `interleaved_timing` work without torch.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping

import numpy as np

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch")


def _orthogonal(size: int, seed: int) -> np.ndarray:
    """A random orthogonal matrix `[N, N]`: products of it keep their scale (no overflow and
    no denormals however long the chain)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((size, size)))
    return q


def measure_matmul_peak_flops(
    dtype: str = "float32",
    size: int = 1024,
    repeats: int = 5,
    *,
    chain: int = 8,
    backend: str = "jax",
) -> float:
    """Measured matmul throughput: median FLOP/s of `chain` dependent `[N, N] @ [N, N]` products.

    With jax the chain is one jitted program (compiled and run once before timing); with torch
    it is a loop of `torch.mm(..., out=...)` under `torch.inference_mode` using the current
    `torch.get_num_threads()`. Each product counts `2 N^3` FLOPs.

    Args:
        dtype: "float32" or "bfloat16".
        size: N.
        repeats: Timed runs; the median is returned.
        chain: Products per timed run.
        backend: "jax" or "torch".

    Returns:
        FLOP/s (median over `repeats`).
    """
    if backend == "jax":
        run = _jax_chain(dtype, size, chain)
    elif backend == "torch":
        run = _torch_chain(dtype, size, chain)
    else:
        raise ValueError(f"backend must be 'jax' or 'torch', got {backend!r}")
    run()  # compile / warm up
    flops = 2.0 * size**3 * chain
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return flops / statistics.median(seconds)


def measure_torch_matmul_peak_flops(
    dtype: str = "float32", size: int = 1024, repeats: int = 5, *, chain: int = 8
) -> float:
    """`measure_matmul_peak_flops(..., backend="torch")`."""
    return measure_matmul_peak_flops(dtype, size, repeats, chain=chain, backend="torch")


def _jax_chain(dtype: str, size: int, chain: int) -> Callable[[], None]:
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), dtype=dtype)
    b = jnp.asarray(_orthogonal(size, 1), dtype=dtype)

    @jax.jit
    def products(x, m):
        for _ in range(chain):
            x = x @ m  # [N, N]
        return x

    return lambda: products(a, b).block_until_ready()


def _torch_chain(dtype: str, size: int, chain: int) -> Callable[[], None]:
    import torch

    torch_dtype = getattr(torch, dtype)
    a = torch.from_numpy(np.random.default_rng(0).standard_normal((size, size))).to(torch_dtype)
    b = torch.from_numpy(_orthogonal(size, 1)).to(torch_dtype)
    buffers = [torch.empty_like(a), torch.empty_like(a)]

    def run() -> None:
        with torch.inference_mode():
            x = a
            for i in range(chain):
                out = buffers[i % 2]
                torch.mm(x, b, out=out)
                x = out

    return run


def machine_info() -> dict:
    """Description of this machine and software for benchmark result files.

    Returns:
        Dict with `cpu_model`, `cpu_count` (logical CPUs), `available_cores` (usable by this
        process), `ram_gb`, `load_average_1min`, `platform`, `python`, `<package>_version` for
        jax, jaxlib, flax, optax, numpy, torch (None when not installed) and `date_utc`
        (ISO 8601).
    """
    info = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "available_cores": _available_cores(),
        "ram_gb": _ram_gb(),
        "load_average_1min": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for name in _PACKAGES:
        try:
            info[f"{name}_version"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[f"{name}_version"] = None
    info["date_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """1-minute load average: above the core count, other processes compete for the CPU."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def wait_for_quiet(threshold: float, max_wait: float, log: Callable[[str], None] = print) -> float:
    """Waits (up to `max_wait` s) for the load average to fall below `threshold` (0: no wait).

    Returns the seconds waited.
    """
    start = time.perf_counter()
    while threshold > 0 and time.perf_counter() - start < max_wait:
        load = load_average()
        if load is None or load < threshold:
            break
        log(f"   waiting for the load average ({load:.2f}) to fall below {threshold}")
        time.sleep(20)
    return round(time.perf_counter() - start, 1)


def _ram_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)  # kB -> GiB
    except OSError:
        pass
    return None


def interleaved_timing(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 5,
    min_seconds: float = 0.5,
    steps_per_call: int | Mapping[str, int] = 1,
    warmup_calls: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Times functions in turns, A B A B ..., and returns steps/s per function and round.

    Each function is called with no arguments, performs `steps_per_call` training steps and
    returns when they are finished (block on the result inside it). In every round each function
    is called repeatedly until `min_seconds` have passed (at least once), in the order of `fns`;
    a slow-down of the machine during a round therefore hits all functions alike, and the
    per-round ratio (`median_ratio`) stays meaningful.

    Args:
        fns: Name -> function; the dict order is the order within a round.
        repeats: Rounds.
        min_seconds: Minimum timed wall time per function and round.
        steps_per_call: Steps one call performs, for all functions or per name.
        warmup_calls: Untimed calls of each function before the first round (compilation).
        clock: Time source in seconds.

    Returns:
        Name -> list of `repeats` steps/s values, in round order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if isinstance(steps_per_call, Mapping):
        steps = {name: steps_per_call[name] for name in fns}
    else:
        steps = dict.fromkeys(fns, steps_per_call)
    for fn in fns.values():
        for _ in range(warmup_calls):
            fn()
    results: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            calls = 0
            start = clock()
            while True:
                fn()
                calls += 1
                elapsed = clock() - start
                if elapsed >= min_seconds and elapsed > 0:
                    break
            results[name].append(calls * steps[name] / elapsed)
    return results


def median_ratio(results: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of `results[numerator][i] / results[denominator][i]`."""
    pairs = zip(results[numerator], results[denominator], strict=True)
    return statistics.median(a / b for a, b in pairs)


def summarize(results: Mapping[str, list[float]]) -> dict[str, dict[str, float]]:
    """Name -> {"median", "min", "max"} of the per-round values."""
    return {
        name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
        for name, v in results.items()
    }
