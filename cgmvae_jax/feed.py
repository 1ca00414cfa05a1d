"""Feeding an epoch to the compiled steps: from device-resident data, or streamed from host
memory with the next chunk transferred while the current one trains.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import jax
import numpy as np
from absl import logging

from cgmvae_jax import sharding


def _stream_batches(
    train_x: np.ndarray, train_y: np.ndarray, indices, weights, chunk: int, batches=None
) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
    """Yields device batches [S, n, B, ...] chunk by chunk, one chunk ahead (double buffering).

    With `batches` (the sharding of [S, n, B, ...] on a mesh) each process gathers and
    transfers only the rows of each batch that its own devices hold, and the batches are
    global arrays assembled from every process's rows.
    """
    idx_host = np.asarray(indices)
    w_host = np.asarray(weights)
    steps = idx_host.shape[1]
    mine = slice(None)
    if batches is not None:
        mine = sharding.process_slice(batches, idx_host.shape, axis=2)

    def put(local, rows_shape):
        if batches is None:
            return jax.device_put(local)
        return sharding.put_process_rows(local, batches, rows_shape + local.shape[3:])

    def make(start):
        sl = slice(start, min(start + chunk, steps))
        rows = idx_host[:, sl]
        local = rows[:, :, mine]
        return (
            put(train_x[local], rows.shape),
            put(train_y[local], rows.shape),
            put(w_host[:, sl][:, :, mine], rows.shape),
        )

    starts = list(range(0, steps, chunk))
    pending = make(starts[0])
    for i in range(len(starts)):
        current = pending
        if i + 1 < len(starts):
            pending = make(starts[i + 1])  # transfer of the next chunk overlaps this one's compute
        yield current


class Feed:
    """The training split as the compiled calls of an epoch consume it.

    On the device when it fits `config.device_data_limit_mb` (each call gathers its batches
    from the resident arrays), else streamed from host memory chunk by chunk.

    On a mesh the resident split is replicated on every device (of every process), so that each
    epoch's permutation can pick any row on any device without moving data between devices;
    the step's sharding constraint then makes each device gather only its own rows of the
    batch. Streamed batches are sharded instead: each process transfers only its devices' rows.
    """

    def __init__(self, trainer, splits, config):
        self.trainer = trainer
        self.train_x, self.train_y = splits.train_x, splits.train_y
        self.on_device = sharding.fits_on_device(self.train_x, self.train_y, config)
        if self.on_device:
            self.x = jax.device_put(self.train_x, trainer.replicated)
            self.y = jax.device_put(self.train_y, trainer.replicated)
        else:
            logging.info(
                "Training split (%.1f MB) exceeds device_data_limit_mb=%g: streaming batches.",
                (self.train_x.nbytes + self.train_y.nbytes) / 2**20,
                config.device_data_limit_mb,
            )

    def calls(self, epoch: int) -> Iterator[Callable]:
        """The epoch's compiled calls, each `state -> (state, metrics [S, n])`."""
        trainer = self.trainer
        indices, weights = trainer.epoch_batches(epoch)
        chunk = trainer.steps_per_call
        if self.on_device:
            for start in range(0, trainer.steps_per_epoch, chunk):
                sl = slice(start, start + chunk)
                yield functools.partial(
                    trainer.run_steps,
                    data_x=self.x,
                    data_y=self.y,
                    indices=indices[:, sl],
                    weights=weights[:, sl],
                )
        else:
            stream = _stream_batches(
                self.train_x, self.train_y, indices, weights, chunk, trainer.stacked_sharding
            )
            for bx, by, bw in stream:
                yield functools.partial(trainer.run_batches, batch_x=bx, batch_y=by, weights=bw)
