"""CPU-specific rewrites: the same values and gradients as plain JAX, faster on XLA:CPU.

Three operations of the C-GMVAE step have an automatic gradient that XLA:CPU (jaxlib 0.10)
compiles into slow code, so on the CPU backend they carry a hand-written gradient:

* `l2_normalize`: the backward's per-row dot product becomes a matrix-vector product;
* `repeat_leading`: the backward of a broadcast over a short new leading axis becomes
  `count - 1` additions instead of a reduction;
* `matmul` (every dense layer and the logits): the weight gradient `x^T g` contracts the
  batch axis of both operands, a form XLA:CPU hands to Eigen (about 1.5 times slower than the
  YNNPACK kernels it uses for the forward and data-gradient products at these shapes), often
  after a transposing copy of `g`; here `x^T` is materialised once (a cheap copy of the
  smaller operand) so that the product is a plain row-major matmul.

On other backends (GPU, TPU) the plain forms are used: their compilers handle them well, and
custom VJPs would only hide the operations from fusion. The choice is made when a function is
traced, from `jax.default_backend()` (`use_cpu_rewrites`). The equality of both forms, values
and gradients, is tested.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp


def use_cpu_rewrites() -> bool:
    """Whether the hand-written CPU gradients are used: True on the CPU backend."""
    return jax.default_backend() == "cpu"


def l2_normalize(values: jax.Array) -> jax.Array:
    """Rows divided by max(||v||, 1e-12), with a finite gradient at v = 0. Returns float32.

    Equal to `values / sqrt(max(||v||^2, 1e-24))` and its automatic gradient; on the CPU the
    gradient is written out (`_l2_normalize_bwd`).
    """
    values = values.astype(jnp.float32)
    if use_cpu_rewrites():
        return _l2_normalize(values)
    return _l2_normalize_plain(values)


def _l2_normalize_plain(values: jax.Array) -> jax.Array:
    squared_norm = jnp.sum(jnp.square(values), axis=-1, keepdims=True)  # [..., 1]
    # sqrt(max(n^2, 1e-24)) = max(n, 1e-12); the max keeps sqrt away from 0, so no inf gradient.
    return values / jnp.sqrt(jnp.maximum(squared_norm, 1e-24))


_l2_normalize = jax.custom_vjp(_l2_normalize_plain)


def _l2_normalize_fwd(values):
    squared_norm = jnp.sum(jnp.square(values), axis=-1, keepdims=True)  # [..., 1]
    norm = jnp.sqrt(jnp.maximum(squared_norm, 1e-24))  # [..., 1]
    unit = values / norm
    return unit, (unit, norm, squared_norm > 1e-24)


def _l2_normalize_bwd(residuals, cotangent):
    # d/dv (v / n) applied to c: (c - u <c, u>) / n with u = v / n; below the 1e-12 floor n is
    # a constant and the gradient is c / n. The row dot product <c, u> is a matrix-vector
    # product: XLA:CPU (jaxlib 0.10) runs the equivalent fused multiply-reduce over rows of
    # E values several times slower inside the backward pass.
    unit, norm, above_floor = residuals
    ones = jnp.ones((unit.shape[-1], 1), unit.dtype)
    dot = jnp.matmul(cotangent * unit, ones, precision=jax.lax.Precision.HIGHEST)  # [..., 1]
    return ((cotangent - jnp.where(above_floor, unit * dot, 0.0)) / norm,)


_l2_normalize.defvjp(_l2_normalize_fwd, _l2_normalize_bwd)


def repeat_leading(values: jax.Array, count: int) -> jax.Array:
    """`values` repeated along a new leading axis: [...] -> [count, ...] (a broadcast).

    On the CPU its gradient adds the `count` cotangent slices with `count - 1` element-wise
    additions: the automatic gradient of a broadcast is a reduction over the new short leading
    axis, which XLA:CPU (jaxlib 0.10) runs tens of times slower than the additions. Used where
    one tensor is shared by the decoder's samples (the x-projection, the posterior mean and
    scale).
    """
    if use_cpu_rewrites():
        return _repeat_leading(values, count)
    return jnp.broadcast_to(values, (count, *values.shape))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _repeat_leading(values: jax.Array, count: int) -> jax.Array:
    return jnp.broadcast_to(values, (count, *values.shape))


def _repeat_leading_fwd(values, count):
    return _repeat_leading(values, count), None


def _repeat_leading_bwd(count, residuals, cotangent):
    del residuals
    total = cotangent[0]
    for i in range(1, count):
        total = total + cotangent[i]
    return (total,)


_repeat_leading.defvjp(_repeat_leading_fwd, _repeat_leading_bwd)


def matmul(
    x: jax.Array,
    kernel: jax.Array,
    *,
    transpose_kernel: bool = False,
    preferred_element_type: Any = None,
) -> jax.Array:
    """`x @ kernel` (or `x @ kernel.T` with `transpose_kernel`): x [..., K] -> [..., M].

    The kernel is [K, M] (or [M, K] with `transpose_kernel`). Equal to
    `jnp.matmul(x, kernel, preferred_element_type=...)` and its automatic gradient. On the CPU,
    with float32 operands, the kernel's gradient is a row-major product with a materialised
    transposed operand (see the module docstring); other dtypes use the plain form.
    """
    if use_cpu_rewrites() and x.dtype == kernel.dtype == jnp.float32:
        return _matmul(x, kernel, transpose_kernel)
    w = kernel.T if transpose_kernel else kernel
    return jnp.matmul(x, w, preferred_element_type=preferred_element_type)


def _matmul_plain(x, kernel, transpose_kernel):
    return jnp.matmul(x, kernel.T if transpose_kernel else kernel)


_matmul = jax.custom_vjp(_matmul_plain, nondiff_argnums=(2,))


def _matmul_fwd(x, kernel, transpose_kernel):
    return _matmul_plain(x, kernel, transpose_kernel), (x, kernel)


def _transposed_rows(a: jax.Array) -> jax.Array:
    """[..., K] -> [K, prod(...)], materialised: the barrier keeps XLA from folding the
    transpose back into the consuming dot as a batch-axis contraction."""
    return jax.lax.optimization_barrier(a.reshape(-1, a.shape[-1]).T)


def _matmul_bwd(transpose_kernel, residuals, cotangent):
    x, kernel = residuals
    w = kernel.T if transpose_kernel else kernel  # [K, M]
    dx = jnp.matmul(cotangent, w.T).astype(x.dtype)  # [..., K]
    if transpose_kernel:  # kernel [M, K]: g^T x, with g^T [M, N] materialised
        dkernel = jnp.matmul(_transposed_rows(cotangent), x.reshape(-1, x.shape[-1]))
    else:  # kernel [K, M]: x^T g, with x^T [K, N] materialised
        dkernel = jnp.matmul(_transposed_rows(x), cotangent.reshape(-1, cotangent.shape[-1]))
    return dx, dkernel.astype(kernel.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)
