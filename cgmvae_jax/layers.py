"""Dense building blocks shared by C-GMVAE and the baselines: layers, init schemes, heads.

Parameters are float32; `dtype` sets the compute dtype of the matrix products (e.g.
`jnp.bfloat16`). `init="torch"` reproduces PyTorch's `nn.Linear` initialisation (the official
code's logit scale), `init="flax"` is Flax's `nn.Dense` default.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cgmvae_jax import config_lib
from cgmvae_jax.cpu_rewrites import matmul

Initializer = Callable[..., jax.Array]


def initializers(init: str, fan_in: int) -> tuple[Initializer, Initializer]:
    """Kernel and bias initialisers of a dense layer with `fan_in` inputs.

    Args:
      init: "torch" for PyTorch's `nn.Linear` default, weight and bias both
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (weight: variance_scaling(1/3, "fan_in", "uniform"));
        it gives the official code's initial logit scale. "flax" for Flax's `nn.Dense` default
        (lecun_normal kernel, zero bias).
      fan_in: Number of inputs of the layer (the bias range depends on it).

    Returns:
      (kernel_init, bias_init); the kernel is laid out [fan_in, features].
    """
    config_lib.check_choice("init", init)
    if init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros_init()
    bound = 1.0 / float(fan_in) ** 0.5

    def bias_init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), bias_init


def soft_clamp(values: jax.Array, limit: float) -> jax.Array:
    """`limit * tanh(values / limit)`: smooth, identity near 0, bounded by `limit` (0 = off)."""
    if not limit:
        return values
    return limit * jnp.tanh(values / limit)


class Dense(nn.Module):
    """Affine layer `x @ kernel + bias` with the `init` scheme of `initializers`.

    Attributes:
      features: Output size.
      param_init: "torch" | "flax" (see `initializers`).
      dtype: Compute dtype; parameters are float32.
    """

    features: int
    param_init: str = "torch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel_init, bias_init = initializers(self.param_init, fan_in)
        kernel = self.param("kernel", kernel_init, (fan_in, self.features), jnp.float32)
        bias = self.param("bias", bias_init, (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return matmul(x, kernel) + bias  # [..., features]


class MLP(nn.Module):
    """Dense -> ReLU -> Dropout for every size in `hidden`.

    Attributes:
      hidden: Output size of each layer.
      dropout_rate: Drop probability after every ReLU (rng stream "dropout").
      param_init: "torch" | "flax" (see `initializers`).
      dtype: Compute dtype.
    """

    hidden: Sequence[int]
    dropout_rate: float = 0.0
    param_init: str = "torch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for size in self.hidden:
            x = nn.relu(Dense(size, param_init=self.param_init, dtype=self.dtype)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return x


class GaussianHeads(nn.Module):
    """Two linear heads giving a diagonal Gaussian: mean and soft-clamped log-variance (float32)."""

    latent_dim: int
    log_var_limit: float = 30.0
    param_init: str = "torch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = Dense(self.latent_dim, param_init=self.param_init, dtype=self.dtype, name="mean")(h)
        log_var = Dense(
            self.latent_dim, param_init=self.param_init, dtype=self.dtype, name="log_var"
        )(h)
        log_var = soft_clamp(log_var.astype(jnp.float32), self.log_var_limit)
        return mean.astype(jnp.float32), log_var
