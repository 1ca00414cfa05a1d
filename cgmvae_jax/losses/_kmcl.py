"""KMCL: kernel-mixture reconstruction and Bhattacharyya contrastive losses
(Sajedi et al., arXiv 2307.03967)."""

import jax
import jax.numpy as jnp

from cgmvae_jax.losses import _checks


def _check_kmcl_components(means, variances):
    means = _checks.as_float("means", means)
    variances = _checks.as_float("variances", variances)
    if means.shape != variances.shape or means.ndim not in (2, 3):
        raise ValueError(
            "`means` and `variances` must share the shape [B, K, D] (anisotropic) or [B, K] "
            f"(isotropic); got `means` {means.shape} and `variances` {variances.shape}."
        )
    return means, variances


def _check_reconstruction_args(features, logits, means, variances, labels):
    """Converts and checks `kmcl_reconstruction_loss`'s arguments; also says if anisotropic."""
    features = _checks.as_float("features", features)
    logits = _checks.as_float("logits", logits)
    means = _checks.as_float("means", means)
    variances = _checks.as_float("variances", variances)
    labels = jnp.asarray(labels)
    _checks.check_ndim("features", features, 1, "[..., D]")
    _checks.check_ndim("logits", logits, 1, "[..., K]")
    _checks.check_ndim("labels", labels, 1, "[..., K]")
    if means.shape != variances.shape:
        raise ValueError(
            f"`means` and `variances` must have the same shape; got {means.shape} and "
            f"{variances.shape}."
        )
    _checks.check_axis("logits", logits, "labels", labels, -1)
    # Anisotropic means carry one more axis (D) than the logits.
    anisotropic = means.ndim == logits.ndim + 1
    if anisotropic:
        _checks.check_axis("logits", logits, "means", means, -2)
        _checks.check_axis("features", features, "means", means, -1)
        mean_batch = means.shape[:-2]
    elif means.ndim == logits.ndim:
        _checks.check_axis("logits", logits, "means", means, -1)
        mean_batch = means.shape[:-1]
    else:
        raise ValueError(
            f"`means` must have shape [..., K, D] or [..., K]; got `means` {means.shape} with "
            f"`logits` {logits.shape}."
        )
    _checks.broadcast_shapes(
        ("features[..., :-1]", features.shape[:-1]),
        ("logits[..., :-1]", logits.shape[:-1]),
        ("labels[..., :-1]", labels.shape[:-1]),
        ("means batch", mean_batch),
    )
    return features, logits, means, variances, labels, anisotropic


# Over 80 lines with its docstring (equation, shapes, differences from the released code).
def kmcl_reconstruction_loss(
    features: jax.typing.ArrayLike,
    logits: jax.typing.ArrayLike,
    means: jax.typing.ArrayLike,
    variances: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    eps: float | None = 1e-7,
) -> jax.Array:
    r"""KMCL reconstruction loss: share of the kernel mixture on the positive classes.

    .. math::
        \log G_k = -\frac{1}{2} \sum_{i=1}^{D} \frac{(h_i - \mu_{k,i})^2}{\sigma^2_{k,i}},
        \quad
        r = \frac{\sum_{k} y_k\, p_k\, G_k}{\sum_k p_k\, G_k},
        \quad
        \ell = -\log \max(r, \epsilon)

    with :math:`p = \sigma(\mathrm{logits})` and ``G`` the unnormalised Gaussian kernel of
    each class around the feature ``h``. ``log r`` is computed as a difference of two
    log-sum-exps (``log p + log G``), so it never divides 0 by 0.

    Differences from the released code: it clamps ``G`` below at 1.18e-38 (the smallest
    normal float32), so when every kernel underflows ``r`` falls back to the label share of
    ``p``; here ``r`` stays the exact ratio. The released code adds 1.49e-8 to every standard
    deviation; here the variances are used as given (KMCL's head keeps them above 1). Rows
    without a positive label give the constant ``-log eps`` (16.118 for ``eps=1e-7``) with
    zero gradient, as in the released code.

    Args:
      features: Features ``h``, shape ``[..., D]``, floating.
      logits: Class scores, shape ``[..., K]``.
      means: Class means, shape ``[..., K, D]`` (anisotropic) or ``[..., K]`` (isotropic:
        one scalar mean per class, used for every dimension); anisotropic when ``means`` has
        one more axis than ``logits``. The released code lays out the
        anisotropic head as ``[B, D, K]``; pass ``jnp.swapaxes(mu, -1, -2)``.
      variances: Class variances ``sigma^2 > 0``, same shape as ``means``.
      labels: Targets in {0, 1}, shape ``[..., K]``.
      eps: Lower clamp of ``r``; ``None`` or 0 disables it (then rows without a positive
        give ``+inf``).

    Returns:
      Per-example losses, shape ``[...]``, float32 (the released code averages them).

    Raises:
      TypeError: If ``features``, ``logits``, ``means`` or ``variances`` is not floating.
      ValueError: If ``D`` or ``K`` disagree between the arguments, or their batch shapes do
        not broadcast.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> B, K, D = 2, 4, 3
      >>> h = jnp.zeros((B, D))  # [B, D]
      >>> logits, means, variances = jnp.zeros((B, K)), jnp.zeros((B, K, D)), jnp.ones((B, K, D))
      >>> labels = jnp.array([[1, 0, 0, 0], [1, 1, 1, 1]])  # [B, K]
      >>> loss = losses.kmcl_reconstruction_loss(h, logits, means, variances, labels)  # [B]
      >>> print(f"{float(loss[0]):.4f} {float(loss[1]):.4f}")  # log 4, 0
      1.3863 0.0000

    References:
      Sajedi et al., `End-to-End Supervised Multilabel Contrastive Learning
      <https://arxiv.org/abs/2307.03967>`_, 2023 (``NLLLoss`` in github.com/mahdihosseini/KMCL
      ``src/loss_functions/losses.py``).
    """
    features, logits, means, variances, labels, anisotropic = _check_reconstruction_args(
        features, logits, means, variances, labels
    )
    if anisotropic:
        sq = jnp.square(features[..., None, :] - means) / variances  # [..., K, D]
        log_kernel = -0.5 * jnp.sum(sq, axis=-1)  # [..., K]
    else:
        # One scalar mean and variance per class, shared by all D dimensions.
        sq = jnp.square(features[..., None, :] - means[..., None]) / variances[..., None]
        log_kernel = -0.5 * jnp.sum(sq, axis=-1)  # [..., K]
    log_mass = jax.nn.log_sigmoid(logits) + log_kernel  # [..., K]
    positive = jax.lax.stop_gradient(_checks.as_mask("labels", labels))  # [..., K]
    shape = _checks.broadcast_shapes(("log_mass", log_mass.shape), ("labels", positive.shape))
    log_mass = jnp.broadcast_to(log_mass, shape)
    positive = jnp.broadcast_to(positive, shape)
    has_pos = jnp.any(positive, axis=-1)  # [...]
    # Double-where: rows without a positive get a finite dummy numerator (all entries), and
    # their value is replaced below, so their gradient is exactly zero.
    safe_positive = positive | ~has_pos[..., None]
    log_num = jax.nn.logsumexp(log_mass, axis=-1, where=safe_positive)  # [...]
    log_den = jax.nn.logsumexp(log_mass, axis=-1)  # [...]
    log_ratio = jnp.minimum(log_num - log_den, 0.0)
    log_floor = -jnp.inf if eps is None else jnp.log(jnp.asarray(eps, log_ratio.dtype))
    return 0.0 - jnp.maximum(jnp.where(has_pos, log_ratio, -jnp.inf), log_floor)


def _bhattacharyya_log_similarity(means, variances, *, distance_scale, temperature):
    """log E_ijk = exp(-M * DB_ijk) / tau for all ordered pairs (i, j), shape [B, B, K]."""
    mean_i, mean_j = means[:, None], means[None, :]  # [B, 1, K(, D)], [1, B, K(, D)]
    var_i, var_j = variances[:, None], variances[None, :]
    var_sum = var_i + var_j  # [B, B, K(, D)]
    # 0.5 log((s_i^2 + s_j^2) / (2 s_i s_j)) + 0.25 (mu_i - mu_j)^2 / (s_i^2 + s_j^2);
    # exactly 0 for identical Gaussians.
    bracket = (
        0.5 * (jnp.log(0.5 * var_sum) - 0.5 * (jnp.log(var_i) + jnp.log(var_j)))
        + 0.25 * jnp.square(mean_i - mean_j) / var_sum
    )
    if means.ndim == 3:
        bracket = jnp.sum(bracket, axis=-1)  # [B, B, K]
    distance = distance_scale * bracket  # [B, B, K]
    return jnp.exp(-distance) / temperature  # [B, B, K]


def _label_sharing_pairs(positive, others, dtype):
    """Pairs (i, j) of `others` sharing a label [B, B], log Jaccard [B, B], shared [B, B, K]."""
    counts = positive.astype(dtype)
    inter = jnp.matmul(counts, counts.T, precision=_checks.HIGHEST)  # [B, B]
    union = counts.sum(-1)[:, None] + counts.sum(-1)[None, :] - inter  # [B, B]
    pairs = others & (inter > 0)  # [B, B]: j in A(i)
    log_jaccard = jnp.where(pairs, jnp.log(jnp.where(pairs, inter / union, 1.0)), 0.0)
    shared = positive[:, None, :] & positive[None, :, :] & pairs[:, :, None]  # [B, B, K]
    return pairs, log_jaccard, shared


# Over 80 lines with its docstring (equation, shapes, differences from the released code).
def kmcl_contrastive_loss(
    means: jax.typing.ArrayLike,
    variances: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    temperature: float | jax.typing.ArrayLike = 0.17,
    distance_scale: float | jax.typing.ArrayLike | None = None,
    eps: float | None = 1e-7,
    mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""KMCL contrastive loss between per-class Gaussians, via the Bhattacharyya coefficient.

    For anchors ``i``, other samples ``j`` and classes ``k``, with per-class diagonal Gaussians
    :math:`\mathcal{N}(\mu_{ik}, \sigma^2_{ik})`:

    .. math::
        D_{ijk} = M \sum_{d} \left[ \tfrac{1}{2} \log
        \frac{\sigma^2_{ikd} + \sigma^2_{jkd}}{2 \sigma_{ikd} \sigma_{jkd}}
        + \tfrac{1}{4} \frac{(\mu_{ikd} - \mu_{jkd})^2}{\sigma^2_{ikd} + \sigma^2_{jkd}}
        \right], \quad
        E_{ijk} = \exp\!\left(e^{-D_{ijk}} / \tau\right), \quad
        Z_{ik} = \sum_{l \ne i} E_{ilk}

    .. math::
        \ell_i = -\frac{1}{|A(i)|} \sum_{j \in A(i)} \sum_{k:\, y_{ik} = y_{jk} = 1}
        \log\left( J_{ij} \frac{E_{ijk}}{Z_{ik}} + \epsilon \right)

    where ``A(i)`` are the other samples sharing at least one label with ``i`` and ``J`` the
    Jaccard index of the two label sets. The batch axis is the contrast set: to treat several
    independent batches, ``jax.vmap`` over them. The pairwise terms take ``O(B^2 K D)`` memory
    (anisotropic) before the sum over ``D``, as in the released code. Everything is computed
    in log space (``log E = e^{-D} / tau``, ``log Z`` by log-sum-exp, ``log(x + eps)`` by
    ``logaddexp``).

    The scale ``M`` (``distance_scale``) defaults to the feature dimension ``D`` for
    anisotropic inputs, as in the released code, which makes it ``D`` times the exact
    Bhattacharyya distance; then the coefficient underflows to 0 unless two Gaussians are
    nearly identical, every ``E`` becomes 1 and the loss degenerates to a constant. Pass
    ``distance_scale=1.0`` for the exact distance. For isotropic inputs ``[B, K]`` (one scalar
    per class standing for ``D`` equal dimensions) the released code uses ``M = D``, which is
    the exact distance; since ``D`` cannot be inferred from ``[B, K]``, ``distance_scale`` must
    then be given. The released code adds 1.49e-8 to every standard deviation; here variances
    are used as given. Label sets are constants for the gradient.

    Args:
      means: Per-class means, shape ``[B, K, D]`` (anisotropic) or ``[B, K]`` (isotropic).
        The released anisotropic head is laid out ``[B, D, K]``: pass
        ``jnp.swapaxes(mu, -1, -2)``.
      variances: Per-class variances ``sigma^2 > 0``, same shape as ``means``.
      labels: Targets in {0, 1}, shape ``[B, K]``.
      temperature: ``tau`` (keyword-only; the released code hard-codes 0.17).
      distance_scale: ``M``; ``None`` means ``D = means.shape[-1]`` (anisotropic only).
      eps: The constant added inside the log (released: 1e-7); ``None`` or 0 drops it.
      mask: Rows taking part, bool or 0/1, shape ``[B]`` (default: all), e.g. the real rows
        of a padded batch. The other rows are neither anchors nor positives and are left
        out of every denominator ``Z``, so the losses of the rows taking part equal those of
        the batch without the others. (Not in the released code, which has no padding.)

    Returns:
      Per-anchor losses, shape ``[B]``, float32; 0, with zero gradients, for anchors that
      share no label with another sample (incl. anchors without labels) and for rows
      outside ``mask``. The released loss is their mean over all ``B`` anchors.

    Raises:
      TypeError: If ``means`` or ``variances`` is not floating.
      ValueError: If the shapes disagree, or ``distance_scale`` is missing for isotropic
        inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> B, K, D = 3, 2, 4
      >>> means, variances = jnp.zeros((B, K, D)), jnp.ones((B, K, D))  # identical Gaussians
      >>> labels = jnp.array([[1, 1], [1, 0], [0, 1]])  # [B, K]
      >>> loss = losses.kmcl_contrastive_loss(means, variances, labels)  # [B]
      >>> print(jnp.round(loss, 4))  # log 4 for every anchor: J = 1/2, E / Z = 1/2
      [1.3863 1.3863 1.3863]

    References:
      Sajedi et al., `End-to-End Supervised Multilabel Contrastive Learning
      <https://arxiv.org/abs/2307.03967>`_, 2023 (``BDLoss`` in github.com/mahdihosseini/KMCL
      ``src/loss_functions/losses.py``).
    """
    means, variances = _check_kmcl_components(means, variances)
    labels = jnp.asarray(labels)
    if labels.shape != means.shape[:2]:
        raise ValueError(
            f"`labels` must have shape [B, K] matching `means` {means.shape}; got {labels.shape}."
        )
    if distance_scale is None:
        if means.ndim == 2:
            raise ValueError(
                "Isotropic inputs (`means` of shape [B, K]) need `distance_scale`; the released "
                "code uses the feature dimension D."
            )
        distance_scale = float(means.shape[-1])
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}.")
    batch = means.shape[0]
    dtype = means.dtype
    if batch < 2:
        return jnp.zeros((batch,), dtype)  # no other sample to contrast with

    log_e = _bhattacharyya_log_similarity(
        means, variances, distance_scale=distance_scale, temperature=temperature
    )  # [B, B, K]
    others = ~jnp.eye(batch, dtype=bool)  # [B, B]
    positive = jax.lax.stop_gradient(_checks.as_mask("labels", labels))  # [B, K]
    if mask is not None:
        rows = jnp.asarray(mask)
        if rows.shape != (batch,):
            raise ValueError(f"`mask` must have shape ({batch},), got {rows.shape}.")
        rows = jax.lax.stop_gradient(_checks.as_mask("mask", rows))  # [B]
        others = others & rows[:, None] & rows[None, :]
        positive = positive & rows[:, None]
    # An anchor with no other row taking part keeps a finite dummy Z over all other rows; it
    # has no pair, so its loss is 0 and the dummy gets no gradient.
    members = jnp.where(jnp.any(others, axis=1, keepdims=True), others, ~jnp.eye(batch, dtype=bool))
    log_z = jax.nn.logsumexp(log_e, axis=1, where=members[:, :, None])  # [B, K]

    pairs, log_jaccard, shared = _label_sharing_pairs(positive, others, dtype)
    log_ratio = log_jaccard[:, :, None] + log_e - log_z[:, None, :]  # [B, B, K]
    log_ratio = jnp.where(shared, log_ratio, 0.0)  # double-where: unshared entries are inert
    if eps is not None:  # log(x + eps) = logaddexp(log x, log eps); eps = 0 adds nothing
        log_ratio = jnp.logaddexp(log_ratio, jnp.log(jnp.asarray(eps, dtype)))
    per_pair = jnp.sum(jnp.where(shared, log_ratio, 0.0), axis=-1)  # [B, B]
    num_pairs = jnp.sum(pairs, axis=-1)  # [B]
    has_pairs = num_pairs > 0
    loss = (0.0 - jnp.sum(per_pair, axis=-1)) / jnp.maximum(num_pairs, 1).astype(dtype)
    return jnp.where(has_pairs, loss, 0.0)
