"""The processes of a multi-process run: which one writes the outputs, and deciding together.

A run of N processes (`sharding.initialize_distributed`) executes the same program on each; the
compiled programs span every process's devices, so every process must take the same branch at
every step that launches one (or an Orbax save). Host-side decisions that could differ between
processes (a stop signal received by one, a clock saying a checkpoint is due, an error while
starting) are therefore shared here with a small all-gather before they are acted on. Process
0 (`is_primary`) takes the workdir's lock and writes the run's files; Orbax checkpoints are
written by all of them together.

On a single process every function here is a cheap no-op, with no collective.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils


class OtherProcessFailedError(RuntimeError):
    """Another process of a multi-process run failed; its own output has the cause."""


def count() -> int:
    """Processes of the run (1 without `jax.distributed`)."""
    return jax.process_count()


def index() -> int:
    """This process's index, 0 .. count() - 1."""
    return jax.process_index()


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def label() -> str:
    """'process i of n' on a multi-process run, else ''."""
    return f"process {index()} of {count()}" if count() > 1 else ""


def _gather(values: Sequence[int]) -> np.ndarray:
    """int64 [processes, len(values)]: every process's values (a collective)."""
    local = np.asarray(values, np.int64).reshape(1, -1)
    if count() == 1:
        return local
    return np.asarray(multihost_utils.process_allgather(local, tiled=True)).reshape(count(), -1)


def any_of(flags: Sequence[bool]) -> list[bool]:
    """Per flag, whether it is set on any process (a collective on several processes)."""
    return [bool(v) for v in _gather([int(bool(f)) for f in flags]).any(axis=0)]


def check_same(value: int, what: str) -> None:
    """Raises ValueError unless every process holds the same integer `value` (a collective)."""
    values = _gather([int(value)])[:, 0]
    if (values != values[0]).any():
        raise ValueError(
            f"The processes disagree on {what}: "
            + ", ".join(f"process {i}: {v}" for i, v in enumerate(values))
            + ". Check that they share the same workdir and data."
        )


@contextlib.contextmanager
def fail_together(what: str):
    """Runs the block on every process; when it raises on one, it raises on all.

    The process where it failed re-raises its own error; the others raise
    `OtherProcessFailedError` naming the failed processes, instead of waiting forever in the
    next collective. Every process must enter the block (it ends in a collective).
    """
    if count() == 1:
        yield
        return
    try:
        yield
    except Exception:
        _gather([1])
        raise
    failed = np.nonzero(_gather([0])[:, 0])[0]
    if failed.size:
        raise OtherProcessFailedError(
            f"{what.capitalize()} failed on process {', '.join(str(i) for i in failed)}; "
            "see its output for the cause."
        )


def peer_failure_hint(error: BaseException) -> str:
    """A sentence for an error from a collective whose peer process went away, else ''."""
    if count() == 1:
        return ""
    text = str(error)
    if isinstance(error, jax.errors.JaxRuntimeError) or "Gloo" in text or "gloo" in text:
        return (
            "Another process of this run stopped or failed (see its output); run the same "
            "commands again to resume from the latest checkpoint."
        )
    return ""


def exit_now(code: int) -> None:
    """Ends a failed process of a multi-process run at once.

    A normal exit waits at JAX's shutdown barrier for the other processes (up to 5 minutes),
    which wait for this one in their next collective; ending without it closes this process's
    connections, so their collectives fail within a second and they exit too.
    """
    logging.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
