"""Data parallelism: a device mesh with a `data` axis, batches sharded on it, state replicated.

Devices are all of `jax.devices()` (every process's, after `initialize_distributed` on a
multi-process run) or the first `config.num_devices` of them. With one device no mesh is built
and every helper returns None (or does what it did without a mesh), so the single-device
program has no sharding annotations. The gradient reduction over the sharded batch is left to
the compiler (`AxisType.Auto`); there is no hand-written communication.

On several processes every array a compiled program takes is a global `jax.Array`:
`put_replicated` for values every process holds identically (keys, the epoch, evaluation
chunks, masks) and `put_process_rows` for batches of which each process transfers only the rows
its own devices hold (`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

# This project's names for the process count and index of a multi-process run
# (`JAX_COORDINATOR_ADDRESS` is JAX's own).
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r} is not an integer.") from None


# Over 80 lines with its docstring (every way of joining a cluster is documented).
def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    initialization_timeout: int = 300,
) -> bool:
    """Joins a multi-process run (`jax.distributed.initialize`); call it before any other JAX call.

    Arguments left None come from the environment: `$JAX_COORDINATOR_ADDRESS` (JAX's own),
    `$JAX_NUM_PROCESSES` and `$JAX_PROCESS_ID` (this project's). Without a coordinator address
    and without `auto`, nothing happens: a single process, exactly as without this call.
    CPU processes exchange data with gloo (over TCP, e.g. the loopback interface).

    Args:
      coordinator_address: `host:port` of process 0, which runs the coordination service.
      num_processes: Number of processes.
      process_id: This process's index, 0 .. num_processes - 1.
      auto: Let JAX detect the cluster (SLURM, Open MPI, Cloud TPU, ...) for the values not
        given.
      initialization_timeout: Seconds to wait for every process to join.

    Returns:
      True when `jax.distributed.initialize` ran.

    Raises:
      ValueError: Incomplete settings (e.g. a process count without a coordinator address), or
        `auto` found no cluster.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None:
        num_processes = _env_int(NUM_PROCESSES_ENV)
    if process_id is None:
        process_id = _env_int(PROCESS_ID_ENV)
    if not auto and coordinator_address is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError(
                f"num_processes={num_processes}, process_id={process_id} but no coordinator "
                "address: pass --coordinator_address=HOST:PORT (or set $JAX_COORDINATOR_ADDRESS), "
                "or --distributed=auto on a SLURM / Open MPI / TPU cluster."
            )
        return False
    missing = [
        name
        for name, value in (
            (f"--num_processes (${NUM_PROCESSES_ENV})", num_processes),
            (f"--process_id (${PROCESS_ID_ENV})", process_id),
        )
        if value is None
    ]
    if not auto and missing:
        raise ValueError(
            f"Coordinator address {coordinator_address} given without {' and '.join(missing)}; "
            "pass them, or --distributed=auto to let JAX detect the cluster."
        )
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            initialization_timeout=int(initialization_timeout),
        )
    except ValueError as e:  # auto-detection found nothing
        found = "JAX detected no cluster (SLURM, Open MPI, Cloud TPU): " if auto else ""
        raise ValueError(
            f"Could not join a multi-process run: {found}{e} Pass --coordinator_address, "
            "--num_processes and --process_id (or $JAX_COORDINATOR_ADDRESS, "
            f"${NUM_PROCESSES_ENV}, ${PROCESS_ID_ENV})."
        ) from None
    logging.info(
        "Process %d of %d: %d local device(s), %d in all (%s).",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].platform,
    )
    return True


def make_mesh(config) -> jax.sharding.Mesh | None:
    """A 1-D mesh over the configured devices, or None when one device is used."""
    devices = jax.devices()
    n = int(config.num_devices) or len(devices)
    if n > len(devices):
        raise ValueError(
            f"config.num_devices={n} but only {len(devices)} device(s) are visible "
            f"({devices[0].platform}). Use --config.num_devices=0 for all of them."
        )
    if jax.process_count() > 1 and n != len(devices):
        raise ValueError(
            f"config.num_devices={n} on a run of {jax.process_count()} processes: every "
            f"process's devices take part, so use --config.num_devices=0 (all {len(devices)})."
        )
    if n == 1:
        return None
    if int(config.batch_size) % n:
        raise ValueError(
            f"config.batch_size={config.batch_size} is not divisible by the {n} devices of the "
            "data-parallel mesh; choose a multiple of the device count or set "
            "--config.num_devices."
        )
    return jax.sharding.Mesh(
        np.asarray(devices[:n]), ("data",), axis_types=(jax.sharding.AxisType.Auto,)
    )


def replicated(mesh) -> jax.sharding.NamedSharding | None:
    """Sharding of state and metrics: a full copy on every device."""
    return None if mesh is None else jax.sharding.NamedSharding(mesh, jax.P())


def batch_sharding(mesh) -> jax.sharding.NamedSharding | None:
    """Sharding of a [B, ...] batch: rows split over the `data` axis."""
    return None if mesh is None else jax.sharding.NamedSharding(mesh, jax.P("data"))


def stacked_batch_sharding(mesh) -> jax.sharding.NamedSharding | None:
    """Sharding of batches stacked [S, n, B, ...] (seeds, steps): rows split over `data`."""
    return None if mesh is None else jax.sharding.NamedSharding(mesh, jax.P(None, None, "data"))


def put_replicated(tree, sharding: jax.sharding.Sharding | None):
    """Host values every process holds identically, as global arrays replicated on `sharding`.

    Typed PRNG keys go through their key data (`device_put` cannot place a key array on other
    processes' devices). Without a sharding (one device) leaves become plain device arrays.
    """

    def put(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            if sharding is None:
                return x
            data = put(np.asarray(jax.random.key_data(x)))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        if sharding is None:
            return jnp.asarray(x)
        return jax.device_put(np.asarray(x), sharding)

    return jax.tree.map(put, tree)


def process_slice(sharding: jax.sharding.Sharding, shape: tuple[int, ...], axis: int) -> slice:
    """The indices along `axis` that this process's devices hold of an array of `shape`.

    Raises:
      ValueError: They are not one contiguous block (a mesh whose devices are not grouped by
        process), which `jax.make_array_from_process_local_data` needs.
    """
    index_map = sharding.addressable_devices_indices_map(tuple(shape))
    size = shape[axis]
    blocks = sorted({index[axis].indices(size)[:2] for index in index_map.values()})
    start, stop = blocks[0][0], blocks[0][1]
    for lo, hi in blocks[1:]:
        if lo != stop:
            raise ValueError(
                f"This process's devices hold the non-contiguous blocks {blocks} of axis {axis}."
            )
        stop = hi
    return slice(start, stop)


def put_process_rows(local: np.ndarray, sharding: jax.sharding.Sharding, shape: tuple[int, ...]):
    """A global array of `shape` from this process's block of rows (`process_slice`)."""
    return jax.make_array_from_process_local_data(sharding, local, tuple(shape))


def fits_on_device(train_x: np.ndarray, train_y: np.ndarray, config) -> bool:
    """Whether the training split fits the configured device budget (`device_data_limit_mb`)."""
    megabytes = (train_x.nbytes + train_y.nbytes) / 2**20
    return megabytes <= float(config.device_data_limit_mb)
