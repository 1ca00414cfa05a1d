"""CLML: label correction and the nuclear-norm objective (Ma et al., arXiv 2209.01314)."""

import jax
import jax.numpy as jnp

from cgmvae_jax.losses import _checks


def correct_missing_labels(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    threshold: float | jax.typing.ArrayLike = 0.75,
    epoch: int | jax.typing.ArrayLike,
    start_epoch: int | jax.typing.ArrayLike = 1,
) -> jax.Array:
    r"""CLML label correction: unobserved labels with a confident score become positive.

    .. math::
        \tilde y_l = \begin{cases} 1 & \text{if epoch} \ge \text{start\_epoch and }
        \sigma(x_l) > \text{threshold} \\ y_l & \text{otherwise} \end{cases}

    Only 0 -> 1 flips happen; observed positives are kept. ``epoch`` may be a traced scalar.
    The released code first subtracts a margin of 1 from the logits of observed positives,
    which cannot change the result and is omitted. The result carries no gradient.

    Args:
      logits: Scores, shape ``[..., C]``, floating.
      labels: Observed targets in {0, 1} (0 = negative or missing), shape ``[..., C]``.
      threshold: Probability above which a label is switched on (released script: 0.75).
      epoch: Current epoch, 0-based (keyword-only, required).
      start_epoch: First epoch at which labels are corrected (released: 1).

    Returns:
      Corrected labels, shape and dtype of ``labels`` broadcast with ``logits``.

    Raises:
      TypeError: If ``logits`` is not floating (labels may be bool, int or float).
      ValueError: If ``logits`` and ``labels`` do not broadcast.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> logits, labels = jnp.array([[2.0, -3.0]]), jnp.array([[0, 0]])  # [B, C]
      >>> losses.correct_missing_labels(logits, labels, epoch=1).tolist()
      [[1, 0]]
      >>> losses.correct_missing_labels(logits, labels, epoch=0).tolist()
      [[0, 0]]

    References:
      Ma et al., `Label Structure Preserving Contrastive Embedding for Multi-Label Learning
      with Missing Labels <https://arxiv.org/abs/2209.01314>`_ (github.com/chuangua/
      ContrastiveLossMLML ``ConLoss_MLML.py``).
    """
    logits = _checks.as_float("logits", logits)
    labels = jnp.asarray(labels)
    shape = _checks.broadcast_shapes(("logits", logits.shape), ("labels", labels.shape))
    active = jnp.asarray(epoch) >= jnp.asarray(start_epoch)
    flip = active & (jax.nn.sigmoid(logits) > threshold)  # [..., C]
    corrected = jnp.where(flip, jnp.ones((), labels.dtype), labels)
    return jax.lax.stop_gradient(jnp.broadcast_to(corrected, shape))


@jax.custom_vjp
def _nuclear_norm(x: jax.Array, threshold: jax.Array) -> jax.Array:
    """Sum of the singular values of `x` [..., m, n] -> [...]."""
    return jnp.sum(jnp.linalg.svd(x, compute_uv=False), axis=-1)


def _nuclear_norm_fwd(x, threshold):
    u, s, vt = jnp.linalg.svd(x, full_matrices=False)  # [..., m, r], [..., r], [..., r, n]
    return jnp.sum(s, axis=-1), (u, s, vt, threshold)


def _nuclear_norm_bwd(residuals, g):
    u, s, vt, threshold = residuals
    # Subgradient U V^T over the singular directions with s >= threshold (the others are
    # numerically zero and their directions arbitrary).
    keep = (s >= threshold).astype(u.dtype)  # [..., r]
    direction = jnp.matmul(u * keep[..., None, :], vt, precision=_checks.HIGHEST)  # [..., m, n]
    return g[..., None, None] * direction, jnp.zeros_like(threshold)


_nuclear_norm.defvjp(_nuclear_norm_fwd, _nuclear_norm_bwd)


# Over 80 lines with its docstring (equation, shapes, differences from the released code).
def clml_loss(
    features: jax.typing.ArrayLike,
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    threshold: float | jax.typing.ArrayLike = 0.75,
    epoch: int | jax.typing.ArrayLike,
    start_epoch: int | jax.typing.ArrayLike = 1,
    delta: float = 1.0,
    lam: float = 1.0,
    singular_value_threshold: float = 1e-6,
    label_chunk_size: int | None = None,
) -> jax.Array:
    r"""CLML nuclear-norm objective with label correction (a batch-level scalar).

    .. math::
        \mathcal{L} = \frac{\lambda}{B} \left[ \sum_{c=1}^{C} \max(\Delta, \|X_c\|_*)
        - \|X\|_* \right]

    where ``X`` is the ``[B, D]`` feature matrix, ``X_c`` its rows whose corrected label
    ``c`` is 1 (see `correct_missing_labels`) and :math:`\|\cdot\|_*` the nuclear norm (sum
    of singular values). The per-label terms pull the examples of a label into a low-rank
    subspace; the global term pushes the whole batch towards high rank. A label with no
    member contributes ``Delta``.

    ``X_c`` is formed by zeroing the other rows (same nonzero singular values as gathering
    them), so shapes are static and the loss is jit-able; memory is ``O(C B D)``, or
    ``O(label_chunk_size B D)`` when labels are processed in chunks. The nuclear norm has a
    custom VJP returning ``g * U V^T`` with singular directions below
    ``singular_value_threshold`` dropped, and ``max(Delta, .)`` passes gradient only where
    the norm exceeds ``Delta``, as in the released backward. Unlike the released code, the
    backward multiplies by the incoming cotangent ``g``: the released backward ignores it, so
    under its gradient scaler the CLML gradient was effectively divided by the loss scale.
    Labels (observed and corrected) are constants for the gradient; ``logits`` get none.

    Args:
      features: Feature matrix ``X``, shape ``[B, D]``, floating.
      logits: Class scores used for the correction, shape ``[B, C]``.
      labels: Observed targets in {0, 1}, shape ``[B, C]``.
      threshold: Correction probability threshold (released script: 0.75).
      epoch: Current epoch, 0-based (keyword-only, required; may be traced).
      start_epoch: First epoch with label correction (released: 1).
      delta: ``Delta``, the floor of each per-label nuclear norm.
      lam: ``lambda``, the weight of the loss.
      singular_value_threshold: Singular values below this are dropped in the gradient.
      label_chunk_size: If set, per-label SVDs run this many labels at a time
        (``jax.lax.map``), trading speed for memory.

    Returns:
      The loss, a scalar float32 (batch-level: it is not a sum of per-example terms).

    Raises:
      TypeError: If ``features`` or ``logits`` is not floating.
      ValueError: If the shapes disagree.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> features = jnp.eye(2)  # [B, D]
      >>> labels = jnp.array([[1, 0], [1, 0]])  # [B, C]: both carry label 0, label 1 is empty
      >>> logits = jnp.full((2, 2), -5.0)  # [B, C]
      >>> loss = losses.clml_loss(features, logits, labels, epoch=0)  # scalar
      >>> print(f"{float(loss):.4f}")  # (2 + 1 - 2) / 2
      0.5000

    References:
      Ma et al., `Label Structure Preserving Contrastive Embedding for Multi-Label Learning
      with Missing Labels <https://arxiv.org/abs/2209.01314>`_ (``CLML`` in
      github.com/chuangua/ContrastiveLossMLML ``ConLoss_MLML.py``).
    """
    features = _checks.as_float("features", features)
    logits = _checks.as_float("logits", logits)
    labels = jnp.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"`features` must have shape [B, D], got {features.shape}.")
    if logits.ndim != 2 or labels.shape != logits.shape or logits.shape[0] != features.shape[0]:
        raise ValueError(
            "Expected `features` [B, D], `logits` [B, C] and `labels` [B, C]; got `features` "
            f"{features.shape}, `logits` {logits.shape} and `labels` {labels.shape}."
        )
    corrected = correct_missing_labels(
        logits, labels, threshold=threshold, epoch=epoch, start_epoch=start_epoch
    )
    members = (corrected != 0).astype(features.dtype).T  # [C, B]
    sv_threshold = jnp.asarray(singular_value_threshold, features.dtype)

    def group_norm(member):  # [..., B] -> [...]
        return _nuclear_norm(member[..., :, None] * features, sv_threshold)

    # The whole batch is one more group (a row of ones), so that every SVD of the loss runs in
    # one LAPACK call, or in calls one after the other (chunks): two SVD calls that XLA:CPU
    # runs side by side each wait on their batch tasks in the same intra-op thread pool,
    # which deadlocks a pool of two threads (jaxlib 0.10 on a 2-core machine).
    groups = jnp.concatenate([members, jnp.ones((1, features.shape[0]), features.dtype)])
    if label_chunk_size is None:
        norms = group_norm(groups)  # [C + 1]
    else:
        # Padded to whole chunks (all-zero groups, norm 0): lax.map would run a remainder as a
        # second SVD call beside the loop.
        pad = -groups.shape[0] % label_chunk_size
        groups = jnp.concatenate([groups, jnp.zeros((pad, groups.shape[1]), groups.dtype)])
        norms = jax.lax.map(group_norm, groups, batch_size=label_chunk_size)  # [C + 1 + pad]
        norms = norms[: members.shape[0] + 1]
    group_norms, total = norms[:-1], norms[-1]
    # where, not maximum: the gradient flows only where the norm exceeds delta.
    local = jnp.sum(jnp.where(group_norms > delta, group_norms, delta))
    return lam / features.shape[0] * (local - total)
