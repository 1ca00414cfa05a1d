"""The run directory: its lock, stop signals, atomic file writes, the metrics log and resume checks.

A workdir belongs to one training process at a time (`WorkdirLock`); SIGINT/SIGTERM become a
flag the epoch loop checks between compiled calls (`StopSignals`); `config.json` and
`results.json` are replaced atomically (`write_json_atomic`); `metrics.jsonl` gets one fsynced
line per epoch (`append_jsonl`) and is cut back to the checkpointed epoch on resume
(`truncate_metrics`); `check_config_compatible` refuses to resume a workdir written with a
config whose parameters would not fit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import threading
import time
from typing import Any

import ml_collections
from absl import logging

from cgmvae_jax import config_lib

# Fields that fix the shapes or the meaning of the saved parameters: a workdir written with other
# values of these cannot be resumed with this config.
INCOMPATIBLE_FIELDS = (
    "dataset",
    "model",
    "prior",
    "loss",
    "latent_dim",
    "embedding_dim",
    "feature_hidden",
    "label_hidden",
    "decoder_hidden",
    "num_seeds",
    "seed",
    "split_seed",
    "batch_size",
    "train_fraction",
    "val_fraction",
    "test_fraction",
    "standardize",
    "synthetic_examples",
    "synthetic_features",
    "synthetic_labels",
    "kmcl_isotropic",
    "split",
    "ema_epochs",
    "selection_window",
    "selection_metrics",
)


class OutputWriteError(OSError):
    """Writing a checkpoint or an output file failed (full disk, no permission, ...).

    `errno` holds the cause (ENOSPC for a full disk); the message says what is intact and what
    to do.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training; the latest checkpoint is complete on disk."""


class WorkdirLockedError(RuntimeError):
    """Another live process is training in the same workdir."""


class WorkdirLock:
    """`workdir/.lock` holding the owner's host and pid, created atomically.

    A lock whose process no longer exists on this host (a killed run) is stale and taken over
    with a warning; a live one makes the second run refuse to start.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, ".lock")
        self.owned = False

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._remove_if_stale():
                    continue
                host, pid = _read_lock(self.path)
                raise WorkdirLockedError(
                    f"{os.path.dirname(self.path)} is in use by another run (host {host}, pid "
                    f"{pid}; lock file {self.path}). Wait for it to finish, stop it, or use "
                    "another --workdir. If no such process exists, delete the lock file."
                ) from None
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(f"{socket.gethostname()} {os.getpid()}")
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.remove(self.path)
                raise output_error(self.path, e) from e
            self.owned = True
            return
        raise WorkdirLockedError(f"Could not take the lock {self.path}; try again.")

    def _remove_if_stale(self) -> bool:
        """Removes a lock left by a dead process; True when the caller should try again."""
        host, pid = _read_lock(self.path)
        if pid is None:
            # Unreadable: a run killed between creating and writing the file (stale once a few
            # seconds old), or a lock being written right now.
            try:
                stale = time.time() - os.path.getmtime(self.path) > 10
            except OSError:
                return True  # gone meanwhile
        else:
            stale = host == socket.gethostname() and not _pid_alive(pid)
        if stale:
            logging.warning("Removing stale lock %s (pid %s is gone).", self.path, pid)
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        return stale

    def release(self) -> None:
        if self.owned:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.owned = False


def _read_lock(path: str) -> tuple[str, int | None]:
    """(host, pid) written in a lock file; pid None when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            host, pid = f.read().split()
        return host, int(pid)
    except (OSError, ValueError):
        return "", None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag the epoch loop checks between compiled calls.

    A second signal raises KeyboardInterrupt at once. Outside the main thread (where Python
    cannot install handlers) it never fires.
    """

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        logging.warning("%s received: stopping after the current compiled call.", self.received)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------
# Files.


def remove_if_unused(workdir: str) -> None:
    """Deletes a workdir that holds nothing but its config, lock and empty directories.

    For a run that created `workdir` and failed before its first epoch was logged, so that a
    failed start leaves nothing behind.
    """
    for _, _, files in os.walk(workdir):
        if any(name not in ("config.json", ".lock") for name in files):
            return
    shutil.rmtree(workdir, ignore_errors=True)


def output_error(path: str, e: OSError) -> OutputWriteError:
    """A one-paragraph error for a failed write of `path`, saying what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "Free disk space (or use a --workdir on a disk with room)"
    else:
        fix = "Make the workdir writable"
    return OutputWriteError(
        e.errno,
        f"Could not write {path}: {e.strerror or e}. {fix}, then run the same command again: "
        "training resumes from the latest checkpoint.",
    )


def write_text_atomic(path: str, text: str) -> None:
    """Writes `path` through a temporary file and a rename: readers see the old or the new file."""
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8") as f:
        if f.read() == text:
            return  # unchanged: nothing to write (a resume on a full disk still starts)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise output_error(path, e) from e


def write_json_atomic(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def append_jsonl(path: str, obj: dict) -> None:
    """Appends one JSON line and fsyncs it; a torn line is dropped by the next resume."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise output_error(path, e) from e


def truncate_metrics(path: str, last_epoch: int) -> None:
    """Keeps the lines of epochs <= last_epoch (a resumed run rewrites the later ones).

    A torn last line (a run killed or out of disk space while appending) ends the kept part.
    The file is rewritten (atomically) only when something is dropped.
    """
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logging.warning("Dropping a torn line of %s: %r", path, line[:80])
            break
        if not line.endswith("\n"):
            line += "\n"
        if record.get("epoch", -1) <= last_epoch:
            kept.append(line)
    if kept != lines:
        write_text_atomic(path, "".join(kept))


config_dict = config_lib.config_dict  # what `config.json` holds


def check_config_compatible(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir whose `config.json` differs in an `INCOMPATIBLE_FIELDS` field.

    `config.allow_config_change=True` turns the refusal into a warning.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    old, new = read_json(path), config_dict(config)
    differing = [
        f"{k}: {old.get(k)!r} (workdir) != {new.get(k)!r} (now)"
        for k in INCOMPATIBLE_FIELDS
        if k in old and json.dumps(old.get(k)) != json.dumps(new.get(k))
    ]
    if differing and not config.allow_config_change:
        raise ValueError(
            f"The workdir {workdir} holds a run made with a different config:\n  "
            + "\n  ".join(differing)
            + "\nUse a new --workdir, or pass --config.allow_config_change=True to resume anyway."
        )
    if differing:
        logging.warning("Resuming %s despite config changes: %s", workdir, "; ".join(differing))
