"""The compiled programs of a training run: the steps, and the `Trainer` that jits them.

The building blocks are pure functions of arrays (the optimizer is `cgmvae_jax.optimizer`):

* `create_train_state` initialises one model; `train_step` is one optimizer update
  (forward, loss, gradients and the optax update) of one model on one batch.
* `train_steps` runs several updates in one compiled program with `lax.scan`, gathering each
  batch on the device from the training arrays and a per-epoch permutation.
* Several seeds train at once: the state carries a leading seed axis and the steps are
  `jax.vmap`-ed over it (`config.num_seeds`); one seed is the same program with a seed axis of 1.

`Trainer` compiles these for one config and data shape; `cgmvae_jax.feed.Feed` hands an
epoch's batches to its programs. The epoch loop that uses them is
`cgmvae_jax.train.train_and_evaluate`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from cgmvae_jax import models, objective, optimizer, sharding

TrainState = train_state.TrainState


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


def all_finite(*trees) -> jax.Array:
    """True iff every element of every floating-point leaf of `trees` is finite.

    One fused reduction per leaf into one scalar: `x - x` is 0 for a finite x and NaN for an
    inf or NaN, so the sum of the differences is NaN exactly when some element is not finite
    (it cannot overflow, unlike a sum of squares). A per-leaf `all(isfinite(leaf))` costs about
    three times as much on XLA:CPU: it materialises a boolean array per leaf and reduces it in a
    second pass, and stacking the flags adds small ops per leaf. (`x * 0` would do too, but
    XLA:CPU rewrites a multiply-reduce into a dot with a materialised zero matrix.)
    """
    leaves = [
        leaf
        for tree in trees
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    if not leaves:
        return jnp.bool_(True)
    total = functools.reduce(jnp.add, [jnp.sum(leaf - leaf, dtype=jnp.float32) for leaf in leaves])
    return jnp.isfinite(total)  # total is 0 or NaN


def _select(flag: jax.Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _grads_finite(grads, grad_norm: jax.Array) -> jax.Array:
    """`all_finite(grads)`, reusing the gradient norm the metrics compute anyway: a finite norm
    means finite gradients; only a non-finite one (NaN/inf, or finite gradients whose squares
    overflow the sum) needs the exact pass, which then runs behind a `lax.cond`."""
    return jax.lax.cond(jnp.isfinite(grad_norm), lambda: jnp.bool_(True), lambda: all_finite(grads))


def _loss_and_grads(state, x, y, weights, key, loss_fn, steps_per_epoch, batch_sharding):
    """Loss, its terms, the gradients and their global norm for one batch."""
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
    return loss, terms, grads, optax.tree.norm(grads)


def _metrics(terms, loss, grad_norm, finite) -> dict[str, jax.Array]:
    metrics_out = dict(terms)
    metrics_out["loss"] = loss
    metrics_out["grad_norm"] = grad_norm
    metrics_out["finite"] = finite
    return metrics_out


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
      The new state and scalar metrics: the loss terms, `grad_norm` and `finite`. An
      update whose loss or gradient is not finite is not applied (the state only counts the
      step), so the state stays the last good one; the host decides whether to stop or go on.
    """
    loss, terms, grads, grad_norm = _loss_and_grads(
        state, x, y, weights, key, loss_fn, steps_per_epoch, batch_sharding
    )
    new_state = state.apply_gradients(grads=grads)
    # One flag for the whole update: the loss, the gradients and what the update produced.
    # Finite gradients can still overflow the update (huge features or learning rates), so the
    # new parameters and optimizer state are checked too. A non-finite update is not applied:
    # parameters and optimizer state stay the old ones, only the step is counted.
    finite = (
        jnp.isfinite(loss)
        & _grads_finite(grads, grad_norm)
        & all_finite(new_state.params, new_state.opt_state)
    )
    new_state = new_state.replace(
        params=_select(finite, new_state.params, state.params),
        opt_state=_select(finite, new_state.opt_state, state.opt_state),
    )
    return new_state, _metrics(terms, loss, grad_norm, finite)


def _train_step_prechecked(
    state: TrainState, x, y, weights, key, *, loss_fn, steps_per_epoch=1, batch_sharding=None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """`train_step` without the check of the updated state: only the loss and the gradients
    decide whether the update is applied. That flag is known before the update, so the update
    runs (in place) or not behind a `lax.cond`, with no extra pass over the state; an update that
    overflows is applied. `train_steps(check_each_step=False)` catches that case."""
    loss, terms, grads, grad_norm = _loss_and_grads(
        state, x, y, weights, key, loss_fn, steps_per_epoch, batch_sharding
    )
    finite = jnp.isfinite(loss) & _grads_finite(grads, grad_norm)
    # A `lax.cond`, not a select: the taken branch updates the state in place, as an unguarded
    # step does. With a select, each of the parameter and moment updates reads the old
    # parameters and moments while the others overwrite them, and XLA copies the state first.
    new_state = jax.lax.cond(
        finite,
        lambda s: s.apply_gradients(grads=grads),
        lambda s: s.replace(step=s.step + 1),
        state,
    )
    return new_state, _metrics(terms, loss, grad_norm, finite)


def _train_step_unguarded(
    state: TrainState, x, y, weights, key, *, loss_fn, steps_per_epoch=1, batch_sharding=None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """`train_step` with no finiteness check at all: every update is applied. Only for
    measuring what the check costs (`Trainer(guard=False)`, benchmarks/step_throughput.py)."""
    loss, terms, grads, grad_norm = _loss_and_grads(
        state, x, y, weights, key, loss_fn, steps_per_epoch, batch_sharding
    )
    return state.apply_gradients(grads=grads), _metrics(terms, loss, grad_norm, jnp.bool_(True))


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
    check_each_step: bool = True,
    guard: bool = True,
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
      check_each_step: True: every step is a `train_step` (its updated state checked).
        False: the same result, cheaper: the steps check only their loss and gradients
        (`_train_step_prechecked`), the updated state is checked once after the S steps, and
        only if that fails are the S steps run again from `state` as `train_step`s (a
        `lax.cond` in the program). This equals checking each step when a non-finite state
        stays non-finite under later updates, as it does for the optimizers of
        `make_optimizer` (Adam's moments are affine in themselves, the parameters add the
        update, and a non-finite parameter makes later losses non-finite, so later updates are
        skipped); then a finite final state means no step produced a non-finite state. Not
        for `jax.vmap` (the `lax.cond` would run both branches). With S = 1 each step is
        checked anyway. (XLA's cost analysis counts both branches of the `lax.cond`: take FLOP
        counts from a one-step program.)
      guard: False drops every finiteness check (benchmarks measure the check's cost).

    Returns:
      The new state and metrics with a leading [S] axis.
    """

    def scan(step_fn, state):
        def body(state, inputs):
            if indices is None:
                w, x, y = inputs
            else:
                idx, w = inputs
                x, y = data_x[idx], data_y[idx]
            return step_fn(
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

    if not guard:
        return scan(_train_step_unguarded, state)
    if check_each_step or weights.shape[0] == 1:  # one step: nothing to gain by deferring
        return scan(train_step, state)
    fast = scan(_train_step_prechecked, state)
    return jax.lax.cond(
        all_finite(fast[0].params, fast[0].opt_state),
        lambda: fast,
        lambda: scan(train_step, state),
    )


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


def make_predict(model, out_shardings=None) -> Callable:
    """`(params [S, ...], x [B, F]) -> probabilities [S, B, L]` of every seed, compiled."""
    return jax.jit(
        jax.vmap(lambda params, x: predict_probs(model.apply, params, x), in_axes=(0, None)),
        out_shardings=out_shardings,
    )


def predict_in_batches(
    fn: Callable,
    params,
    x,
    batch_size: int,
    prepare: Callable | None = None,
    place: Callable = jnp.asarray,
) -> np.ndarray:
    """`fn(params, x_batch) -> [S, n, L]` over x [N, F] in batches of `batch_size` rows.

    Every batch but a last short one has `batch_size` rows, and the short one is padded to it
    (unless N <= batch_size), so `fn` compiles at most once per data set size.

    Args:
      fn: The compiled prediction of all seeds.
      params: Parameters with a leading seed axis.
      x: Features, anything whose row slices `prepare` turns into float32 [n, F] arrays
        (numpy by default; e.g. a scipy.sparse matrix with a densifying `prepare`).
      batch_size: Rows per call.
      prepare: Maps a row slice of `x` to the float32 array passed to `fn`.
      place: Puts the (padded) host batch on the device(s) (e.g. replicated on a mesh).

    Returns:
      float32 [S, N, L] on the host.
    """
    n = x.shape[0]
    out = []
    for start in range(0, n, batch_size):
        chunk = x[start : start + batch_size]
        if prepare is not None:
            chunk = prepare(chunk)
        m = chunk.shape[0]
        if m < batch_size and n > batch_size:
            pad = np.zeros((batch_size - m,) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        out.append(np.asarray(fn(params, place(chunk)))[:, :m])
    return np.concatenate(out, axis=1)


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
      guard: False builds steps without the finiteness check (to measure its cost only).
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        num_features: int,
        num_labels: int,
        num_train: int,
        *,
        guard: bool = True,
    ):
        self.config = config
        self.num_features, self.num_labels, self.num_train = num_features, num_labels, num_train
        self.num_seeds = int(config.num_seeds)
        self.learning_rates = optimizer.learning_rates(config)  # [num_epochs], per epoch
        self.batch_size = int(config.batch_size)
        self.steps_per_epoch = -(-num_train // self.batch_size)
        spc = int(config.steps_per_call)
        self.steps_per_call = self.steps_per_epoch if spc <= 0 else min(spc, self.steps_per_epoch)
        self.model = models.make_model(config, num_features, num_labels)
        self.tx = optimizer.make_optimizer(config, self.steps_per_epoch)
        self.loss_fn = objective.make_loss_fn(config)
        self.mesh = sharding.make_mesh(config)
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self.stacked_sharding = sharding.stacked_batch_sharding(self.mesh)  # [S, n, B, ...]
        self.replicated = sharding.replicated(self.mesh)
        # Every process derives the same keys; on a mesh they are global replicated arrays.
        self.keys = self.put_replicated(seed_keys(config))
        self._build_programs(guard)

    def _build_programs(self, guard: bool) -> None:
        """Jits the programs: init, the two step forms, epoch indices, predict, EMA, select."""
        config, num_features, num_labels = self.config, self.num_features, self.num_labels

        def init_one(key):
            return create_train_state(self.model, self.tx, num_features, num_labels, key)

        self._init = jax.jit(jax.vmap(init_one), out_shardings=self.replicated)

        steps_one = functools.partial(
            train_steps,
            loss_fn=self.loss_fn,
            steps_per_epoch=self.steps_per_epoch,
            batch_sharding=self.batch_sharding,
            # One seed: the updated state is checked once per call (see `train_steps`); under
            # the seed vmap a `lax.cond` would run both branches, so each step checks its own.
            check_each_step=self.num_seeds > 1,
            guard=guard,
        )
        # Seeds are vmapped; data arrays are shared, indices/batches are per seed.
        num_seeds = self.num_seeds
        self._steps_gather = jax.jit(
            _over_seeds(steps_one, (0, 0, None, None, 0, 0), num_seeds),
            out_shardings=self.replicated,
            donate_argnums=0,
        )
        self._steps_batches = jax.jit(
            _over_seeds(
                lambda s, k, bx, by, w: steps_one(s, k, bx, by, None, w),
                (0, 0, 0, 0, 0),
                num_seeds,
            ),
            out_shardings=self.replicated,
            donate_argnums=0,
        )
        self._epoch_indices = jax.jit(
            jax.vmap(
                functools.partial(
                    epoch_indices, num_examples=self.num_train, batch_size=self.batch_size
                ),
                in_axes=(0, None),
            ),
            out_shardings=self.replicated,
        )
        self._predict = make_predict(self.model, out_shardings=self.replicated)
        decay = optimizer.ema_decay(config, self.steps_per_epoch)
        self._eval_params = None
        if decay is not None:
            self._eval_params = jax.jit(
                jax.vmap(functools.partial(optimizer.params_ema, decay=decay)),
                out_shardings=self.replicated,
            )
        self._select = jax.jit(
            lambda improved, new, old: jax.tree.map(
                lambda a, b: jnp.where(improved.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                new,
                old,
            ),
            out_shardings=self.replicated,
        )

    def put_replicated(self, tree):
        """Host values that every process holds identically, as the programs' inputs."""
        return sharding.put_replicated(tree, self.replicated)

    def init_state(self) -> TrainState:
        """Train states of all seeds, stacked on a leading axis."""
        return self._init(self.keys["init"])

    def epoch_batches(self, epoch: int):
        """Per-seed indices [S, steps, B] and weights [S, steps, B] of an epoch."""
        return self._epoch_indices(self.keys["perm"], self.put_replicated(np.int32(epoch)))

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
        return predict_in_batches(
            self._predict,
            params,
            x,
            int(self.config.eval_batch_size),
            place=self.put_replicated,
        )

    def eval_params(self, state: TrainState):
        """The parameters validated and kept as the best: the average with `ema_epochs`."""
        if self._eval_params is None:
            return state.params
        return self._eval_params(state)

    def select(self, improved: np.ndarray, new, old):
        """Per seed, `new` where `improved` else `old` (stacked pytrees)."""
        return self._select(self.put_replicated(np.asarray(improved)), new, old)
