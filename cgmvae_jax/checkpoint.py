"""Checkpoints of a training run: the latest few and the best, written with Orbax.

This is the only module that imports orbax. A workdir holds

    checkpoints/latest/<epoch>/   train state + progress (JSON), one per epoch, `keep` kept
    checkpoints/best/<epoch>/     parameters of the best-on-validation epoch (one kept)

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
during a save leaves the previous checkpoint intact. `restore_latest` falls back to an older
checkpoint, with a warning, when the newest one cannot be read.
"""

from __future__ import annotations

import logging as std_logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class _QuietOrbax(std_logging.Filter):
    """Drops Orbax's INFO records (several per save) from the absl log; warnings still show."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


logging.get_absl_logger().addFilter(_QuietOrbax())


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Latest and best checkpoints of one workdir.

    Args:
      workdir: The run directory; checkpoints go to `workdir/checkpoints/`.
      keep: How many latest checkpoints to keep.
      async_save: Write checkpoints in a background thread (call `wait` before reading them).
    """

    def __init__(self, workdir: str, *, keep: int = 2, async_save: bool = True):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.directory = root
        self._latest = ocp.CheckpointManager(
            os.path.join(root, "latest"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max(int(keep), 1),
                create=True,
                enable_async_checkpointing=async_save,
            ),
        )
        self._best = ocp.CheckpointManager(
            os.path.join(root, "best"),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, enable_async_checkpointing=async_save
            ),
        )

    def save_latest(self, epoch: int, state: Any, best_params: Any, progress: dict) -> None:
        """Saves the train state, the best parameters so far and JSON progress after `epoch`."""
        self._latest.save(
            int(epoch),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                best_params=ocp.args.StandardSave(best_params),
                progress=ocp.args.JsonSave(progress),
            ),
            force=True,
        )

    def save_best(self, epoch: int, params: Any, info: dict) -> None:
        """Saves the parameters of the best epoch and a JSON description of it."""
        self._best.save(
            int(epoch),
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), info=ocp.args.JsonSave(info)
            ),
            force=True,
        )

    def latest_epoch(self) -> int | None:
        return self._latest.latest_step()

    def restore_latest(self, state: Any, best_params: Any) -> tuple[Any, Any, dict] | None:
        """Restores (state, best_params, progress) from the newest readable checkpoint.

        `state` and `best_params` give the structure, shapes and dtypes (concrete or abstract
        arrays). Returns None when there is no checkpoint. A checkpoint that fails to load
        (truncated or corrupt files) is reported and the next older one is tried.
        """
        steps = sorted(self._latest.all_steps(), reverse=True)
        errors = []
        for step in steps:
            try:
                restored = self._latest.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(_abstract(state)),
                        best_params=ocp.args.StandardRestore(_abstract(best_params)),
                        progress=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as e:  # noqa: BLE001 - any read failure means "try an older one"
                errors.append(f"epoch {step}: {type(e).__name__}: {e}")
                logging.warning(
                    "Checkpoint %s/latest/%d could not be read (%s: %s); trying an older one.",
                    self.directory,
                    step,
                    type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "",
                )
                continue
            return restored["state"], restored["best_params"], dict(restored["progress"])
        if errors:
            raise RuntimeError(
                f"No readable checkpoint in {self.directory}/latest; every one failed:\n  "
                + "\n  ".join(errors)
                + "\nDelete that directory (or use a new --workdir) to start afresh."
            )
        return None

    def best_epoch(self) -> int | None:
        return self._best.latest_step()

    def restore_best(self, params: Any) -> tuple[Any, dict]:
        """Restores (params, info) of the best epoch; `params` gives the structure."""
        step = self._best.latest_step()
        if step is None:
            raise FileNotFoundError(f"No best checkpoint in {self.directory}/best.")
        restored = self._best.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(_abstract(params)), info=ocp.args.JsonRestore()
            ),
        )
        return restored["params"], dict(restored["info"])

    def restore_best_info(self) -> dict:
        """The JSON description saved with the best parameters."""
        step = self._best.latest_step()
        if step is None:
            raise FileNotFoundError(f"No best checkpoint in {self.directory}/best.")
        restored = self._best.restore(step, args=ocp.args.Composite(info=ocp.args.JsonRestore()))
        return dict(restored["info"])

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def close(self) -> None:
        self._latest.close()
        self._best.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
