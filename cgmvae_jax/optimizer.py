"""The optimizer of C-GMVAE training: Adam with coupled L2 and cosine warm restarts, and an
optional exponential moving average of the parameters kept in the optimizer state.

* `make_optimizer` is Adam with coupled L2 weight decay and the official per-epoch cosine
  schedule with warm restarts (`learning_rates`), plus `track_params_ema` with
  `config.ema_epochs`.
* `params_ema` reads the bias-corrected average back from a train state.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state


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

    transforms = [
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(schedule),
    ]
    decay = ema_decay(config, steps_per_epoch)
    if decay is not None:
        transforms.append(track_params_ema(decay))
    return optax.chain(*transforms)


def ema_decay(config: ml_collections.ConfigDict, steps_per_epoch: int) -> float | None:
    """Per-step decay of the parameter average over `config.ema_epochs` epochs (None: off)."""
    if float(config.ema_epochs) <= 0:
        return None
    return 1.0 - 1.0 / max(float(config.ema_epochs) * steps_per_epoch, 1.0)


class ParamsEmaState(NamedTuple):
    """Step count and the (biased) exponential moving average of the parameters."""

    count: jax.Array
    ema: Any


def track_params_ema(decay: float) -> optax.GradientTransformation:
    """Keeps an exponential moving average of the updated parameters in the optimizer state.

    The last transformation of the chain: it passes the updates through unchanged and records
    `ema = decay * ema + (1 - decay) * (params + updates)`, from zeros with Adam-style bias
    correction (`params_ema`). Being optimizer state, the average is checkpointed, restored
    and vmapped over seeds with everything else.
    """

    def init_fn(params):
        return ParamsEmaState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params):
        new_params = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, new_params)
        return updates, ParamsEmaState(optax.safe_int32_increment(state.count), ema)

    return optax.GradientTransformation(init_fn, update_fn)


def params_ema(state: train_state.TrainState, decay: float):
    """The bias-corrected average kept by `track_params_ema` (the last state of the chain)."""
    ema_state = state.opt_state[-1]
    correction = 1.0 - decay ** ema_state.count.astype(jnp.float32)
    return jax.tree.map(lambda e: e / jnp.maximum(correction, 1e-12), ema_state.ema)
