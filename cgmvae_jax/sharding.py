"""Data parallelism: a device mesh with a `data` axis, batches sharded on it, state replicated.

Devices are all of `jax.devices()` (every host's, after `initialize_distributed()` on a
multi-host run) or the first `config.num_devices` of them. With one device no mesh is built
and every helper returns None, so the single-device program has no sharding annotations.
The gradient reduction over the sharded batch is left to the compiler (`AxisType.Auto`); there
is no hand-written communication.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging


def initialize_distributed() -> None:
    """Joins a multi-host run (`jax.distributed.initialize`); no-op on a single process.

    Call it before any other JAX call on every host; cluster settings come from the environment
    (e.g. SLURM, Cloud TPU) as `jax.distributed.initialize` documents.
    """
    try:
        jax.distributed.initialize()
    except (ValueError, RuntimeError) as e:
        logging.info("jax.distributed.initialize skipped: %s", e)


def make_mesh(config) -> jax.sharding.Mesh | None:
    """A 1-D mesh over the configured devices, or None when one device is used."""
    devices = jax.devices()
    n = int(getattr(config, "num_devices", 0)) or len(devices)
    if n > len(devices):
        raise ValueError(
            f"config.num_devices={n} but only {len(devices)} device(s) are visible "
            f"({devices[0].platform}). Use --config.num_devices=0 for all of them."
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


def fits_on_device(train_x: np.ndarray, train_y: np.ndarray, config) -> bool:
    """Whether the training split fits the configured device budget (`device_data_limit_mb`)."""
    megabytes = (train_x.nbytes + train_y.nbytes) / 2**20
    return megabytes <= float(config.device_data_limit_mb)
