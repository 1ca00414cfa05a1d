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

Two paths, both in the direct form, both with ``O(N K)`` memory (nothing of size ``N K d``)
and one custom VJP around them (reverse mode only); ``lax.cond`` picks the path, in the
forward and again in the backward, from the largest number of active components in a row:

* sparse masks (the C-GMVAE label sets): each row's active components are visited in slots of
  ``T`` per step of a ``while_loop`` (``ceil(max active per row / T)`` steps): memory
  ``O(N K)`` for the mask index and the saved log-densities plus ``O(N T d)`` per step, work
  proportional to the active pairs. Faster than the matrix products for large ``K``;
* dense masks (a row with more than a quarter of the components active): all pairs, a chunk
  of ``C`` components per ``scan`` step: memory ``O(N C d)`` per step, work ``N K d``,
  several times the matrix products' time.

The forward saves the log-densities it computed (``[N, K + slack]``) and the backward reads
the mixture weights ``exp(l - lse)`` from them: log-densities recomputed in the backward can
differ from the forward's by float32 ulps, which for ``|l| ~ 10^9`` (a far sample, tiny
variances) are hundreds of nats, enough to turn a weight of 1 into ``10^40``.
"""

import math

import jax
import jax.numpy as jnp

from cgmvae_jax.losses import _checks

_LOG_2PI = math.log(2.0 * math.pi)
_HIGHEST = jax.lax.Precision.HIGHEST
# Slots per row and step: at most _MAX_SLOTS, and [N, T, d] at most _SLOT_ELEMENTS floats.
_SLOT_ELEMENTS = 2**18
_MAX_SLOTS = 64
# Columns per block of the mask index (the running count is kept per block, not per column).
_BLOCK = 16
# Dense masks (a row with more than _DENSE_FRACTION * K active components) take the chunked
# path: every pair, but no gathers. [N, C, d] chunks of at most _CHUNK_ELEMENTS floats and
# _MAX_CHUNK components (under an outer vmap N looks like 1: the cap keeps chunks small).
_DENSE_FRACTION = 0.25
_CHUNK_ELEMENTS = 2**20
_MAX_CHUNK = 256


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


def _chunk_size(num_rows: int, num_components: int, dim: int) -> int:
    budget = _CHUNK_ELEMENTS // max(1, num_rows * dim)
    return max(1, min(_MAX_CHUNK, num_components, budget))


def _saved_width(num_rows: int, num_components: int, dim: int) -> int:
    """Columns of the saved log-densities: K plus room for a last slot step or chunk."""
    slack = max(
        _num_slots(num_rows, num_components, dim), _chunk_size(num_rows, num_components, dim)
    )
    return num_components + slack


def _streaming_lse(carry, log_probs):
    """Adds ``log_probs [N, c]`` (-inf where inactive) to a running (max, sum exp(l - max))."""
    top, total = carry  # [N], [N]
    new_top = jnp.maximum(top, jnp.max(log_probs, axis=-1))
    shift = jnp.where(jnp.isfinite(new_top), new_top, 0.0)  # rows with nothing yet
    total = total * jnp.exp(top - shift) + jnp.sum(jnp.exp(log_probs - shift[:, None]), -1)
    return new_top, total


# Each path's forward returns the active log-densities it computed, [N, W] (sparse: by rank
# within the row; dense: by component), and the running (max, sum) of their log-sum-exp; the
# backward reads the weights from them (see the module docstring).


def _sparse_forward(z, means, precision, const, blocks, block_end, init):
    """Each row's active pairs, slot by slot; saved by rank (column r: the r-th active pair)."""
    num_rows, dim = z.shape
    num_slots, width = (
        _num_slots(num_rows, len(means), dim),
        _saved_width(num_rows, len(means), dim),
    )

    def body(start, carry):
        saved, lse_carry = carry
        columns, valid = _slot_columns(blocks, block_end, start, num_slots)  # [N, T]
        log_probs = _slot_log_probs(z, means, precision, const, columns)[0]
        log_probs = jnp.where(valid, log_probs, -jnp.inf)
        saved = jax.lax.dynamic_update_slice(saved, log_probs, (jnp.zeros_like(start), start))
        return saved, _streaming_lse(lse_carry, log_probs)

    return _over_slots(block_end, num_slots, body, (jnp.zeros((num_rows, width), z.dtype), init))


def _sparse_grads(z, means, precision, blocks, block_end, saved, lse, g):
    """Gradients of sum_n g_n value_n, slot by slot (a scatter-add per component)."""
    num_rows, dim = z.shape
    num_slots, num_components = _num_slots(num_rows, len(means), dim), len(means)

    def body(start, grads):
        d_z, d_means, d_log_vars = grads
        columns, valid = _slot_columns(blocks, block_end, start, num_slots)  # [N, T]
        log_probs = jax.lax.dynamic_slice(
            saved, (jnp.zeros_like(start), start), (num_rows, num_slots)
        )
        # d value / d log_prob = the pair's share of its row's mixture, exp(l - lse).
        share = jnp.where(valid, jnp.exp(jnp.where(valid, log_probs, 0.0) - lse[:, None]), 0.0)
        weight = (g[:, None] * share)[..., None]  # [N, T, 1]
        diff = z[:, None, :] - _gather(means, columns)  # [N, T, d]
        # (z - m) / var; zero in invalid slots, whose clipped column may hold a component no
        # row uses, with any (even non-finite) parameters.
        scaled = jnp.where(valid[..., None], diff * _gather(precision, columns), 0.0)
        target = jnp.where(valid, columns, num_components)  # invalid slots are dropped
        # d l / d z = -(z - m)/var, d l / d m = (z - m)/var, d l / d v = ((z - m)^2/var - 1)/2.
        d_z = d_z - jnp.sum(weight * scaled, axis=1)
        d_means = d_means.at[target].add(weight * scaled, mode="drop")
        d_log_vars = d_log_vars.at[target].add(0.5 * weight * (scaled * diff - 1.0), mode="drop")
        return d_z, d_means, d_log_vars

    zeros = (jnp.zeros_like(z), jnp.zeros_like(means), jnp.zeros_like(precision))
    return _over_slots(block_end, num_slots, body, zeros)


def _component_chunks(z, means, precision, const, blocks):
    """Means, precisions, constants and mask columns in chunks of C components.

    Shapes ``[n, C, d]``, ``[n, C, d]``, ``[n, C]``, ``[n, C, N]`` (``n = ceil(K / C)``).
    """
    (num_rows, dim), num_components = z.shape, means.shape[0]
    chunk = _chunk_size(num_rows, num_components, dim)
    pad = -num_components % chunk
    mask = blocks.reshape(num_rows, -1)[:, :num_components].T  # [K, N]
    # Components no row uses are zeroed, so whatever they hold stays out of every product.
    used = jnp.any(mask, axis=1)  # [K]
    parts = (
        jnp.where(used[:, None], means, 0.0),
        jnp.where(used[:, None], precision, 0.0),
        jnp.where(used, const, 0.0),
        mask,
    )
    padded = (jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)) for x in parts)
    return tuple(x.reshape((-1, chunk) + x.shape[1:]) for x in padded)


def _dense_forward(z, means, precision, const, blocks, block_end, init):
    """All pairs, a chunk of components per scan step; saved by component."""
    num_rows, dim = z.shape
    width = _saved_width(num_rows, len(means), dim)

    def body(lse_carry, xs):
        mean, prec, c, active = xs  # [C, d], [C, d], [C], [C, N]
        diff = z[:, None, :] - mean  # [N, C, d]
        log_probs = -0.5 * (jnp.sum(jnp.square(diff) * prec, axis=-1) + c)  # [N, C]
        log_probs = jnp.where(active.T, log_probs, -jnp.inf)
        return _streaming_lse(lse_carry, log_probs), log_probs

    chunks = _component_chunks(z, means, precision, const, blocks)
    lse_carry, log_probs = jax.lax.scan(body, init, chunks)  # [n, N, C]
    saved = jnp.moveaxis(log_probs, 0, 1).reshape(num_rows, -1)  # [N, n C]
    return jnp.pad(saved, ((0, 0), (0, width - saved.shape[1]))), lse_carry


def _dense_grads(z, means, precision, blocks, block_end, saved, lse, g):
    """Gradients of sum_n g_n value_n, a chunk of components per scan step."""
    (num_rows, dim), num_components = z.shape, means.shape[0]
    chunks = _component_chunks(z, means, precision, jnp.zeros(num_components, z.dtype), blocks)
    num_chunks, chunk = chunks[2].shape
    saved = saved[:, : num_chunks * chunk].reshape(num_rows, num_chunks, chunk)

    def body(d_z, xs):
        mean, prec, _, active, log_probs = xs  # ..., [C, N], [N, C]
        share = jnp.where(active.T, jnp.exp(jnp.where(active.T, log_probs, 0.0) - lse[:, None]), 0)
        weight = g[:, None] * share  # [N, C]
        diff = z[:, None, :] - mean  # [N, C, d]
        scaled = diff * prec  # (z - m) / var
        d_z = d_z - jnp.einsum("nc,ncd->nd", weight, scaled, precision=_HIGHEST)
        d_mean = jnp.einsum("nc,ncd->cd", weight, scaled, precision=_HIGHEST)
        d_log_var = 0.5 * (
            jnp.einsum("nc,ncd->cd", weight, scaled * diff, precision=_HIGHEST)
            - jnp.sum(weight, axis=0)[:, None]
        )
        return d_z, (d_mean, d_log_var)

    xs = chunks + (jnp.moveaxis(saved, 1, 0),)
    d_z, (d_means, d_log_vars) = jax.lax.scan(body, jnp.zeros_like(z), xs)
    d_means = d_means.reshape(-1, dim)[:num_components]
    return d_z, d_means, d_log_vars.reshape(-1, dim)[:num_components]


def _is_dense(block_end, num_components):
    """Whether some row has more than _DENSE_FRACTION of the components active."""
    return jnp.max(block_end[:, -1], initial=0) > math.floor(_DENSE_FRACTION * num_components)


@jax.custom_vjp
def _log_mean_exp(z, means, log_vars, blocks, block_end):
    return _log_mean_exp_fwd(z, means, log_vars, blocks, block_end)[0]


def _log_mean_exp_fwd(z, means, log_vars, blocks, block_end):
    precision = jnp.exp(-log_vars)  # [K, d], once rather than per pair
    const = jnp.sum(_LOG_2PI + log_vars, axis=-1)  # [K]
    init = (jnp.full(z.shape[:1], -jnp.inf, z.dtype), jnp.zeros(z.shape[:1], z.dtype))
    dense = _is_dense(block_end, len(means))
    args = (z, means, precision, const, blocks, block_end, init)
    saved, (top, total) = jax.lax.cond(dense, _dense_forward, _sparse_forward, *args)
    count = block_end[:, -1]
    has_any = count > 0
    # Rows without an active pair get log-sum-exp 0 (finite; the caller replaces their value).
    lse = jnp.where(has_any, top + jnp.log(jnp.where(has_any, total, 1.0)), 0.0)  # [N]
    value = lse - jnp.log(jnp.maximum(count, 1).astype(z.dtype))
    return value, (z, means, precision, blocks, block_end, saved, lse)


def _log_mean_exp_bwd(residuals, g):
    z, means, precision, blocks, block_end, saved, lse = residuals
    dense = _is_dense(block_end, len(means))
    args = (z, means, precision, blocks, block_end, saved, lse, g)
    grads = jax.lax.cond(dense, _dense_grads, _sparse_grads, *args)
    return (*grads, None, None)


_log_mean_exp.defvjp(_log_mean_exp_fwd, _log_mean_exp_bwd)


def masked_log_mean_exp(log_probs, mask):
    """log((1/|A|) sum_{k in A} exp(log_probs_k)) and whether A is non-empty.

    Returns a finite value for rows where A is empty (the caller replaces it), so that the
    gradient of those rows is exactly zero rather than NaN.
    """
    shape = _checks.broadcast_shapes(("log_probs", log_probs.shape), ("mask", mask.shape))
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


def active_log_mean_exp(z, means, log_vars, mask):
    """Log-density of each row under the equal-weight mixture of its active components.

    Sparse masks visit the active pairs only (slots); when some row has more than
    ``K / 4`` active components, all pairs are evaluated by chunks of components instead
    (``lax.cond``: only one path runs, unless an outer ``vmap`` batches the mask).

    Args:
      z: Samples, ``[N, d]``, float.
      means: Component means, ``[K, d]``, float.
      log_vars: Component log-variances, ``[K, d]``, float.
      mask: Active pairs, ``[N, K]``, bool. The parameters of components no row uses never
        reach a value or a gradient.

    Returns:
      ``(log_p [N], has_any [N])``: ``log_p`` exact to float32 rounding, and a finite dummy
      with zero gradients for rows without an active component (``has_any`` False).
      Reverse-mode differentiable in ``z``, ``means`` and ``log_vars``.
    """
    if mask.shape[-1] == 0:
        return jnp.zeros(mask.shape[:1], z.dtype), jnp.zeros(mask.shape[:1], bool)
    blocks, block_end = _mask_index(mask)
    return _log_mean_exp(z, means, log_vars, blocks, block_end), block_end[:, -1] > 0
