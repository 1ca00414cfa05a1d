"""TensorBoard event files of a training run (tensorboardX; no TensorFlow needed).

With the `tensorboard` extra installed (`pip install -e ".[tensorboard]"`) and
`config.tensorboard` on (the default), every epoch's metrics.jsonl record also goes to
`WORKDIR/tensorboard/` as scalars: `train/<term>` (the loss terms, `grad_norm`), `lr`,
`val/<metric>` (fixed threshold), `val/tuned_macro_f1` (and `.../seed_<k>` per seed),
`val/tuned_threshold`, `samples_per_sec` and `epoch_seconds`. Watch a run live with

    tensorboard --logdir runs/

A resumed run purges the events of the epochs it trains again. metrics.jsonl stays the record
of the run; these files are for looking at it.
"""

from __future__ import annotations

import os

from absl import logging

EXTRA_HINT = 'pip install -e ".[tensorboard]"'


def tag_of(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key: train_loss -> train/loss."""
    for prefix in ("train_", "val_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix) :]}"
    return key


class EventWriter:
    """Writes metrics.jsonl records as TensorBoard scalars, or nothing when disabled.

    Args:
      workdir: The run directory; events go to `workdir/tensorboard/`.
      enabled: `config.tensorboard`.
      first_epoch: The first epoch this process trains (older events from there on are
        purged, as a resumed run rewrites them).
      first_seed: `config.seed`, to name the per-seed tags.
    """

    def __init__(self, workdir: str, *, enabled: bool, first_epoch: int, first_seed: int):
        self._writer = None
        self._first_seed = first_seed
        if not enabled:
            return
        try:
            import tensorboardX
        except ImportError:
            logging.info("TensorBoard event files are off: %s to write them.", EXTRA_HINT)
            return
        self._writer = tensorboardX.SummaryWriter(
            os.path.join(workdir, "tensorboard"), purge_step=first_epoch, flush_secs=10
        )

    def write(self, record: dict) -> None:
        """Adds the numeric values of one epoch's record at step = its epoch."""
        if self._writer is None:
            return
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key in ("epoch", "step"):
                continue
            if isinstance(value, list):  # per seed
                for i, v in enumerate(value):
                    self._writer.add_scalar(
                        f"{tag_of(key)}/seed_{self._first_seed + i}", float(v), epoch
                    )
            elif isinstance(value, (int, float)):
                self._writer.add_scalar(tag_of(key), float(value), epoch)

    def close(self) -> None:
        """Flushes and closes the event file; a failed write (full disk) is only logged.

        The event files are a view of metrics.jsonl, so losing their tail never stops a run
        or hides the error that ended it.
        """
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as e:
                logging.warning("TensorBoard event file not completed: %s", e.strerror or e)
            self._writer = None
