"""Training and evaluation of C-GMVAE (and the MLP baselines): state, compiled steps, epoch loop.

The building blocks are pure functions of arrays:

* `create_train_state` initialises one model; `train_step` is one optimizer update
  (forward, loss, gradients and the optax update) of one model on one batch.
* `train_steps` runs several updates in one compiled program with `lax.scan`, gathering each
  batch on the device from the training arrays and a per-epoch permutation.
* Several seeds train at once: the state carries a leading seed axis and the steps are
  `jax.vmap`-ed over it (`config.num_seeds`); one seed is the same program with a seed axis of 1.

`train_and_evaluate(config, workdir)` is the epoch loop: validation every epoch, best epoch by
validation macro-F1 (threshold tuned on validation), latest and best checkpoints, resume,
`metrics.jsonl`, and `results.json` with the test metrics of the best epoch under the three
threshold protocols of `cgmvae_jax.metrics`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from cgmvae_jax import checkpoint as checkpoint_lib
from cgmvae_jax import config_lib, metrics, models, objective, sharding
from cgmvae_jax import data as data_lib

TrainState = train_state.TrainState

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
)


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or inf during training."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training; the latest checkpoint is complete on disk."""


class WorkdirLockedError(RuntimeError):
    """Another live process is training in the same workdir."""


# A checkpoint, results.json, metrics.jsonl or config.json could not be written (full disk, ...).
OutputWriteError = checkpoint_lib.OutputWriteError


class _WorkdirLock:
    """`workdir/.lock` holding the owner's host and pid, created atomically.

    A lock whose process no longer exists on this host (a killed run) is stale and taken over
    with a warning; a live one makes the second run refuse to start.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, ".lock")
        self.owned = False

    def acquire(self) -> None:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                host, pid = _read_lock(self.path)
                if pid is None:
                    # Unreadable: a run killed between creating and writing the file (stale
                    # once a few seconds old), or a lock being written right now.
                    try:
                        stale = time.time() - os.path.getmtime(self.path) > 10
                    except OSError:
                        continue  # gone meanwhile: try again
                else:
                    stale = host == socket.gethostname() and not _pid_alive(pid)
                if stale:
                    logging.warning("Removing stale lock %s (pid %s is gone).", self.path, pid)
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                raise WorkdirLockedError(
                    f"{os.path.dirname(self.path)} is in use by another run (host {host}, pid "
                    f"{pid}; lock file {self.path}). Wait for it to finish, stop it, or use "
                    "another --workdir. If no such process exists, delete the lock file."
                ) from None
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(me)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.remove(self.path)
                raise _output_error(self.path, e) from e
            self.owned = True
            return
        raise WorkdirLockedError(f"Could not take the lock {self.path}; try again.")

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


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag the epoch loop checks between compiled calls."""

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
        logging.warning("%s received: stopping after the current step.", self.received)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------
# Optimizer and schedule.


def learning_rates(config: ml_collections.ConfigDict) -> np.ndarray:
    """Per-epoch learning rates of cosine annealing with warm restarts.

    Epoch e of a cycle of length T_i, at position T_cur within it, gets
    `eta_min + (lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2`; cycles grow by `restart_mult`
    (torch `CosineAnnealingWarmRestarts` stepped once per epoch, as the official script does).

    Returns:
      float64 array [num_epochs].
    """
    lrs = np.empty(int(config.num_epochs), np.float64)
    period, start = int(config.restart_period), 0
    for epoch in range(len(lrs)):
        while epoch - start >= period:
            start += period
            period *= int(config.restart_mult)
        t_cur = epoch - start
        lrs[epoch] = (
            config.eta_min
            + (config.learning_rate - config.eta_min) * (1 + math.cos(math.pi * t_cur / period)) / 2
        )
    return lrs


def make_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.GradientTransformation:
    """Adam with coupled L2 weight decay and the per-epoch warm-restart schedule.

    torch `Adam(weight_decay=wd)` adds `wd * param` to the gradient before the moment estimates
    (coupled L2), which is `add_decayed_weights` before `scale_by_adam`; `optax.adamw` decays
    after them (decoupled) and would not match the official optimiser.
    """
    lrs = jnp.asarray(learning_rates(config), jnp.float32)

    def schedule(count):
        epoch = jnp.minimum(count // steps_per_epoch, lrs.shape[0] - 1)
        return lrs[epoch]

    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(schedule),
    )


# --------------------------------------------------------------------------------------------
# State and steps.


def create_train_state(
    model: Any, tx: optax.GradientTransformation, num_features: int, num_labels: int, key
) -> TrainState:
    """Initialises parameters and optimizer state of one model."""
    params_key, dropout_key, sample_key = jax.random.split(key, 3)
    x = jnp.zeros((1, num_features), jnp.float32)
    y = jnp.ones((1, num_labels), jnp.float32)
    variables = model.init(
        {"params": params_key, "dropout": dropout_key, "sample": sample_key}, x, y, train=True
    )
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx)


def _tree_all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def train_step(
    state: TrainState,
    x: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    key: jax.Array,
    *,
    loss_fn: Callable,
    steps_per_epoch: int = 1,
    batch_sharding: Any = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update of one model.

    Args:
      state: The model's train state.
      x: Features [B, F].
      y: Labels [B, L], 0/1.
      weights: Validity [B]: 1 for real rows, 0 for padding of the epoch's last batch.
      key: The model's step key root; the step's key is `fold_in(key, state.step)`, so the
        random stream depends only on (seed, step) and survives a restart.
      loss_fn: `(outputs, labels, weights, *, epoch) -> (loss, terms)`
        (`objective.make_loss_fn`); epoch = step // steps_per_epoch.
      steps_per_epoch: Updates per epoch, to tell `loss_fn` the epoch.
      batch_sharding: Optional sharding constraint for the batch (data parallelism).

    Returns:
      The new state and scalar metrics: the loss terms, `grad_norm`, `lr` and `finite`. An
      update whose loss or gradient is not finite is not applied (the state only counts the
      step), so the state stays the last good one; the host decides whether to stop or go on.
    """
    if batch_sharding is not None:
        x, y, weights = (
            jax.lax.with_sharding_constraint(a, batch_sharding) for a in (x, y, weights)
        )
    step_key = jax.random.fold_in(key, state.step)
    dropout_key, sample_key = jax.random.split(step_key)
    y = y.astype(jnp.float32)

    def compute_loss(params):
        outputs = state.apply_fn(
            {"params": params},
            x,
            y,
            train=True,
            rngs={"dropout": dropout_key, "sample": sample_key},
        )
        loss, terms = loss_fn(outputs, y, weights, epoch=state.step // steps_per_epoch)
        return loss, terms

    (loss, terms), grads = jax.value_and_grad(compute_loss, has_aux=True)(state.params)
    finite = jnp.isfinite(loss) & _tree_all_finite(grads)
    # A non-finite gradient must not reach the optimizer state: zero it, and keep the old state.
    safe_grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
    new_state = state.apply_gradients(grads=safe_grads)
    # Finite gradients can still overflow the update (huge features or learning rates): an
    # update whose parameters or Adam moments are not finite is not applied either.
    finite = finite & _tree_all_finite(new_state.params) & _tree_all_finite(new_state.opt_state)
    new_state = new_state.replace(
        params=jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), new_state.params, state.params
        ),
        opt_state=jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), new_state.opt_state, state.opt_state
        ),
    )
    metrics_out = dict(terms)
    metrics_out["loss"] = loss
    metrics_out["grad_norm"] = optax.tree.norm(grads)
    metrics_out["finite"] = finite
    return new_state, metrics_out


def train_steps(
    state: TrainState,
    key: jax.Array,
    data_x: jax.Array,
    data_y: jax.Array,
    indices: jax.Array,
    weights: jax.Array,
    *,
    loss_fn: Callable,
    steps_per_epoch: int = 1,
    batch_sharding: Any = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """S updates of one model in one program.

    Args:
      state: Train state.
      key: Step key root (see `train_step`).
      data_x: Either the whole training features [N, F] (with `indices` [S, B] rows to gather)
        or the batches themselves [S, B, F] (with `indices` None), e.g. streamed from the host.
      data_y: Training labels [N, L] or batches [S, B, L].
      indices: Row indices [S, B] into `data_x`, or None.
      weights: Validity [S, B].
      loss_fn: See `train_step`.
      batch_sharding: See `train_step`.

    Returns:
      The new state and metrics with a leading [S] axis.
    """

    def body(state, inputs):
        if indices is None:
            w, x, y = inputs
        else:
            idx, w = inputs
            x, y = data_x[idx], data_y[idx]
        return train_step(
            state,
            x,
            y,
            w,
            key,
            loss_fn=loss_fn,
            steps_per_epoch=steps_per_epoch,
            batch_sharding=batch_sharding,
        )

    xs = (weights, data_x, data_y) if indices is None else (indices, weights)
    return jax.lax.scan(body, state, xs)


def epoch_indices(key: jax.Array, epoch, num_examples: int, batch_size: int):
    """The epoch's batches: a permutation of the rows cut into padded batches.

    Returns:
      indices [steps, B] int32 and weights [steps, B] float32 (0 marks padding of the last
      batch), with steps = ceil(num_examples / batch_size).
    """
    steps = -(-num_examples // batch_size)
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    pad = steps * batch_size - num_examples
    idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).astype(jnp.int32)
    w = jnp.concatenate([jnp.ones((num_examples,)), jnp.zeros((pad,))]).astype(jnp.float32)
    return idx.reshape(steps, batch_size), w.reshape(steps, batch_size)


def predict_probs(apply_fn: Callable, params, x: jax.Array) -> jax.Array:
    """Deterministic probabilities [B, L] of one model (z = posterior mean, no dropout)."""
    logits = apply_fn({"params": params}, x, method="predict")
    return jax.nn.sigmoid(logits.astype(jnp.float32))


# --------------------------------------------------------------------------------------------
# Keys.


def seed_keys(config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """Per-seed key roots [S]: seed i of a `num_seeds` run equals a single run of seed + i."""
    roots = [jax.random.key(int(config.seed) + i) for i in range(int(config.num_seeds))]
    return {
        "init": jnp.stack([jax.random.fold_in(r, 0) for r in roots]),
        "perm": jnp.stack([jax.random.fold_in(r, 1) for r in roots]),
        "step": jnp.stack([jax.random.fold_in(r, 2) for r in roots]),
    }


# --------------------------------------------------------------------------------------------
# The trainer: compiled programs for one config and data shape.


def _over_seeds(fn: Callable, in_axes: tuple, num_seeds: int) -> Callable:
    """`jax.vmap(fn, in_axes)` over the leading seed axis of the arguments and outputs.

    For one seed, `fn` runs on the arguments with the seed axis squeezed and the axis is added
    back to the outputs: the same values as the vmap over an axis of size 1, but an unbatched
    program (XLA:CPU lays out vmap's size-1 batch dimension with extra transposes and copies).
    """
    if num_seeds > 1:
        return jax.vmap(fn, in_axes=in_axes)

    def one_seed(*args):
        args = [
            arg if axis is None else jax.tree.map(lambda a: a[0], arg)
            for arg, axis in zip(args, in_axes, strict=True)
        ]
        return jax.tree.map(lambda a: a[None], fn(*args))

    return one_seed


class Trainer:
    """Compiled programs (init, steps, predict) of one config and data shape, for S seeds.

    Args:
      config: The run configuration.
      num_features: F.
      num_labels: L.
      num_train: Rows of the training split.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        num_features: int,
        num_labels: int,
        num_train: int,
    ):
        self.config = config
        self.num_features, self.num_labels, self.num_train = num_features, num_labels, num_train
        self.batch_size = int(config.batch_size)
        self.steps_per_epoch = -(-num_train // self.batch_size)
        spc = int(config.steps_per_call)
        self.steps_per_call = self.steps_per_epoch if spc <= 0 else min(spc, self.steps_per_epoch)
        self.model = models.make_model(config, num_features, num_labels)
        self.tx = make_optimizer(config, self.steps_per_epoch)
        self.loss_fn = objective.make_loss_fn(config)
        self.keys = seed_keys(config)
        self.mesh = sharding.make_mesh(config)
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self.replicated = sharding.replicated(self.mesh)

        def init_one(key):
            return create_train_state(self.model, self.tx, num_features, num_labels, key)

        self._init = jax.jit(jax.vmap(init_one), out_shardings=self.replicated)

        steps_one = functools.partial(
            train_steps,
            loss_fn=self.loss_fn,
            steps_per_epoch=self.steps_per_epoch,
            batch_sharding=sharding.step_batch_sharding(self.mesh),
        )
        # Seeds are vmapped; data arrays are shared, indices/batches are per seed.
        num_seeds = int(config.num_seeds)
        self._steps_gather = jax.jit(
            _over_seeds(steps_one, (0, 0, None, None, 0, 0), num_seeds),
            donate_argnums=0,
        )
        self._steps_batches = jax.jit(
            _over_seeds(
                lambda s, k, bx, by, w: steps_one(s, k, bx, by, None, w),
                (0, 0, 0, 0, 0),
                num_seeds,
            ),
            donate_argnums=0,
        )
        self._epoch_indices = jax.jit(
            jax.vmap(
                functools.partial(
                    epoch_indices, num_examples=num_train, batch_size=self.batch_size
                ),
                in_axes=(0, None),
            )
        )
        self._predict = jax.jit(
            jax.vmap(
                lambda params, x: predict_probs(self.model.apply, params, x),
                in_axes=(0, None),
            )
        )
        self._select = jax.jit(
            lambda improved, new, old: jax.tree.map(
                lambda a, b: jnp.where(improved.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                new,
                old,
            )
        )

    def init_state(self) -> TrainState:
        """Train states of all seeds, stacked on a leading axis."""
        return self._init(self.keys["init"])

    def epoch_batches(self, epoch: int):
        """Per-seed indices [S, steps, B] and weights [S, steps, B] of an epoch."""
        return self._epoch_indices(self.keys["perm"], jnp.int32(epoch))

    def run_steps(self, state, data_x, data_y, indices, weights):
        """Runs the steps given by `indices`/`weights` [S, n, B] on device-resident data."""
        return self._steps_gather(state, self.keys["step"], data_x, data_y, indices, weights)

    def lower_steps(self, state, data_x, data_y, indices, weights) -> jax.stages.Lowered:
        """The `run_steps` program lowered for these arguments, for ahead-of-time compilation
        and XLA cost / memory analysis (benchmarks). `lower_steps(...).compile()` is called as
        `compiled(state, trainer.keys["step"], data_x, data_y, indices, weights)`."""
        return self._steps_gather.lower(state, self.keys["step"], data_x, data_y, indices, weights)

    def run_batches(self, state, batch_x, batch_y, weights):
        """Runs steps on given batches [S, n, B, ...] (the streaming path)."""
        return self._steps_batches(state, self.keys["step"], batch_x, batch_y, weights)

    def predict(self, params, x: np.ndarray) -> np.ndarray:
        """Probabilities [S, N, L] for features [N, F], in fixed-size batches (no recompiles)."""
        bs = int(self.config.eval_batch_size)
        n = x.shape[0]
        out = []
        for start in range(0, n, bs):
            chunk = x[start : start + bs]
            m = chunk.shape[0]
            if m < bs and n > bs:
                chunk = np.concatenate([chunk, np.zeros((bs - m,) + chunk.shape[1:], chunk.dtype)])
            out.append(np.asarray(self._predict(params, jnp.asarray(chunk)))[:, :m])
        return np.concatenate(out, axis=1)

    def select(self, improved: np.ndarray, new, old):
        """Per seed, `new` where `improved` else `old` (stacked pytrees)."""
        return self._select(jnp.asarray(improved), new, old)


# --------------------------------------------------------------------------------------------
# Host-side helpers: data placement, streaming, logging files.


def _stream_batches(
    trainer: Trainer, train_x: np.ndarray, train_y: np.ndarray, indices, weights, chunk: int
) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
    """Yields device batches [S, n, B, ...] chunk by chunk, one chunk ahead (double buffering)."""
    idx_host = np.asarray(indices)
    w_host = np.asarray(weights)
    steps = idx_host.shape[1]

    def make(start):
        sl = slice(start, min(start + chunk, steps))
        rows = idx_host[:, sl]
        return (
            jax.device_put(train_x[rows]),
            jax.device_put(train_y[rows]),
            jax.device_put(w_host[:, sl]),
        )

    starts = list(range(0, steps, chunk))
    pending = make(starts[0])
    for i in range(len(starts)):
        current = pending
        if i + 1 < len(starts):
            pending = make(starts[i + 1])  # transfer of the next chunk overlaps this one's compute
        yield current


def _output_error(path: str, e: OSError) -> checkpoint_lib.OutputWriteError:
    """A one-paragraph error for a failed write of `path`, saying what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "Free disk space (or use a --workdir on a disk with room)"
    else:
        fix = "Make the workdir writable"
    return checkpoint_lib.OutputWriteError(
        e.errno,
        f"Could not write {path}: {e.strerror or e}. {fix}, then run the same command again: "
        "training resumes from the latest checkpoint.",
    )


def _write_text_atomic(path: str, text: str) -> None:
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
        raise _output_error(path, e) from e


def _write_json_atomic(path: str, obj: Any) -> None:
    _write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _truncate_metrics(path: str, last_epoch: int) -> None:
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
        _write_text_atomic(path, "".join(kept))


def _append_jsonl(path: str, obj: dict) -> None:
    """Appends one JSON line and fsyncs it; a torn line is dropped by the next resume."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _output_error(path, e) from e


def _check_config_compatible(workdir: str, config: ml_collections.ConfigDict) -> None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    new = json.loads(config.to_json_best_effort())
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


def _seed_summary(per_seed: list[dict]) -> tuple[dict, dict]:
    """Mean and std over seeds of nested {protocol: {metric: value}} dicts."""
    mean, std = {}, {}
    for protocol in per_seed[0]:
        mean[protocol], std[protocol] = {}, {}
        for metric in per_seed[0][protocol]:
            values = np.array([s[protocol][metric] for s in per_seed], np.float64)
            mean[protocol][metric] = float(values.mean())
            std[protocol][metric] = float(values.std())
    return mean, std


# --------------------------------------------------------------------------------------------
# The epoch loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains, selects the best epoch on validation, and writes `results.json`.

    Running again on the same workdir resumes from the latest checkpoint; a finished run
    returns its results without training.

    Args:
      config: The run configuration (`config_lib.base_config()` fields).
      workdir: Output directory (created if needed).

    Returns:
      The content of `results.json`.
    """
    config_lib.validate(config)
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    lock = _WorkdirLock(workdir)
    lock.acquire()
    try:
        with _StopSignals() as stop:
            return _train_and_evaluate(config, workdir, stop)
    finally:
        lock.release()


def _train_and_evaluate(config, workdir: str, stop: _StopSignals) -> dict:
    results_path = os.path.join(workdir, "results.json")
    metrics_path = os.path.join(workdir, "metrics.jsonl")

    _check_config_compatible(workdir, config)
    dataset, splits = data_lib.load_from_config(config)
    config_lib.validate_against_data(config, splits)
    _write_json_atomic(
        os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort())
    )
    num_features = splits.train_x.shape[1]
    num_labels = splits.train_y.shape[1]
    num_train = splits.train_x.shape[0]
    num_seeds = int(config.num_seeds)
    logging.info(
        "Data %s: F=%d L=%d train/val/test = %d/%d/%d (%s)",
        dataset.name,
        num_features,
        num_labels,
        num_train,
        splits.val_x.shape[0],
        splits.test_x.shape[0],
        splits.description,
    )

    trainer = Trainer(config, num_features, num_labels, num_train)
    state = trainer.init_state()
    best_params = jax.tree.map(jnp.copy, state.params)  # own buffers: the state is donated
    progress = {
        "epoch": -1,
        "best_epoch": [-1] * num_seeds,
        "best_score": [-1.0] * num_seeds,
        "best_threshold": [float(config.threshold)] * num_seeds,
        "train_seconds": 0.0,
        "steps": 0,
        "step_seconds": 0.0,
        "skipped_steps": 0,
    }

    ckpt = checkpoint_lib.Checkpointer(workdir, keep=int(config.keep_checkpoints), owner=True)
    try:
        restored = ckpt.restore_latest(state, best_params)
        if restored is not None:
            state, best_params, saved = restored
            progress.update(saved)
            logging.info("Resumed %s after epoch %d.", workdir, progress["epoch"])
            done = progress["epoch"] + 1 >= int(config.num_epochs)
            if done and os.path.exists(results_path):
                with open(results_path, encoding="utf-8") as f:
                    logging.info("Run already finished; results in %s", results_path)
                    return json.load(f)
        # Checkpoints of later epochs (a best one written just before a kill, or newer ones
        # after a fallback) are from epochs about to be trained again.
        ckpt.discard_after(progress["epoch"])
        _truncate_metrics(metrics_path, progress["epoch"])

        on_device = sharding.fits_on_device(splits.train_x, splits.train_y, config)
        if on_device:
            data_x = jax.device_put(splits.train_x, trainer.replicated)
            data_y = jax.device_put(splits.train_y, trainer.replicated)
        else:
            logging.info(
                "Training split (%.1f MB) exceeds device_data_limit_mb=%g: streaming batches.",
                (splits.train_x.nbytes + splits.train_y.nbytes) / 2**20,
                config.device_data_limit_mb,
            )
        lrs = learning_rates(config)
        chunk = trainer.steps_per_call
        first_epoch = progress["epoch"] + 1
        epochs = range(first_epoch, int(config.num_epochs))
        bar = _progress_bar(config, first_epoch)
        for epoch in epochs:
            t0 = time.perf_counter()
            indices, weights = trainer.epoch_batches(epoch)
            step_metrics = []
            if on_device:
                for start in range(0, trainer.steps_per_epoch, chunk):
                    sl = slice(start, start + chunk)
                    state, m = trainer.run_steps(
                        state, data_x, data_y, indices[:, sl], weights[:, sl]
                    )
                    step_metrics.append(m)
                    if sl.stop < trainer.steps_per_epoch:
                        _check_stop(stop, ckpt, progress, mid_epoch=True)
            else:
                for bx, by, bw in _stream_batches(
                    trainer, splits.train_x, splits.train_y, indices, weights, chunk
                ):
                    state, m = trainer.run_batches(state, bx, by, bw)
                    step_metrics.append(m)
                    if sum(x["loss"].shape[1] for x in step_metrics) < trainer.steps_per_epoch:
                        _check_stop(stop, ckpt, progress, mid_epoch=True)
            host = jax.device_get(step_metrics)
            seconds = time.perf_counter() - t0
            epoch_metrics = {
                k: np.concatenate([np.asarray(h[k]) for h in host], axis=1) for k in host[0]
            }  # [S, steps]
            bad = ~epoch_metrics["finite"].astype(bool)
            if bad.any():
                seed_i, step_i = (int(v[0]) for v in np.nonzero(bad))
                global_step = epoch * trainer.steps_per_epoch + step_i + 1
                terms = {
                    k: float(v[seed_i, step_i])
                    for k, v in epoch_metrics.items()
                    if k not in ("finite",)
                }
                culprits = [k for k, v in terms.items() if not np.isfinite(v)]
                what = (
                    ", ".join(culprits)
                    if culprits
                    else "the update (loss and gradients finite; parameters or Adam moments)"
                )
                if not config.skip_nonfinite:
                    raise NonFiniteError(
                        f"Non-finite value at step {global_step} (epoch {epoch}, seed "
                        f"{int(config.seed) + seed_i}): {what} is NaN/inf ({terms}). The update "
                        f"was not applied; {_latest_text(progress)}. Lower "
                        "--config.learning_rate, check the features for huge values "
                        "(--config.standardize=True), or pass --config.skip_nonfinite=True."
                    )
                progress["skipped_steps"] += int(bad.sum())
                logging.warning(
                    "Epoch %d: skipped %d non-finite update(s) (%s).", epoch, int(bad.sum()), what
                )

            # Validation: threshold tuned on validation macro-F1, per seed.
            val_probs = trainer.predict(state.params, splits.val_x)
            _check_finite_predictions(val_probs, "validation", epoch, config, progress)
            scores, thresholds, val_fixed = [], [], []
            for s in range(num_seeds):
                t = metrics.tune_threshold(val_probs[s], splits.val_y)
                tuned = metrics.multilabel_metrics(val_probs[s], splits.val_y, threshold=t)
                scores.append(tuned["macro_f1"])
                thresholds.append(t)
                val_fixed.append(
                    metrics.multilabel_metrics(
                        val_probs[s], splits.val_y, threshold=float(config.threshold)
                    )
                )
            improved = np.array(scores) > np.array(progress["best_score"])
            if improved.any():
                best_params = trainer.select(improved, state.params, best_params)
                for s in np.nonzero(improved)[0]:
                    progress["best_score"][s] = float(scores[s])
                    progress["best_epoch"][s] = epoch
                    progress["best_threshold"][s] = float(thresholds[s])

            steps_done = trainer.steps_per_epoch
            progress["epoch"] = epoch
            progress["steps"] += steps_done
            progress["train_seconds"] += seconds
            if epoch > first_epoch or first_epoch > 0:
                progress["step_seconds"] += seconds  # first epoch of a process includes compile
            record = {
                "epoch": epoch,
                "step": int(progress["steps"]),
                "lr": float(lrs[epoch]),
                "epoch_seconds": seconds,
                "samples_per_sec": num_train * num_seeds / seconds,
            }
            for k, v in epoch_metrics.items():
                if k != "finite":
                    record[f"train_{k}"] = float(np.nanmean(v))
            for k in val_fixed[0]:
                record[f"val_{k}"] = float(np.mean([m[k] for m in val_fixed]))
            record["val_tuned_macro_f1"] = float(np.mean(scores))
            record["val_tuned_threshold"] = float(np.mean(thresholds))
            if num_seeds > 1:
                record["val_tuned_macro_f1_per_seed"] = [float(s) for s in scores]
            if progress["skipped_steps"]:
                record["skipped_steps"] = int(progress["skipped_steps"])

            # The metrics line first: a checkpointed epoch always has its line, and a resumed
            # run drops the lines of epochs after its checkpoint (`_truncate_metrics`).
            _append_jsonl(metrics_path, record)
            # Best first, then latest: a kill between the two leaves a latest checkpoint whose
            # best_params agree with the best directory.
            if improved.any():
                ckpt.save_best(
                    epoch,
                    best_params,
                    {
                        "best_epoch": progress["best_epoch"],
                        "best_score": progress["best_score"],
                        "best_threshold": progress["best_threshold"],
                    },
                )
            ckpt.save_latest(epoch, state, best_params, progress)
            if stop.received and epoch + 1 < int(config.num_epochs):
                _check_stop(stop, ckpt, progress, mid_epoch=False)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{record['train_loss']:.3f}",
                    val_maF1=f"{record['val_tuned_macro_f1']:.3f}",
                    samples_s=f"{record['samples_per_sec']:.0f}",
                )
            else:
                logging.info(
                    "epoch %d  loss %.4f  val macro-F1 (tuned) %.4f  %.0f samples/s",
                    epoch,
                    record["train_loss"],
                    record["val_tuned_macro_f1"],
                    record["samples_per_sec"],
                )
        if bar is not None:
            bar.close()

        # Test metrics of the best epoch, per seed, under every protocol.
        val_probs = trainer.predict(best_params, splits.val_x)
        test_probs = trainer.predict(best_params, splits.test_x)
        best_epoch = max(progress["best_epoch"])
        _check_finite_predictions(val_probs, "validation", best_epoch, config, progress)
        _check_finite_predictions(test_probs, "test", best_epoch, config, progress)
        per_seed = []
        for s in range(num_seeds):
            per_seed.append(
                metrics.evaluate_protocols(
                    val_probs[s],
                    splits.val_y,
                    test_probs[s],
                    splits.test_y,
                    threshold=float(config.threshold),
                )
            )
        steps_timed = progress["steps"] - (trainer.steps_per_epoch if first_epoch == 0 else 0)
        results = {
            "dataset": dataset.name,
            "config": json.loads(config.to_json_best_effort()),
            "best_epoch": int(progress["best_epoch"][0]),
            "val": per_seed[0]["val"],
            "test": per_seed[0]["test"],
            "train_seconds": float(progress["train_seconds"]),
            "steps_per_sec": float(steps_timed / progress["step_seconds"])
            if progress["step_seconds"] > 0
            else float(progress["steps"] / max(progress["train_seconds"], 1e-9)),
            "val_tuned_threshold": float(per_seed[0]["val_tuned_threshold"]),
            "split": splits.description,
            "num_train": int(num_train),
            "num_val": int(splits.val_x.shape[0]),
            "num_test": int(splits.test_x.shape[0]),
        }
        # A constant predictor for scale: every row gets the training label frequencies.
        freq = splits.train_y.mean(axis=0, dtype=np.float64).astype(np.float32)
        constant = metrics.evaluate_protocols(
            np.broadcast_to(freq, splits.val_y.shape),
            splits.val_y,
            np.broadcast_to(freq, splits.test_y.shape),
            splits.test_y,
            threshold=float(config.threshold),
        )
        results["constant_baseline"] = {"val": constant["val"], "test": constant["test"]}
        if progress["skipped_steps"]:
            results["skipped_steps"] = int(progress["skipped_steps"])
        if num_seeds > 1:
            mean_val, std_val = _seed_summary([p["val"] for p in per_seed])
            mean_test, std_test = _seed_summary([p["test"] for p in per_seed])
            ensemble = metrics.evaluate_protocols(
                val_probs.mean(0),
                splits.val_y,
                test_probs.mean(0),
                splits.test_y,
                threshold=float(config.threshold),
            )
            results.update(
                {
                    "val": mean_val,
                    "test": mean_test,
                    "val_std": std_val,
                    "test_std": std_test,
                    "best_epoch": int(progress["best_epoch"][0]),
                    "best_epochs": [int(e) for e in progress["best_epoch"]],
                    "seeds": [int(config.seed) + i for i in range(num_seeds)],
                    "per_seed": [{"val": p["val"], "test": p["test"]} for p in per_seed],
                    "ensemble": {"val": ensemble["val"], "test": ensemble["test"]},
                }
            )
        ckpt.wait()
        _write_json_atomic(results_path, results)
        logging.info("Results written to %s", results_path)
        return results
    finally:
        ckpt.close()


def _check_finite_predictions(probs: np.ndarray, split: str, epoch: int, config, progress) -> None:
    """Raises NonFiniteError when the probabilities [S, N, L] of a split hold NaN/inf."""
    bad = ~np.isfinite(probs)
    if not bad.any():
        return
    seed_i, row, _ = (int(v[0]) for v in np.nonzero(bad))
    rows = int(bad.any(axis=(0, 2)).sum())
    raise NonFiniteError(
        f"Non-finite predictions on the {split} split with the parameters of epoch {epoch} "
        f"(seed {int(config.seed) + seed_i}): {rows} row(s), the first is row {row}. Their "
        "features are probably too large for float32 arithmetic: use "
        f"--config.standardize=True or rescale the data. {_latest_text(progress).capitalize()}."
    )


def _check_stop(stop: _StopSignals, ckpt, progress: dict, mid_epoch: bool) -> None:
    """Raises TrainingInterrupted after a signal, once the latest checkpoint is on disk."""
    if stop.received is None:
        return
    ckpt.wait()
    where = f"the partial epoch {progress['epoch'] + 1} was discarded; " if mid_epoch else ""
    raise TrainingInterrupted(
        f"Stopped by {stop.received}: {where}{_latest_text(progress)}. Run the same command "
        "again to resume."
    )


def _latest_text(progress: dict) -> str:
    if progress["epoch"] < 0:
        return "no checkpoint was written yet"
    return f"the latest checkpoint holds epoch {progress['epoch']}"


def _progress_bar(config, first_epoch: int):
    if not config.progress:
        return None
    try:
        import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm.tqdm(total=int(config.num_epochs), initial=first_epoch, desc="epochs", unit="epoch")


def load_best(workdir: str, config: ml_collections.ConfigDict | None = None):
    """Loads a finished or running workdir: (trainer, best params [S, ...], splits, dataset).

    Args:
      workdir: A training run directory.
      config: The run's config; read from `workdir/config.json` when None.
    """
    if config is None:
        config = config_lib.load_json_config(os.path.join(workdir, "config.json"))
    dataset, splits = data_lib.load_from_config(config)
    trainer = Trainer(config, splits.train_x.shape[1], splits.train_y.shape[1], len(splits.train_x))
    template = trainer.init_state().params
    with checkpoint_lib.Checkpointer(workdir, keep=int(config.keep_checkpoints)) as ckpt:
        params, info = ckpt.restore_best(template)
    return trainer, params, splits, dataset, info
