"""Exact Gaussian-mixture log-densities over the active (row, component) pairs of a mask.

The C-GMVAE prior is a mixture over each example's positive labels: of the ``N x K`` pairs
(examples x labels) only the active ones enter the loss, a handful per row even when ``K`` is
10^4. `active_log_mean_exp` evaluates, for each row ``n`` with active set ``A_n``,

    log (1/|A_n|) sum_{k in A_n} N(z_n; m_k, diag(exp(v_k))),
    log N(z; m, diag(exp(v))) = -1/2 sum_i (log 2 pi + v_i + (z_i - m_i)^2 exp(-v_i)),

on the active pairs only, in the direct form. Why not the two matrix products
``z^2 @ exp(-v).T - 2 z @ (m exp(-v)).T + const`` that give every pair at once: their terms
are about ``(z^2 + m^2) exp(-v)`` each while the squared distance of a sample near its component
is about ``d``, so float32 cancels them catastrophically at small variances (measured against
float64: 0.4 nats off at log-variance -8, 522 at -15). Every term of the direct sum is
non-negative, so values and gradients are exact to float32 rounding at any variance.

Work and memory: each row's active components are visited in slots of ``T`` per step of a
``while_loop`` (``ceil(max active per row / T)`` steps), with a streaming log-sum-exp, so
memory is ``O(N K)`` for the mask's block counts plus ``O(N T d)``, and no ``[N, K]`` float
array is formed. The gradient is a custom VJP in the same direct form (reverse mode only).
Cost follows the number of active pairs: less than the matrix products for sparse masks and
large ``K``, more for dense masks.
"""

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)
_HIGHEST = jax.lax.Precision.HIGHEST
# Slots per row and step: at most _MAX_SLOTS, and [N, T, d] at most _SLOT_ELEMENTS floats.
_SLOT_ELEMENTS = 2**18
_MAX_SLOTS = 64
# Columns per block of the mask index (the running count is kept per block, not per column).
_BLOCK = 16


def _num_slots(num_rows: int, num_components: int, dim: int) -> int:
    budget = _SLOT_ELEMENTS // max(1, num_rows * dim)
    return max(1, min(num_components, _MAX_SLOTS, budget))


def _mask_index(mask):
    """Blocks of the mask ``[N, nb, b]``, active entries up to each block's end ``[N, nb]``.

    One pass over the mask (a sum per block); a running count per column would cost a
    cumulative sum over ``[N, K]``, slow on CPU for ``K`` = 10^4.
    """
    num_rows, num_components = mask.shape
    block = max(1, min(_BLOCK, num_components))
    pad = -num_components % block
    blocks = jnp.pad(mask, ((0, 0), (0, pad))).reshape(num_rows, -1, block)  # [N, nb, b]
    block_end = jnp.cumsum(jnp.sum(blocks, axis=-1, dtype=jnp.int32), axis=-1)  # [N, nb]
    return blocks, block_end


def _slot_columns(blocks, block_end, start, num_slots):
    """Columns of the active entries of rank ``start ... start + T - 1`` of every row.

    Returns ``columns [N, T]`` (in range) and ``valid [N, T]`` (the row has that many active
    entries). The r-th active entry (0-based) sits in the first block whose running count
    reaches r + 1, at the position where the count within the block does.
    """
    target = start + 1 + jnp.arange(num_slots, dtype=block_end.dtype)  # [T], 1-based ranks
    block = jax.vmap(
        lambda row: jnp.searchsorted(row, target, side="left", method="scan_unrolled")
    )(block_end)  # [N, T]
    block = jnp.minimum(block, block_end.shape[-1] - 1)
    bits = jnp.take_along_axis(blocks, block[..., None], axis=1, mode="clip")  # [N, T, b]
    before = jnp.take_along_axis(block_end, block, axis=1) - jnp.sum(bits, -1, dtype=jnp.int32)
    # Running count within the block, as a product with a triangle of ones (exact; XLA:CPU's
    # cumulative sum is several times slower).
    triangle = jnp.triu(jnp.ones((bits.shape[-1],) * 2, jnp.float32))  # [i, j] = 1 for i <= j
    within = jnp.matmul(bits.astype(jnp.float32), triangle, precision=_HIGHEST)  # [N, T, b]
    offset = jnp.sum(within < (target - before)[..., None], axis=-1, dtype=jnp.int32)  # [N, T]
    columns = block * blocks.shape[-1] + offset  # past K only where not valid (gathers clip)
    valid = target <= block_end[:, -1:]  # [N, T]
    return columns, valid


def _over_slots(block_end, num_slots, body, init):
    """Runs ``init = body(start, init)`` for start = 0, T, 2T, ... below the largest count."""
    num_steps = (jnp.max(block_end[:, -1], initial=0) + num_slots - 1) // num_slots

    def step(carry):
        i, value = carry
        return i + 1, body(i * num_slots, value)

    start = (jnp.zeros((), block_end.dtype), init)
    return jax.lax.while_loop(lambda carry: carry[0] < num_steps, step, start)[1]


def _gather(x, columns):
    """``x[columns]`` for in-range columns (``take`` with clipping is the fast gather on CPU)."""
    return jnp.take(x, columns, axis=0, mode="clip")


def _slot_log_probs(z, means, precision, const, columns):
    """log N(z_n; m_k, exp(v_k)) for k = columns[n, t], and z - m: [N, T], [N, T, d]."""
    diff = z[:, None, :] - _gather(means, columns)  # [N, T, d]
    sq = jnp.sum(jnp.square(diff) * _gather(precision, columns), axis=-1)  # [N, T]
    return -0.5 * (sq + _gather(const, columns)), diff


@jax.custom_vjp
def _log_mean_exp(z, means, log_vars, blocks, block_end):
    return _log_mean_exp_fwd(z, means, log_vars, blocks, block_end)[0]


def _log_mean_exp_fwd(z, means, log_vars, blocks, block_end):
    (num_rows, dim), num_components = z.shape, means.shape[0]
    num_slots = _num_slots(num_rows, num_components, dim)
    precision = jnp.exp(-log_vars)  # [K, d], once rather than per pair
    const = jnp.sum(_LOG_2PI + log_vars, axis=-1)  # [K]

    def body(start, carry):  # streaming log-sum-exp: running max and sum of exp(l - max)
        top, total = carry  # [N], [N]
        columns, valid = _slot_columns(blocks, block_end, start, num_slots)  # [N, T]
        log_probs = jnp.where(
            valid, _slot_log_probs(z, means, precision, const, columns)[0], -jnp.inf
        )
        new_top = jnp.maximum(top, jnp.max(log_probs, axis=-1))
        shift = jnp.where(jnp.isfinite(new_top), new_top, 0.0)  # rows with nothing yet
        total = total * jnp.exp(top - shift) + jnp.sum(jnp.exp(log_probs - shift[:, None]), -1)
        return new_top, total

    init = (jnp.full((num_rows,), -jnp.inf, z.dtype), jnp.zeros((num_rows,), z.dtype))
    top, total = _over_slots(block_end, num_slots, body, init)
    count = block_end[:, -1]
    has_any = count > 0
    # Rows without an active pair get log-sum-exp 0 (finite; the caller replaces their value).
    lse = jnp.where(has_any, top + jnp.log(jnp.where(has_any, total, 1.0)), 0.0)  # [N]
    value = lse - jnp.log(jnp.maximum(count, 1).astype(z.dtype))
    return value, (z, means, log_vars, blocks, block_end, lse)


def _log_mean_exp_bwd(residuals, g):
    z, means, log_vars, blocks, block_end, lse = residuals
    (num_rows, dim), num_components = z.shape, means.shape[0]
    num_slots = _num_slots(num_rows, num_components, dim)
    precision = jnp.exp(-log_vars)  # [K, d]
    const = jnp.sum(_LOG_2PI + log_vars, axis=-1)  # [K]

    def body(start, grads):
        d_z, d_means, d_log_vars = grads
        columns, valid = _slot_columns(blocks, block_end, start, num_slots)  # [N, T]
        log_probs, diff = _slot_log_probs(z, means, precision, const, columns)
        # d value / d log_prob = the pair's share of its row's mixture, exp(l - lse).
        share = jnp.where(valid, jnp.exp(jnp.where(valid, log_probs, 0.0) - lse[:, None]), 0.0)
        weight = (g[:, None] * share)[..., None]  # [N, T, 1]
        # (z - m) / var, [N, T, d]; zero in invalid slots, whose clipped column may hold an
        # inactive component with any (even non-finite) parameters.
        scaled = jnp.where(valid[..., None], diff * _gather(precision, columns), 0.0)
        target = jnp.where(valid, columns, num_components)  # invalid slots are dropped
        # d l / d z = -(z - m)/var, d l / d m = (z - m)/var, d l / d v = ((z - m)^2/var - 1)/2.
        d_z = d_z - jnp.sum(weight * scaled, axis=1)
        d_means = d_means.at[target].add(weight * scaled, mode="drop")
        d_log_vars = d_log_vars.at[target].add(0.5 * weight * (scaled * diff - 1.0), mode="drop")
        return d_z, d_means, d_log_vars

    zeros = (jnp.zeros_like(z), jnp.zeros_like(means), jnp.zeros_like(log_vars))
    d_z, d_means, d_log_vars = _over_slots(block_end, num_slots, body, zeros)
    return d_z, d_means, d_log_vars, None, None


_log_mean_exp.defvjp(_log_mean_exp_fwd, _log_mean_exp_bwd)


def active_log_mean_exp(z, means, log_vars, mask):
    """Log-density of each row under the equal-weight mixture of its active components.

    Args:
      z: Samples, ``[N, d]``, float.
      means: Component means, ``[K, d]``, float.
      log_vars: Component log-variances, ``[K, d]``, float.
      mask: Active pairs, ``[N, K]``, bool. Components are read only where active, so the
        parameters of inactive ones never reach a value or a gradient.

    Returns:
      ``(log_p [N], has_any [N])``: ``log_p`` exact to float32 rounding, and a finite dummy
      with zero gradients for rows without an active component (``has_any`` False).
      Reverse-mode differentiable in ``z``, ``means`` and ``log_vars``.
    """
    if mask.shape[-1] == 0:
        return jnp.zeros(mask.shape[:1], z.dtype), jnp.zeros(mask.shape[:1], bool)
    blocks, block_end = _mask_index(mask)
    return _log_mean_exp(z, means, log_vars, blocks, block_end), block_end[:, -1] > 0
