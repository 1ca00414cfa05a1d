"""Multi-label loss functions in pure JAX.

Every function here is pure, works under `jax.jit`, `jax.vmap` and `jax.grad`, broadcasts over
leading batch dimensions and returns per-example values (the caller takes the masked mean) unless
its docstring says otherwise. Inputs may be float32 or bfloat16; log-sum-exps and matrix products
run in (at least) float32. Masks select the active entries; rows where a mask selects nothing give
finite values and finite (zero) gradients.

C-GMVAE (Bai, Kong, Gomes, ICML 2022, arXiv 2112.00976):

- `log_normal_diag`: log-density of a diagonal Gaussian.
- `gaussian_mixture_log_density`: log-density under the uniform mixture of the active labels'
  Gaussians (the C-GMVAE prior).
- `mixture_kl_single_sample`: single-sample estimate log q(z) - log p(z) of KL(q || mixture).
- `gaussian_kl`: analytic KL between diagonal Gaussians (the MPVAE / uni-Gaussian ablation).
- `label_contrastive_loss`: each anchor contrasted against all label embeddings.

Related multi-label losses (each docstring lists where it differs from the released code):

- `asymmetric_loss`: ASL (Ridnik et al., ICCV 2021), summed over labels.
- `kmcl_reconstruction_loss`, `kmcl_contrastive_loss`: KMCL (Sajedi et al., arXiv 2307.03967),
  kernel-mixture reconstruction and Bhattacharyya contrastive terms.
- `correct_missing_labels`, `clml_loss`: CLML (Ma et al., arXiv 2209.01314), label correction
  and the batch-level nuclear-norm objective.

This module imports only jax and the standard library, so `from cgmvae_jax import losses` works
with nothing but jax installed.
"""

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)
_HIGHEST = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------------------------------------
# Input checking helpers.


def _as_float(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    """Returns `x` as an array of at least float32 precision; TypeError if not floating."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`{name}` must have a floating dtype, got {x.dtype}.")
    # bfloat16 / float16 are promoted so that sums and log-sum-exps run in float32.
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _as_mask(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    """Returns a boolean array that is True where `x` is non-zero."""
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        return x
    return x != 0


def _broadcast_shapes(*named: tuple[str, tuple[int, ...]]) -> tuple[int, ...]:
    """`jnp.broadcast_shapes` of the named shapes, with a ValueError naming all of them."""
    try:
        return jnp.broadcast_shapes(*(tuple(s) for _, s in named))
    except ValueError:
        described = " and ".join(f"`{n}` {tuple(s)}" for n, s in named)
        raise ValueError(f"Incompatible shapes: {described} do not broadcast.") from None


def _check_ndim(name: str, x: jax.Array, min_ndim: int, what: str) -> None:
    if x.ndim < min_ndim:
        raise ValueError(f"`{name}` must have shape {what}, got shape {x.shape}.")


def _check_axis(name_a: str, a: jax.Array, name_b: str, b: jax.Array, axis_b: int) -> None:
    """ValueError unless the last axis of `a` equals axis `axis_b` of `b`."""
    if a.shape[-1] != b.shape[axis_b]:
        raise ValueError(
            f"Size mismatch: `{name_a}` has shape {a.shape} and `{name_b}` has shape {b.shape}; "
            f"the last axis of `{name_a}` must equal axis {axis_b} of `{name_b}`."
        )


# ------------------------------------------------------------------------------------------------
# C-GMVAE: Gaussians and the mixture prior.


def log_normal_diag(
    x: jax.typing.ArrayLike,
    mean: jax.typing.ArrayLike,
    log_var: jax.typing.ArrayLike,
) -> jax.Array:
    r"""Log-density of a diagonal Gaussian.

    .. math::
        \log \mathcal{N}(x; \mu, \mathrm{diag}(e^{v}))
        = -\frac{1}{2} \sum_{i=1}^{d} \left( \log 2\pi + v_i + (x_i - \mu_i)^2 e^{-v_i} \right)

    The official C-GMVAE code drops the :math:`-\frac{d}{2} \log 2\pi` constant; it cancels in
    the KL estimate. This function keeps it, so it is a proper log-density.

    Args:
      x: Points, shape ``[..., d]``, floating.
      mean: Means, shape broadcastable to ``[..., d]``, floating.
      log_var: Log-variances, shape broadcastable to ``[..., d]``, floating.

    Returns:
      Log-densities, shape ``[...]`` (the broadcast batch shape), float32 (float64 for
      float64 inputs).

    Raises:
      TypeError: If an input is not floating.
      ValueError: If the shapes do not broadcast.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> x = jnp.zeros((2, 3))  # [B, d]
      >>> lp = losses.log_normal_diag(x, jnp.zeros(3), jnp.zeros(3))  # [B]
      >>> lp.shape
      (2,)
      >>> print(f"{float(lp[0]):.4f}")  # -3/2 log(2 pi)
      -2.7568

    References:
      Bai et al., `C-GMVAE <https://arxiv.org/abs/2112.00976>`_, ICML 2022
      (``compute_KL`` / ``log_normal`` in github.com/JunwenBai/C-GMVAE ``utils.py``).
    """
    x = _as_float("x", x)
    mean = _as_float("mean", mean)
    log_var = _as_float("log_var", log_var)
    shape = _broadcast_shapes(("x", x.shape), ("mean", mean.shape), ("log_var", log_var.shape))
    if not shape:
        raise ValueError(
            f"Expected inputs of shape [..., d], got `x` {x.shape}, `mean` {mean.shape}, "
            f"`log_var` {log_var.shape}."
        )
    x, mean, log_var = (jnp.broadcast_to(a, shape) for a in (x, mean, log_var))
    return -0.5 * jnp.sum(_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var), axis=-1)


def _check_mixture_args(z, means, log_vars, mask):
    """Converts and checks the arguments of the mixture functions."""
    z = _as_float("z", z)
    means = _as_float("means", means)
    log_vars = _as_float("log_vars", log_vars)
    mask = _as_mask("mask", mask)
    _check_ndim("z", z, 1, "[..., d]")
    _check_ndim("means", means, 2, "[K, d] or [..., K, d]")
    _check_ndim("log_vars", log_vars, 2, "[K, d] or [..., K, d]")
    _check_ndim("mask", mask, 1, "[..., K]")
    _broadcast_shapes(("means", means.shape), ("log_vars", log_vars.shape))
    _check_axis("z", z, "means", means, -1)
    _check_axis("z", z, "log_vars", log_vars, -1)
    _check_axis("mask", mask, "means", means, -2)
    _check_axis("mask", mask, "log_vars", log_vars, -2)
    _broadcast_shapes(
        ("z[..., :-1]", z.shape[:-1]),
        ("means[..., :-2]", means.shape[:-2]),
        ("log_vars[..., :-2]", log_vars.shape[:-2]),
        ("mask[..., :-1]", mask.shape[:-1]),
    )
    return z, means, log_vars, mask


def _component_log_probs(z, means, log_vars, *, use_matmul):
    """log N(z; means_k, exp(log_vars_k)) for every component k, shape [..., K]."""
    if use_matmul and means.ndim == 2 and log_vars.ndim == 2:
        # Shared components [K, d]: expand the quadratic form
        #   sum_i (z_i - m_i)^2 / v_i = sum_i z_i^2 / v_i - 2 z_i m_i / v_i + m_i^2 / v_i
        # into two matrix products, so the temporaries are [..., K] rather than [..., K, d]
        # (K can be 10^4 labels).
        means, log_vars = jnp.broadcast_arrays(means, log_vars)  # [K, d]
        precision = jnp.exp(-log_vars)  # [K, d]
        scaled_means = means * precision  # [K, d]
        const = jnp.sum(_LOG_2PI + log_vars + means * scaled_means, axis=-1)  # [K]
        quad = jnp.matmul(jnp.square(z), precision.T, precision=_HIGHEST)  # [..., K]
        cross = jnp.matmul(z, scaled_means.T, precision=_HIGHEST)  # [..., K]
        return -0.5 * (quad - 2.0 * cross + const)
    return log_normal_diag(z[..., None, :], means, log_vars)  # [..., K]


def _masked_log_mean_exp(log_probs, mask):
    """log((1/|A|) sum_{k in A} exp(log_probs_k)) and whether A is non-empty.

    Returns a finite value for rows where A is empty (the caller replaces it), so that the
    gradient of those rows is exactly zero rather than NaN.
    """
    shape = _broadcast_shapes(("log_probs", log_probs.shape), ("mask", mask.shape))
    log_probs = jnp.broadcast_to(log_probs, shape)  # [..., K]
    mask = jnp.broadcast_to(mask, shape)  # [..., K]
    count = jnp.sum(mask, axis=-1)  # [...]
    has_any = count > 0  # [...]
    # Double-where: inactive entries are replaced by 0 (their gradient is then exactly 0, even
    # if their log-density is extreme), and rows with no active entry average over all the
    # zeros, which is finite; the caller selects those rows away.
    safe_log_probs = jnp.where(mask, log_probs, 0.0)
    safe_mask = mask | ~has_any[..., None]
    safe_count = jnp.where(has_any, count, shape[-1]).astype(log_probs.dtype)
    lse = jax.nn.logsumexp(safe_log_probs, axis=-1, where=safe_mask)  # [...]
    return lse - jnp.log(safe_count), has_any


def _mixture_log_density(z, means, log_vars, mask, *, use_matmul):
    z, means, log_vars, mask = _check_mixture_args(z, means, log_vars, mask)
    log_probs = _component_log_probs(z, means, log_vars, use_matmul=use_matmul)  # [..., K]
    return _masked_log_mean_exp(log_probs, mask)


def gaussian_mixture_log_density(
    z: jax.typing.ArrayLike,
    means: jax.typing.ArrayLike,
    log_vars: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike,
) -> jax.Array:
    r"""Log-density of `z` under the equal-weight mixture of the active Gaussians.

    .. math::
        \log p(z) = \log \frac{1}{|A|} \sum_{k \in A}
        \mathcal{N}(z; \mu_k, \mathrm{diag}(e^{v_k})),
        \qquad A = \{k : \mathrm{mask}_k \ne 0\}

    In C-GMVAE the components are the per-label Gaussians of the label encoder and ``A`` is the
    set of positive labels of an example. With shared components (``means`` of shape ``[K, d]``)
    the quadratic form is expanded into two matrix products, so memory is ``O(B K)`` rather
    than ``O(B K d)``; all component parameters (active or not) must then be finite. The
    official code adds ``-1e6`` to inactive entries; here they are excluded exactly
    (``jax.nn.logsumexp(..., where=mask)``).

    Args:
      z: Samples, shape ``[..., d]``, floating.
      means: Component means, shape ``[K, d]`` (shared by all examples) or ``[..., K, d]``.
      log_vars: Component log-variances, same shape as ``means`` (or broadcastable to it).
      mask: Active components, bool or 0/1, shape ``[..., K]``.

    Returns:
      Log-densities, shape ``[...]`` (broadcast batch shape), float32. ``-inf`` for rows with
      no active component; their gradient with respect to every input is exactly zero, so the
      caller can mask them out before reducing.

    Raises:
      TypeError: If ``z``, ``means`` or ``log_vars`` is not floating.
      ValueError: If ``d`` or ``K`` disagree or the batch shapes do not broadcast.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> z = jnp.zeros((2, 4))  # [B, d]
      >>> means = jnp.stack([jnp.zeros(4), jnp.full(4, 100.0)])  # [K, d]
      >>> log_vars = jnp.zeros((2, 4))  # [K, d]
      >>> mask = jnp.array([[1, 1], [0, 0]])  # [B, K]
      >>> lp = losses.gaussian_mixture_log_density(z, means, log_vars, mask)  # [B]
      >>> print(f"{float(lp[0]):.4f}")  # log N(0; 0, I_4) - log 2
      -4.3689
      >>> print(lp[1])
      -inf

    References:
      Bai et al., `C-GMVAE <https://arxiv.org/abs/2112.00976>`_, ICML 2022, Eq. for the
      mixture prior p(z|y) (github.com/JunwenBai/C-GMVAE ``utils.py``).
    """
    log_p, has_any = _mixture_log_density(z, means, log_vars, mask, use_matmul=True)
    return jnp.where(has_any, log_p, -jnp.inf)


def _gaussian_mixture_log_density_reference(z, means, log_vars, mask) -> jax.Array:
    """`gaussian_mixture_log_density` in the plain broadcasting form ([..., K, d] temporaries)."""
    log_p, has_any = _mixture_log_density(z, means, log_vars, mask, use_matmul=False)
    return jnp.where(has_any, log_p, -jnp.inf)


def mixture_kl_single_sample(
    z: jax.typing.ArrayLike,
    mean: jax.typing.ArrayLike,
    log_var: jax.typing.ArrayLike,
    prior_means: jax.typing.ArrayLike,
    prior_log_vars: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike,
) -> jax.Array:
    r"""Single-sample estimate of KL(q || p) with a Gaussian-mixture prior.

    .. math::
        \widehat{\mathrm{KL}} = \log q(z) - \log p(z), \quad
        q = \mathcal{N}(\mu, \mathrm{diag}(e^{v})), \quad
        p(z) = \frac{1}{|A|} \sum_{k \in A} \mathcal{N}(z; \mu_k, \mathrm{diag}(e^{v_k}))

    where ``z`` is one sample of ``q`` (drawn by the caller, e.g. ``mean + exp(log_var / 2) *
    eps``) and ``A`` the active components (C-GMVAE: the example's positive labels). The
    estimate is unbiased but can be negative for one sample.

    Differences from the released code: inactive components are excluded exactly (not pushed
    down by ``-1e6``), the ``log 2 pi`` constants are kept (they cancel), and rows with no
    active component give 0 with zero gradients (the released code gives ``-inf``/NaN there).

    Args:
      z: The sample, shape ``[..., d]``, floating.
      mean: Mean of q, shape ``[..., d]``.
      log_var: Log-variance of q, shape ``[..., d]``.
      prior_means: Prior component means, ``[K, d]`` (shared) or ``[..., K, d]``.
      prior_log_vars: Prior component log-variances, same shape as ``prior_means``.
      mask: Active prior components, bool or 0/1, shape ``[..., K]``.

    Returns:
      KL estimates, shape ``[...]``, float32; exactly 0, with zero gradients, where ``mask``
      has no active component.

    Raises:
      TypeError: If a float argument is not floating.
      ValueError: If the shapes disagree.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> z = jnp.array([[0.3, -1.2]])  # [B, d]
      >>> mean, log_var = jnp.zeros((1, 2)), jnp.zeros((1, 2))  # [B, d]
      >>> prior_means = jnp.array([[0.0, 0.0], [100.0, 100.0]])  # [K, d]
      >>> prior_log_vars = jnp.zeros((2, 2))  # [K, d]
      >>> mask = jnp.array([[True, True]])  # [B, K]
      >>> kl = losses.mixture_kl_single_sample(z, mean, log_var, prior_means, prior_log_vars,
      ...                                      mask)  # [B]
      >>> print(f"{float(kl[0]):.4f}")  # log 2: one component equals q, the other is far
      0.6931

    References:
      Bai et al., `C-GMVAE <https://arxiv.org/abs/2112.00976>`_, ICML 2022
      (``compute_KL`` in github.com/JunwenBai/C-GMVAE ``utils.py``).
    """
    z = _as_float("z", z)
    log_q = log_normal_diag(z, mean, log_var)  # [...]
    log_p, has_any = _mixture_log_density(
        z, prior_means, prior_log_vars, mask, use_matmul=True
    )  # [...]
    _broadcast_shapes(("log q(z) batch", log_q.shape), ("log p(z) batch", log_p.shape))
    # log_p is finite even for rows with no active component, so this where has zero
    # (not NaN) gradients for them.
    return jnp.where(has_any, log_q - log_p, 0.0)


def gaussian_kl(
    mean_q: jax.typing.ArrayLike,
    log_var_q: jax.typing.ArrayLike,
    mean_p: jax.typing.ArrayLike,
    log_var_p: jax.typing.ArrayLike,
) -> jax.Array:
    r"""Analytic KL divergence between two diagonal Gaussians.

    .. math::
        \mathrm{KL}(q \| p) = \frac{1}{2} \sum_{i=1}^{d} \left( v^p_i - v^q_i - 1
        + e^{v^q_i - v^p_i} + (\mu^q_i - \mu^p_i)^2 e^{-v^p_i} \right)

    MPVAE (and the uni-Gaussian ablation of C-GMVAE) use this with q the label encoder and p
    the feature encoder, adding ``1e-6`` to the variance in the mean term only; this function is
    the exact KL (no ``1e-6``), which differs from the released value by a relative ``1e-6``.

    Args:
      mean_q: Mean of q, shape ``[..., d]``, floating.
      log_var_q: Log-variance of q, shape ``[..., d]``.
      mean_p: Mean of p, shape ``[..., d]``.
      log_var_p: Log-variance of p, shape ``[..., d]``.

    Returns:
      KL(q || p), shape ``[...]`` (broadcast batch shape), float32, non-negative.

    Raises:
      TypeError: If an input is not floating.
      ValueError: If the shapes do not broadcast.

    Examples:
      >>> import jax.numpy as jnp
      >>> from cgmvae_jax import losses
      >>> kl = losses.gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3)),
      ...                         jnp.ones((1, 3)), jnp.zeros((1, 3)))  # [B]
      >>> print(f"{float(kl[0]):.4f}")  # 0.5 * d * (mean difference)^2
      1.5000

    References:
      Bai et al., `MPVAE <https://www.ijcai.org/proceedings/2020/0379>`_, IJCAI 2020
      (github.com/JunwenBai/MPVAE ``model.py``); Kingma & Welling, arXiv 1312.6114, App. B.
    """
    mean_q = _as_float("mean_q", mean_q)
    log_var_q = _as_float("log_var_q", log_var_q)
    mean_p = _as_float("mean_p", mean_p)
    log_var_p = _as_float("log_var_p", log_var_p)
    shape = _broadcast_shapes(
        ("mean_q", mean_q.shape),
        ("log_var_q", log_var_q.shape),
        ("mean_p", mean_p.shape),
        ("log_var_p", log_var_p.shape),
    )
    if not shape:
        raise ValueError("Expected inputs of shape [..., d], got scalars.")
    diff = log_var_q - log_var_p
    terms = -diff - 1.0 + jnp.exp(diff) + jnp.square(mean_q - mean_p) * jnp.exp(-log_var_p)
    return 0.5 * jnp.sum(jnp.broadcast_to(terms, shape), axis=-1)


# ------------------------------------------------------------------------------------------------
# C-GMVAE: contrastive loss.


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
    anchors = _as_float("anchors", anchors)
    label_embeddings = _as_float("label_embeddings", label_embeddings)
    labels = jnp.asarray(labels)
    _check_ndim("anchors", anchors, 1, "[..., E]")
    if label_embeddings.ndim != 2:
        raise ValueError(
            f"`label_embeddings` must have shape [L, E], got {label_embeddings.shape}."
        )
    _check_ndim("labels", labels, 1, "[..., L]")
    _check_axis("anchors", anchors, "label_embeddings", label_embeddings, -1)
    _check_axis("labels", labels, "label_embeddings", label_embeddings, 0)
    _broadcast_shapes(
        ("anchors[..., :-1]", anchors.shape[:-1]), ("labels[..., :-1]", labels.shape[:-1])
    )
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}.")

    scores = jnp.matmul(anchors, label_embeddings.T, precision=_HIGHEST)  # [..., L]
    log_probs = jax.nn.log_softmax(scores / temperature, axis=-1)  # [..., L]
    weights = labels.astype(log_probs.dtype)  # [..., L]
    num_pos = jnp.sum(weights, axis=-1)  # [...]
    has_pos = num_pos > 0
    # Zero-weight entries are selected away (not multiplied) so that an extreme score on a
    # negative label cannot produce 0 * inf; rows without positives divide by 1, not 0.
    total = jnp.sum(jnp.where(weights != 0, weights * log_probs, 0.0), axis=-1)  # [...]
    return jnp.where(has_pos, -total / jnp.where(has_pos, num_pos, 1.0), 0.0)


# ------------------------------------------------------------------------------------------------
# ASL: asymmetric loss (Ridnik et al., ICCV 2021).


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
      ValueError: If the shapes do not broadcast.

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
    logits = _as_float("logits", logits)
    labels = jnp.asarray(labels)
    shape = _broadcast_shapes(("logits", logits.shape), ("labels", labels.shape))
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


# ------------------------------------------------------------------------------------------------
# KMCL: kernel mixture reconstruction and Bhattacharyya contrastive loss.


def _check_kmcl_components(means, variances):
    means = _as_float("means", means)
    variances = _as_float("variances", variances)
    if means.shape != variances.shape or means.ndim not in (2, 3):
        raise ValueError(
            "`means` and `variances` must share the shape [B, K, D] (anisotropic) or [B, K] "
            f"(isotropic); got `means` {means.shape} and `variances` {variances.shape}."
        )
    return means, variances


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
      TypeError: If a float argument is not floating.
      ValueError: If the shapes disagree.

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
    features = _as_float("features", features)
    logits = _as_float("logits", logits)
    means = _as_float("means", means)
    variances = _as_float("variances", variances)
    labels = jnp.asarray(labels)
    _check_ndim("features", features, 1, "[..., D]")
    _check_ndim("logits", logits, 1, "[..., K]")
    _check_ndim("labels", labels, 1, "[..., K]")
    if means.shape != variances.shape:
        raise ValueError(
            f"`means` and `variances` must have the same shape; got {means.shape} and "
            f"{variances.shape}."
        )
    _check_axis("logits", logits, "labels", labels, -1)
    # Anisotropic means carry one more axis (D) than the logits.
    anisotropic = means.ndim == logits.ndim + 1
    if anisotropic:
        _check_axis("logits", logits, "means", means, -2)
        _check_axis("features", features, "means", means, -1)
        mean_batch = means.shape[:-2]
    elif means.ndim == logits.ndim:
        _check_axis("logits", logits, "means", means, -1)
        mean_batch = means.shape[:-1]
    else:
        raise ValueError(
            f"`means` must have shape [..., K, D] or [..., K]; got `means` {means.shape} with "
            f"`logits` {logits.shape}."
        )
    _broadcast_shapes(
        ("features[..., :-1]", features.shape[:-1]),
        ("logits[..., :-1]", logits.shape[:-1]),
        ("labels[..., :-1]", labels.shape[:-1]),
        ("means batch", mean_batch),
    )

    if anisotropic:
        sq = jnp.square(features[..., None, :] - means) / variances  # [..., K, D]
        log_kernel = -0.5 * jnp.sum(sq, axis=-1)  # [..., K]
    else:
        # One scalar mean and variance per class, shared by all D dimensions.
        sq = jnp.square(features[..., None, :] - means[..., None]) / variances[..., None]
        log_kernel = -0.5 * jnp.sum(sq, axis=-1)  # [..., K]
    log_mass = jax.nn.log_sigmoid(logits) + log_kernel  # [..., K]
    positive = jax.lax.stop_gradient(_as_mask("labels", labels))  # [..., K]
    shape = _broadcast_shapes(("log_mass", log_mass.shape), ("labels", positive.shape))
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
    positive = jax.lax.stop_gradient(_as_mask("labels", labels))  # [B, K]
    if mask is not None:
        rows = jnp.asarray(mask)
        if rows.shape != (batch,):
            raise ValueError(f"`mask` must have shape ({batch},), got {rows.shape}.")
        rows = jax.lax.stop_gradient(_as_mask("mask", rows))  # [B]
        others = others & rows[:, None] & rows[None, :]
        positive = positive & rows[:, None]
    # An anchor with no other row taking part keeps a finite dummy Z over all other rows; it
    # has no pair, so its loss is 0 and the dummy gets no gradient.
    members = jnp.where(jnp.any(others, axis=1, keepdims=True), others, ~jnp.eye(batch, dtype=bool))
    log_z = jax.nn.logsumexp(log_e, axis=1, where=members[:, :, None])  # [B, K]

    counts = positive.astype(dtype)
    inter = jnp.matmul(counts, counts.T, precision=_HIGHEST)  # [B, B]
    union = counts.sum(-1)[:, None] + counts.sum(-1)[None, :] - inter  # [B, B]
    pairs = others & (inter > 0)  # [B, B]: j in A(i)
    log_jaccard = jnp.where(pairs, jnp.log(jnp.where(pairs, inter / union, 1.0)), 0.0)
    shared = positive[:, None, :] & positive[None, :, :] & pairs[:, :, None]  # [B, B, K]
    log_ratio = log_jaccard[:, :, None] + log_e - log_z[:, None, :]  # [B, B, K]
    log_ratio = jnp.where(shared, log_ratio, 0.0)  # double-where: unshared entries are inert
    if eps is not None:  # log(x + eps) = logaddexp(log x, log eps); eps = 0 adds nothing
        log_ratio = jnp.logaddexp(log_ratio, jnp.log(jnp.asarray(eps, dtype)))
    per_pair = jnp.sum(jnp.where(shared, log_ratio, 0.0), axis=-1)  # [B, B]
    num_pairs = jnp.sum(pairs, axis=-1)  # [B]
    has_pairs = num_pairs > 0
    loss = (0.0 - jnp.sum(per_pair, axis=-1)) / jnp.maximum(num_pairs, 1).astype(dtype)
    return jnp.where(has_pairs, loss, 0.0)


# ------------------------------------------------------------------------------------------------
# CLML: label correction and the nuclear-norm objective (Ma et al., arXiv 2209.01314).


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
      TypeError: If ``logits`` is not floating.
      ValueError: If the shapes do not broadcast.

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
    logits = _as_float("logits", logits)
    labels = jnp.asarray(labels)
    shape = _broadcast_shapes(("logits", logits.shape), ("labels", labels.shape))
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
    direction = jnp.matmul(u * keep[..., None, :], vt, precision=_HIGHEST)  # [..., m, n]
    return g[..., None, None] * direction, jnp.zeros_like(threshold)


_nuclear_norm.defvjp(_nuclear_norm_fwd, _nuclear_norm_bwd)


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
    features = _as_float("features", features)
    logits = _as_float("logits", logits)
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
