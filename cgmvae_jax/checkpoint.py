"""Checkpoints of a training run: the latest few and the best, written with Orbax.

This is the only module that imports orbax. A workdir holds

    checkpoints/latest/<epoch>/   train state + progress (JSON), one per epoch, `keep` kept
    checkpoints/best/<epoch>/     parameters of the best-on-validation epoch (one kept)

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
during a save leaves the previous checkpoint intact (leftover temporary directories are removed
when the next run opens the workdir). Every checkpoint also records a checksum of its arrays and
progress, and saving refuses NaN/inf arrays. `restore_latest` verifies the checksum and falls back
to an older checkpoint, with a warning naming the unreadable one, when the newest one cannot be
read or does not match (truncated or garbled files); the training run moves the unreadable one
to `checkpoints/unreadable/`. A failed write (full disk, no permission) raises `OutputWriteError`
saying which checkpoint is still intact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging as std_logging
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from cgmvae_jax import workdir as workdir_lib


class _QuietOrbax(std_logging.Filter):
    """Drops Orbax's INFO records (several per save) from the absl log; warnings still show.

    Orbax's errors keep their message but lose the traceback: a failed background save logs
    one from each of its threads, and `Checkpointer` raises the error again with the fix.
    """

    def filter(self, record: std_logging.LogRecord) -> bool:
        if "orbax" not in record.pathname:
            return True
        if record.levelno >= std_logging.ERROR:
            record.exc_info, record.exc_text = None, None
        return record.levelno >= std_logging.WARNING


class _QuietOrbaxTasks(std_logging.Filter):
    """Drops asyncio's "exception was never retrieved" reports of failed Orbax writes.

    After a failed save (e.g. a full disk) each of Orbax's write tasks reports the same error
    again when it is garbage-collected, burying the one `OutputWriteError` message.
    """

    def filter(self, record: std_logging.LogRecord) -> bool:
        text = record.getMessage()
        if "exception was never retrieved" not in text:
            return True
        return not any(k in text for k in ("orbax", "RESOURCE_EXHAUSTED", "No space left"))


@contextlib.contextmanager
def quiet_orbax():
    """Within the block, Orbax's INFO log records and repeated write-error reports are dropped.

    For programs that own the process's logging (the launchers, `cgmvae_jax.fit`); importing
    this module changes no logger.
    """
    filters = (
        (logging.get_absl_logger(), _QuietOrbax()),
        (std_logging.getLogger("asyncio"), _QuietOrbaxTasks()),
    )
    for logger, f in filters:
        logger.addFilter(f)
    try:
        yield
    finally:
        for logger, f in filters:
            logger.removeFilter(f)


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


_CHECKSUM_KEY = "checksum"


# A checkpoint could not be written (full disk, no permission, ...).
OutputWriteError = workdir_lib.OutputWriteError


class NonFiniteCheckpointError(FloatingPointError):
    """A checkpoint was about to be written with NaN or inf values; nothing was written."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's content does not match the checksum written with it."""


class UnreadableCheckpointError(RuntimeError):
    """No latest checkpoint of a workdir can be read."""


def _host_leaves(tree: Any) -> list[tuple[str, np.ndarray]] | None:
    """(path, host array) pairs of a pytree; None when some leaf is not on this host."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = []
    for path, leaf in flat:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.sharding.is_fully_replicated:
                return None  # a sharded array spread over hosts: no host holds all of it
            leaf = leaf.addressable_data(0)
        arrays.append((jax.tree_util.keystr(path), leaf))
    values = jax.device_get([a for _, a in arrays])
    return [(p, np.asarray(v)) for (p, _), v in zip(arrays, values, strict=True)]


def _checksum(trees: dict[str, Any], info: dict) -> tuple[str | None, list[str]]:
    """BLAKE2b of the arrays (paths, dtypes, shapes, bytes) and the JSON `info`.

    Returns:
      The hex digest (None when the arrays are not all on this host) and the paths of
      floating-point leaves holding NaN or inf.
    """
    h = hashlib.blake2b(digest_size=16)
    nonfinite = []
    for name in sorted(trees):
        leaves = _host_leaves(trees[name])
        if leaves is None:
            return None, nonfinite
        for path, a in leaves:
            if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
                nonfinite.append(f"{name}{path}")
            h.update(f"{name}{path}:{a.dtype.str}:{a.shape};".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(info, sort_keys=True).encode())
    return h.hexdigest(), nonfinite


def _with_checksum(trees: dict[str, Any], info: dict, what: str) -> dict:
    """`info` plus the checksum of `trees` and `info`; refuses NaN/inf arrays."""
    info = {k: v for k, v in info.items() if k != _CHECKSUM_KEY}
    digest, nonfinite = _checksum(trees, info)
    if nonfinite:
        raise NonFiniteCheckpointError(
            f"Refusing to write {what}: NaN/inf in {', '.join(nonfinite[:5])}"
            + (f" and {len(nonfinite) - 5} more" if len(nonfinite) > 5 else "")
            + ". The previous checkpoint is kept."
        )
    if digest is not None:
        info[_CHECKSUM_KEY] = digest
    return info


def _verify(trees: dict[str, Any], info: dict, what: str) -> dict:
    """Checks restored `trees` and `info` against the saved checksum; returns `info` without it."""
    info = dict(info)
    expected = info.pop(_CHECKSUM_KEY, None)
    if expected is None:
        return info  # written before checksums existed
    digest, _ = _checksum(trees, info)
    if digest is not None and digest != expected:
        raise CheckpointMismatchError(
            f"{what} does not match its checksum (garbled or truncated files)"
        )
    return info


def _first_line(e: BaseException) -> str:
    """The first line of an error's message, without TensorStore's trailing repr."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return text.splitlines()[0].split(" See full TensorStore details:")[0]


def _is_disk_full(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e)
        if "No space left" in text or "os_error_code='28'" in text or "Disk quota" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


class Checkpointer:
    """Latest and best checkpoints of one workdir.

    Args:
      workdir: The run directory; checkpoints go to `workdir/checkpoints/`.
      keep: How many latest checkpoints to keep.
      async_save: Write checkpoints in a background thread (call `wait` before reading them).
      owner: This process holds the workdir's lock (the training run): temporary directories
        left by a killed run are removed, and unreadable checkpoints are moved aside when an
        older one is restored. Readers (evaluation of a running workdir) leave both alone.
        On a run of several processes every process is an owner and calls every method
        (saves, restores and deletions are collective); process 0 does the removing and
        moving, and writes the JSON parts.
    """

    def __init__(
        self, workdir: str, *, keep: int = 2, async_save: bool = True, owner: bool = False
    ):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.directory = root
        self.owner = bool(owner)
        with self._writing("the checkpoint directories"):
            # cleanup_tmp_directories: a run killed during a save leaves a temporary directory
            # behind; only the lock holder may remove it (another process may be writing it).
            self._latest = self._manager(os.path.join(root, "latest"), keep, async_save)
            self._best = self._manager(os.path.join(root, "best"), 1, async_save)

    def _manager(self, directory: str, keep: int, async_save: bool) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max(int(keep), 1),
                create=True,
                enable_async_checkpointing=async_save,
                cleanup_tmp_directories=self.owner,
                # On several processes the two managers save the same epoch at the same time:
                # their barriers need names of their own.
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    barrier_sync_key_prefix=os.path.basename(directory)
                ),
            ),
        )

    # ----------------------------------------------------------------------------------------
    # Writing.

    def _complete_epochs(self, kind: str) -> list[int]:
        """Epochs with a finished (renamed) checkpoint directory on disk."""
        path = os.path.join(self.directory, kind)
        try:
            return sorted(int(n) for n in os.listdir(path) if n.isdigit())
        except OSError:
            return []

    @contextlib.contextmanager
    def _writing(self, what: str):
        """Turns a failed write into `OutputWriteError` naming the intact checkpoint."""
        try:
            yield
        except (NonFiniteCheckpointError, OutputWriteError):
            raise
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore report I/O errors as many types
            self._drain()
            intact = self._complete_epochs("latest")
            kept = (
                f"The newest complete checkpoint, {self.directory}/latest/{intact[-1]}, was not "
                "touched. "
                if intact
                else "No complete checkpoint exists yet. "
            )
            if _is_disk_full(e):
                cause = "the disk is full"
                fix = "Free disk space (or use a --workdir on a disk with room)"
            else:
                cause = "the write failed"
                fix = "Check that the workdir is writable and has room"
            raise OutputWriteError(
                errno.ENOSPC if _is_disk_full(e) else errno.EIO,
                f"Could not write {what} under {self.directory}: {cause} ({_first_line(e)}). "
                f"{kept}{fix}, then run the same command again to resume.",
            ) from e

    def _drain(self) -> None:
        """Waits for the background writes still running after a failed one.

        Their errors repeat the one being raised; waiting prints their reports before it.
        """
        for manager in (getattr(self, "_latest", None), getattr(self, "_best", None)):
            if manager is not None:
                with contextlib.suppress(Exception):
                    manager.wait_until_finished()

    def save_latest(self, epoch: int, state: Any, best_params: Any, progress: dict) -> None:
        """Saves the train state, the best parameters so far and JSON progress after `epoch`.

        Raises:
          NonFiniteCheckpointError: `state` or `best_params` holds NaN/inf (nothing written).
          OutputWriteError: This or an earlier asynchronous save failed.
        """
        progress = _with_checksum(
            {"state": state, "best_params": best_params},
            progress,
            f"checkpoint latest/{int(epoch)}",
        )
        with self._writing(f"checkpoint latest/{int(epoch)}"):
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
        info = _with_checksum({"params": params}, info, f"checkpoint best/{int(epoch)}")
        with self._writing(f"checkpoint best/{int(epoch)}"):
            self._best.save(
                int(epoch),
                args=ocp.args.Composite(
                    params=ocp.args.StandardSave(params), info=ocp.args.JsonSave(info)
                ),
                force=True,
            )

    def discard_after(self, epoch: int) -> None:
        """Deletes checkpoints of epochs after `epoch`.

        A run stopped between writing the best and the latest checkpoint of an epoch, or resumed
        from an older checkpoint, leaves checkpoints of epochs it is about to train again; they
        are removed so that the resumed run can write them afresh.
        """
        for kind, manager in (("latest", self._latest), ("best", self._best)):
            for step in manager.all_steps():
                if step > epoch:
                    logging.info(
                        "Removing %s/%s/%d: training resumes after epoch %d.",
                        self.directory,
                        kind,
                        step,
                        epoch,
                    )
                    with self._writing(f"(while deleting) checkpoint {kind}/{step}"):
                        manager.delete(step)

    # ----------------------------------------------------------------------------------------
    # Reading.

    def latest_epoch(self) -> int | None:
        return self._latest.latest_step()

    def latest_epochs(self) -> list[int]:
        """Epochs of the complete latest checkpoints on disk, oldest first."""
        return sorted(self._latest.all_steps())

    def _restore_latest_step(self, step: int, state: Any, best_params: Any):
        restored = self._latest.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(state)),
                best_params=ocp.args.StandardRestore(_abstract(best_params)),
                progress=ocp.args.JsonRestore(),
            ),
        )
        progress = _verify(
            {"state": restored["state"], "best_params": restored["best_params"]},
            dict(restored["progress"]),
            f"Checkpoint {self.directory}/latest/{step}",
        )
        return restored["state"], restored["best_params"], progress

    def restore_latest(
        self, state: Any, best_params: Any, *, epoch: int | None = None
    ) -> tuple[Any, Any, dict] | None:
        """Restores (state, best_params, progress) from the newest readable checkpoint.

        `state` and `best_params` give the structure, shapes and dtypes (concrete or abstract
        arrays). Returns None when there is no checkpoint. A checkpoint that fails to load or
        does not match its checksum (truncated or garbled files) is reported with a warning and
        the next older one is tried; when an older one loads and this process is the `owner`,
        the unreadable ones are moved to `checkpoints/unreadable/` so that training can write
        those epochs again.

        Args:
          state: Template of the train state.
          best_params: Template of the best parameters.
          epoch: Restore this epoch's checkpoint (errors are raised, no fallback) instead of
            the newest readable one.
        """
        if epoch is not None:
            return self._restore_latest_step(int(epoch), state, best_params)
        steps = sorted(self._latest.all_steps(), reverse=True)
        failed = []
        for step in steps:
            try:
                restored = self._restore_latest_step(step, state, best_params)
            except Exception as e:  # noqa: BLE001 - any read failure means "try an older one"
                failed.append((step, e))
                logging.warning(
                    "Checkpoint %s/latest/%d could not be read (%s: %s); trying an older one.",
                    self.directory,
                    step,
                    type(e).__name__,
                    _first_line(e),
                )
                continue
            if failed and self.owner:
                self._set_aside([s for s, _ in failed])
            return restored
        if failed:
            raise UnreadableCheckpointError(
                f"No readable checkpoint in {self.directory}/latest; every one failed:\n  "
                + "\n  ".join(f"epoch {s}: {type(e).__name__}: {_first_line(e)}" for s, e in failed)
                + "\nDelete that directory (or use a new --workdir) to start afresh."
            )
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Moves unreadable latest checkpoints to `checkpoints/unreadable/` for inspection."""
        if jax.process_index() == 0:  # on several processes, process 0 moves them for all
            self._move_aside(steps)
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(
                f"cgmvae_jax_set_aside_{'_'.join(str(s) for s in steps)}"
            )
        self._latest.reload()

    def _move_aside(self, steps: list[int]) -> None:
        aside = os.path.join(self.directory, "unreadable")
        os.makedirs(aside, exist_ok=True)
        for step in steps:
            source = os.path.join(self.directory, "latest", str(step))
            target = os.path.join(aside, f"latest-{step}")
            k = 1
            while os.path.exists(target):
                target = os.path.join(aside, f"latest-{step}-{k}")
                k += 1
            shutil.move(source, target)
            logging.warning(
                "Moved the unreadable checkpoint %s to %s (delete it when no longer needed).",
                source,
                target,
            )

    def best_epoch(self) -> int | None:
        return self._best.latest_step()

    def restore_best(self, params: Any) -> tuple[Any, dict]:
        """Restores (params, info) of the best epoch; `params` gives the structure.

        Raises:
          FileNotFoundError: No best checkpoint.
          CheckpointMismatchError: Its files are garbled (the latest checkpoints also hold the
            best parameters, as `best_params`).
        """
        step = self._best.latest_step()
        if step is None:
            raise FileNotFoundError(f"No best checkpoint in {self.directory}/best.")
        restored = self._best.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(_abstract(params)), info=ocp.args.JsonRestore()
            ),
        )
        info = _verify(
            {"params": restored["params"]},
            dict(restored["info"]),
            f"Checkpoint {self.directory}/best/{step}",
        )
        return restored["params"], info

    # ----------------------------------------------------------------------------------------
    # Lifetime.

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk.

        Raises:
          OutputWriteError: A save failed.
        """
        with self._writing("a checkpoint"):
            self._latest.wait_until_finished()
            self._best.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the managers.

        A failed save is logged, not raised (call `wait` first to get it as an exception), so
        that closing in a `finally` block does not replace the error being handled.
        """
        for manager in (self._latest, self._best):
            try:
                manager.close()
            except Exception as e:  # noqa: BLE001 - already reported by `wait`/`save_*`
                logging.error("Closing %s: %s", self.directory, _first_line(e))

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
