"""cgmvae_jax: C-GMVAE in JAX/Flax and a library of multi-label losses.

    import cgmvae_jax
    model = cgmvae_jax.fit(x, y, num_epochs=50)    # a cgmvae_jax.Model
    probs = model.predict_proba(x_new)             # [n, L]
    model.save("runs/mine"); model = cgmvae_jax.load("runs/mine")
    clf = cgmvae_jax.CGMVAEClassifier(num_epochs=50)   # for scikit-learn's model selection

Names and submodules are imported on first use, so `from cgmvae_jax import losses` loads jax
alone (no flax, optax or orbax):

    from cgmvae_jax import losses    # pure jax loss functions
    from cgmvae_jax import metrics   # multi-label metrics and threshold protocols (numpy)
    from cgmvae_jax import train     # the training loop (flax, optax, orbax)
"""

import importlib

__version__ = "0.1.0"

# Public names -> the submodule defining them (the Python API, DESIGN.md §11).
_API = {
    "fit": "api",
    "load": "api",
    "Model": "api",
    "CGMVAEClassifier": "estimator",
}

_SUBMODULES = (
    "api",
    "baselines",
    "checkpoint",
    "compilation",
    "config_lib",
    "cpu_rewrites",
    "data",
    "estimator",
    "evaluation",
    "feed",
    "interpret",
    "layers",
    "losses",
    "metrics",
    "model_file",
    "models",
    "objective",
    "optimizer",
    "processes",
    "sharding",
    "train",
    "trainer",
    "tuning",
    "workdir",
    "writers",
)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + list(_API))
