"""The C-GMVAE mixture prior: log-density and the single-sample KL estimate."""

import jax
import jax.numpy as jnp

from cgmvae_jax.losses import _active_pairs, _checks, _gaussian


def _check_mixture_args(z, means, log_vars, mask):
    """Converts and checks the arguments of the mixture functions."""
    z = _checks.as_float("z", z)
    means = _checks.as_float("means", means)
    log_vars = _checks.as_float("log_vars", log_vars)
    mask = _checks.as_mask("mask", mask)
    _checks.check_ndim("z", z, 1, "[..., d]")
    _checks.check_ndim("means", means, 2, "[K, d] or [..., K, d]")
    _checks.check_ndim("log_vars", log_vars, 2, "[K, d] or [..., K, d]")
    _checks.check_ndim("mask", mask, 1, "[..., K]")
    _checks.broadcast_shapes(("means", means.shape), ("log_vars", log_vars.shape))
    _checks.check_axis("z", z, "means", means, -1)
    _checks.check_axis("z", z, "log_vars", log_vars, -1)
    _checks.check_axis("mask", mask, "means", means, -2)
    _checks.check_axis("mask", mask, "log_vars", log_vars, -2)
    _checks.broadcast_shapes(
        ("z[..., :-1]", z.shape[:-1]),
        ("means[..., :-2]", means.shape[:-2]),
        ("log_vars[..., :-2]", log_vars.shape[:-2]),
        ("mask[..., :-1]", mask.shape[:-1]),
    )
    return z, means, log_vars, mask


def _shared_log_mean_exp(z, means, log_vars, mask):
    """(log p(z), has_any) for components shared by all rows (``means`` ``[K, d]``).

    Evaluated in the exact direct form on the active pairs, or on all pairs by chunks of
    components when the mask is dense (`_active_pairs`), with ``O(B K)`` memory.
    """
    means, log_vars = jnp.broadcast_arrays(means, log_vars)  # [K, d]
    num_components, dim = means.shape
    batch = jnp.broadcast_shapes(z.shape[:-1], mask.shape[:-1])
    rows = jnp.broadcast_to(z, batch + (dim,)).reshape(-1, dim)  # [N, d]
    mask = jnp.broadcast_to(mask, batch + (num_components,)).reshape(-1, num_components)
    log_p, has_any = _active_pairs.active_log_mean_exp(rows, means, log_vars, mask)  # [N]
    return log_p.reshape(batch), has_any.reshape(batch)


def _mixture_log_density(z, means, log_vars, mask, *, broadcast_form=False):
    """(log p(z), has_any); ``broadcast_form`` evaluates every pair with [..., K, d] temporaries."""
    z, means, log_vars, mask = _check_mixture_args(z, means, log_vars, mask)
    if broadcast_form or means.ndim > 2 or log_vars.ndim > 2:
        log_probs = _gaussian.log_normal_diag(z[..., None, :], means, log_vars)  # [..., K]
        return _active_pairs.masked_log_mean_exp(log_probs, mask)
    return _shared_log_mean_exp(z, means, log_vars, mask)


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
    the squared distances are summed directly, over the active (row, component) pairs only
    (or, for dense masks, over all pairs a chunk of components at a time): memory is
    ``O(B K)`` rather than ``O(B K d)``, and values and gradients are exact to float32
    rounding for any variance (expanding the square into matrix products loses hundreds of
    nats at log-variance -15). The gradient is then reverse-mode only (a custom VJP), and
    components that no row uses may hold anything. With per-example components all
    parameters (active or not) must be finite. The official code adds ``-1e6`` to inactive
    entries; here they are excluded exactly (``jax.nn.logsumexp(..., where=mask)``).

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
    log_p, has_any = _mixture_log_density(z, means, log_vars, mask)
    return jnp.where(has_any, log_p, -jnp.inf)


def _gaussian_mixture_log_density_reference(z, means, log_vars, mask) -> jax.Array:
    """`gaussian_mixture_log_density` in the plain broadcasting form ([..., K, d] temporaries)."""
    log_p, has_any = _mixture_log_density(z, means, log_vars, mask, broadcast_form=True)
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
      TypeError: If ``z``, a mean or a log-variance is not floating.
      ValueError: If ``d`` or ``K`` disagree between the arguments, or their batch shapes do
        not broadcast.

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
    z = _checks.as_float("z", z)
    log_q = _gaussian.log_normal_diag(z, mean, log_var)  # [...]
    log_p, has_any = _mixture_log_density(z, prior_means, prior_log_vars, mask)  # [...]
    _checks.broadcast_shapes(("log q(z) batch", log_q.shape), ("log p(z) batch", log_p.shape))
    # log_p is finite even for rows with no active component, so this where has zero
    # (not NaN) gradients for them.
    return jnp.where(has_any, log_q - log_p, 0.0)
