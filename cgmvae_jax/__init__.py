"""cgmvae_jax: C-GMVAE in JAX/Flax and a library of multi-label losses.

Submodules are imported on first use, so `from cgmvae_jax import losses` loads jax alone
(no flax, optax or orbax):

    from cgmvae_jax import losses    # pure jax loss functions
    from cgmvae_jax import metrics   # multi-label metrics and threshold protocols (numpy)
    from cgmvae_jax import train     # the training system (flax, optax, orbax)
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "baselines",
    "checkpoint",
    "config_lib",
    "cpu_rewrites",
    "data",
    "evaluation",
    "interpret",
    "layers",
    "losses",
    "metrics",
    "models",
    "objective",
    "sharding",
    "train",
    "trainer",
    "workdir",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
