"""ASL: asymmetric loss (Ridnik et al., ICCV 2021)."""

import jax
import jax.numpy as jnp

from cgmvae_jax.losses import _checks


def _focusing_weight(base: jax.Array, gamma) -> jax.Array:
    """`base ** gamma` for base in [0, 1] with finite gradients everywhere.

    At ``base == 0`` the weight is ``0 ** gamma`` (1 for gamma = 0, else 0) with zero gradient:
    the double-where keeps ``gamma * base ** (gamma - 1)`` (``0 * inf`` for gamma = 0) out of
    the backward pass.
    """
    positive = base > 0
    safe_base = jnp.where(positive, base, 1.0)
    at_zero = jnp.where(jnp.asarray(gamma) == 0, 1.0, 0.0)
    return jnp.where(positive, jnp.power(safe_base, gamma), at_zero)


# Over 80 lines with its docstring (equation, shapes, differences from the released code).
def asymmetric_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float | None = 0.05,
    eps: float | None = 1e-8,
    stop_grad_focusing: bool = True,
) -> jax.Array:
    r"""Asymmetric loss (ASL), summed over labels.

    .. math::
        \ell = -\sum_{l} \left[ y_l (1 - p_l)^{\gamma_+} \log \max(p_l, \epsilon)
        + (1 - y_l)\, p_{m,l}^{\gamma_-} \log \max(1 - p_{m,l}, \epsilon) \right]

    with :math:`p = \sigma(x)` and the shifted probability :math:`p_m = \max(p - m, 0)`
    (``m = clip``), so a negative with ``p <= clip`` costs exactly 0. With both gammas 0 and
    ``clip=0`` this is binary cross-entropy summed over labels.

    Logarithms are taken in log space (``log max(p, eps) = max(log_sigmoid(x), log eps)``),
    which has the released value and gradient but no rounding of ``sigmoid`` to 1. The
    focusing weights are constants for autodiff by default, as in the released training
    (``disable_torch_grad_focal_loss=True``); with ``stop_grad_focusing=False`` the gradient is
    the analytic ASL gradient, and ``0 ** 0`` is guarded so that ``p = 1`` with ``gamma = 0``
    gives a zero, not NaN, gradient. The released code sums over the whole batch; this function
    returns one value per example (sum over the batch to match it).

    Args:
      logits: Scores, shape ``[..., L]``, floating.
      labels: Targets in {0, 1} (bool, int or float), shape broadcastable to ``logits``.
      gamma_pos: Focusing exponent of positives (the official training uses 0).
      gamma_neg: Focusing exponent of negatives.
      clip: Probability margin ``m`` of negatives; ``None`` or 0 disables shifting.
      eps: Lower clamp of the probabilities inside the logs; ``None`` or 0 disables it.
      stop_grad_focusing: Whether the focusing weights are excluded from the gradient.

    Returns:
      Per-example losses, shape ``[...]``, float32.

    Raises:
      TypeError: If ``logits`` is not floating.
      ValueError: If ``logits`` and ``labels`` do not broadcast or are scalars.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> logits = jnp.array([[2.0, -1.0, 0.0]])  # [B, L]
      >>> labels = jnp.array([[1, 0, 0]])  # [B, L]
      >>> print(f"{float(losses.asymmetric_loss(logits, labels)[0]):.4f}")
      0.1520
      >>> bce = losses.asymmetric_loss(logits, labels, gamma_neg=0.0, clip=None)  # [B]
      >>> print(f"{float(bce[0]):.4f}")  # summed binary cross-entropy
      1.1333

    References:
      Ridnik et al., `Asymmetric Loss For Multi-Label Classification
      <https://arxiv.org/abs/2009.14119>`_, ICCV 2021 (``AsymmetricLoss`` in
      github.com/Alibaba-MIIL/ASL ``src/loss_functions/losses.py``).
    """
    logits = _checks.as_float("logits", logits)
    labels = jnp.asarray(labels)
    shape = _checks.broadcast_shapes(("logits", logits.shape), ("labels", labels.shape))
    if not shape:
        raise ValueError("Expected `logits` and `labels` of shape [..., L], got scalars.")
    logits = jnp.broadcast_to(logits, shape)  # [..., L]
    labels = jax.lax.stop_gradient(jnp.broadcast_to(labels, shape).astype(logits.dtype))
    # log max(q, eps) = max(log q, log eps); eps = 0 gives log 0 = -inf, i.e. no clamp.
    log_floor = -jnp.inf if eps is None else jnp.log(jnp.asarray(eps, logits.dtype))

    prob = jax.nn.sigmoid(logits)  # [..., L]
    # Positives: log max(p, eps), weight (1 - p)^gamma_pos.
    log_pos = jnp.maximum(jax.nn.log_sigmoid(logits), log_floor)
    weight_pos = _focusing_weight(jax.nn.sigmoid(-logits), gamma_pos)
    # Negatives: log max(1 - p_m, eps), weight p_m^gamma_neg.
    if clip is None or (isinstance(clip, (int, float)) and clip == 0):
        prob_m = prob
        log_neg = jnp.maximum(jax.nn.log_sigmoid(-logits), log_floor)
    else:
        prob_m = jnp.maximum(prob - clip, 0.0)
        # 1 - p_m = min(1 - p + clip, 1); entries with p <= clip give log 1 = 0 exactly.
        one_minus = jnp.minimum(jax.nn.sigmoid(-logits) + clip, 1.0)
        log_neg = jnp.maximum(jnp.log(one_minus), log_floor)
    weight_neg = _focusing_weight(prob_m, gamma_neg)
    if stop_grad_focusing:
        weight_pos = jax.lax.stop_gradient(weight_pos)
        weight_neg = jax.lax.stop_gradient(weight_neg)
    per_label = labels * weight_pos * log_pos + (1.0 - labels) * weight_neg * log_neg
    return 0.0 - jnp.sum(per_label, axis=-1)  # 0.0 - x: exact zeros are +0, not -0
