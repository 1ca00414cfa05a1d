"""Diagonal Gaussians: log-density and analytic KL (C-GMVAE, MPVAE)."""

import math

import jax
import jax.numpy as jnp

from cgmvae_jax.losses import _checks

_LOG_2PI = math.log(2.0 * math.pi)


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
      TypeError: If ``x``, ``mean`` or ``log_var`` is not floating.
      ValueError: If their shapes do not broadcast, or all three are scalars (no ``d`` axis).

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
    (x, mean, log_var), shape = _checks.broadcast_floats(x=x, mean=mean, log_var=log_var)
    x, mean, log_var = (jnp.broadcast_to(a, shape) for a in (x, mean, log_var))
    return -0.5 * jnp.sum(_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var), axis=-1)


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
      TypeError: If a mean or log-variance is not floating.
      ValueError: If the four shapes do not broadcast, or all are scalars.

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
    (mean_q, log_var_q, mean_p, log_var_p), shape = _checks.broadcast_floats(
        mean_q=mean_q, log_var_q=log_var_q, mean_p=mean_p, log_var_p=log_var_p
    )
    diff = log_var_q - log_var_p
    terms = -diff - 1.0 + jnp.exp(diff) + jnp.square(mean_q - mean_p) * jnp.exp(-log_var_p)
    return 0.5 * jnp.sum(jnp.broadcast_to(terms, shape), axis=-1)
