"""C-GMVAE label-anchored contrastive loss."""

import jax
import jax.numpy as jnp

from cgmvae_jax.losses import _checks


def label_contrastive_loss(
    anchors: jax.typing.ArrayLike,
    label_embeddings: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    temperature: float | jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    r"""Contrastive loss of each anchor against all label embeddings.

    .. math::
        \ell = -\frac{1}{|P|} \sum_{p \in P} \log
        \frac{\exp(a \cdot w_p / \tau)}{\sum_{l=1}^{L} \exp(a \cdot w_l / \tau)}

    with ``P`` the positive labels of the anchor. The positives are the anchor's label
    embeddings, the negatives its other labels (samples are not contrasted with each other).
    Equivalent to softmax cross-entropy over labels with target ``labels / |P|``, so adding a
    constant to every score of a row changes nothing. C-GMVAE uses ``tau = 1``, the label and
    feature embeddings as anchors and the (un-normalised) prediction matrix rows as
    ``label_embeddings``.

    Args:
      anchors: Anchor embeddings, shape ``[..., E]``, floating.
      label_embeddings: One embedding per label, shape ``[L, E]``, floating.
      labels: Positive labels, bool or 0/1, shape ``[..., L]``.
      temperature: Softmax temperature ``tau > 0`` (keyword-only).

    Returns:
      Per-anchor losses, shape ``[...]`` (broadcast batch shape), float32; exactly 0, with
      zero gradients, for anchors without a positive label (the released code gives NaN).

    Raises:
      TypeError: If ``anchors`` or ``label_embeddings`` is not floating.
      ValueError: If ``E`` or ``L`` disagree, the batch shapes do not broadcast, or a static
        ``temperature`` is not positive.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> anchors = jnp.array([[1.0, 0.0]])  # [B, E]
      >>> label_embeddings = jnp.array([[0.3, 0.0], [-0.2, 0.0]])  # [L, E]
      >>> labels = jnp.array([[1, 0]])  # [B, L]
      >>> loss = losses.label_contrastive_loss(anchors, label_embeddings, labels,
      ...                                      temperature=0.5)  # [B]
      >>> print(f"{float(loss[0]):.4f}")  # softplus((-0.2 - 0.3) / 0.5) = log(1 + e^-1)
      0.3133

    References:
      Bai et al., `C-GMVAE <https://arxiv.org/abs/2112.00976>`_, ICML 2022
      (``supconloss`` in github.com/JunwenBai/C-GMVAE ``utils.py``).
    """
    anchors = _checks.as_float("anchors", anchors)
    label_embeddings = _checks.as_float("label_embeddings", label_embeddings)
    labels = jnp.asarray(labels)
    _checks.check_ndim("anchors", anchors, 1, "[..., E]")
    if label_embeddings.ndim != 2:
        raise ValueError(
            f"`label_embeddings` must have shape [L, E], got {label_embeddings.shape}."
        )
    _checks.check_ndim("labels", labels, 1, "[..., L]")
    _checks.check_axis("anchors", anchors, "label_embeddings", label_embeddings, -1)
    _checks.check_axis("labels", labels, "label_embeddings", label_embeddings, 0)
    _checks.broadcast_shapes(
        ("anchors[..., :-1]", anchors.shape[:-1]), ("labels[..., :-1]", labels.shape[:-1])
    )
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}.")

    scores = jnp.matmul(anchors, label_embeddings.T, precision=_checks.HIGHEST)  # [..., L]
    log_probs = jax.nn.log_softmax(scores / temperature, axis=-1)  # [..., L]
    weights = labels.astype(log_probs.dtype)  # [..., L]
    num_pos = jnp.sum(weights, axis=-1)  # [...]
    has_pos = num_pos > 0
    # Zero-weight entries are selected away (not multiplied) so that an extreme score on a
    # negative label cannot produce 0 * inf; rows without positives divide by 1, not 0.
    total = jnp.sum(jnp.where(weights != 0, weights * log_probs, 0.0), axis=-1)  # [...]
    return jnp.where(has_pos, -total / jnp.where(has_pos, num_pos, 1.0), 0.0)
