"""Baseline models of the loss comparison: an MLP classifier with an optional KMCL head.

`MLPClassifier` trains with the objectives of `cgmvae_jax.objective.mlp_loss` (BCE, ASL, and
the KMCL or CLML terms) through the same trainer as C-GMVAE (`config.model = "mlp"`).
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cgmvae_jax import config_lib
from cgmvae_jax.layers import MLP, Dense


class KMCLHead(nn.Module):
    """KMCL's per-class Gaussians over a feature vector: a mean and a variance head.

    KMCL (Sajedi et al., arXiv 2307.03967) represents each example by one diagonal Gaussian per
    class around its feature h [B, D]; `losses.kmcl_reconstruction_loss` and
    `losses.kmcl_contrastive_loss` take these as (means, variances):

    * isotropic: one scalar mean and variance per class (used for all D dimensions),
      means and variances [B, K];
    * anisotropic (the released default): a mean and a variance per class and dimension,
      [B, K, D] (Dense(K * D) heads; the flat index is k * D + d). The released code lays
      these out [B, D, K]; the losses take [B, K, D].

    Variances are `min_variance + softplus(raw)`, so they stay above `min_variance` (default 1,
    the floor of the released head, whose variance is 2 + 1e-7 + ELU(raw) > 1). The released
    head initialises the mean kernel U(0, 0.1) and the variance kernel to ones; here both use
    the `param_init` scheme, so that the initial variances do not depend on the feature scale.

    Attributes:
      num_classes: K.
      isotropic: One scalar per class (True) or one value per class and dimension (False).
      min_variance: Lower bound of the variances (> 0).
      param_init: "torch" | "flax" (see `initializers`).
      dtype: Compute dtype; outputs are float32.
    """

    num_classes: int
    isotropic: bool = False
    min_variance: float = 1.0
    param_init: str = "torch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns (means, variances), float32, [B, K] (isotropic) or [B, K, D] (anisotropic).

        Args:
          features: h [B, D].
        """
        if self.min_variance <= 0:
            raise ValueError(f"min_variance must be > 0, got {self.min_variance}")
        dim = features.shape[-1]
        size = self.num_classes if self.isotropic else self.num_classes * dim
        shape = features.shape[:-1] + (
            (self.num_classes,) if self.isotropic else (self.num_classes, dim)
        )
        means = Dense(size, param_init=self.param_init, dtype=self.dtype, name="mean")(features)
        raw = Dense(size, param_init=self.param_init, dtype=self.dtype, name="variance")(features)
        means = means.astype(jnp.float32).reshape(shape)  # [B, K] or [B, K, D]
        variances = self.min_variance + nn.softplus(raw.astype(jnp.float32))
        return means, variances.reshape(shape)  # [B, K] or [B, K, D]


class MLPClassifier(nn.Module):
    """Feature MLP -> linear logits, with an optional KMCL head: the loss-comparison baseline.

    x [B, F] -> `hidden` ReLU + dropout layers -> features h [B, D] (D = hidden[-1]; the
    penultimate representation used by CLML and KMCL) -> Dense(L) -> logits [B, L]. With
    `kmcl=True` a `KMCLHead` on h adds the per-class Gaussians. Labels are not an input of the
    network (the signature matches `CGMVAE` so that the trainer can use either model).

    Usage:

        model = baselines.MLPClassifier(num_labels=L, kmcl=True)
        variables = model.init({"params": k0, "dropout": k1}, x, y, train=False)
        outputs = model.apply(variables, x, y, train=True, rngs={"dropout": k2})
        logits = model.apply(variables, x, method="predict")  # [B, L]

    Attributes:
      num_labels: L.
      hidden: Hidden sizes of the feature MLP (`config.feature_hidden`); at least one.
      dropout_rate: Drop probability after every hidden layer (rng stream "dropout").
      param_init: "torch" | "flax" (see `initializers`).
      kmcl: Whether to add the KMCL head.
      kmcl_isotropic: See `KMCLHead.isotropic`.
      kmcl_min_variance: See `KMCLHead.min_variance`.
      dtype: Compute dtype; parameters and outputs are float32.
    """

    num_labels: int
    hidden: Sequence[int] = (256, 512, 256)
    dropout_rate: float = 0.5
    param_init: str = "torch"
    kmcl: bool = False
    kmcl_isotropic: bool = False
    kmcl_min_variance: float = 1.0
    dtype: Any = jnp.float32

    def setup(self):
        if not self.hidden:
            raise ValueError("MLPClassifier needs at least one hidden layer (feature_hidden).")
        config_lib.check_choice("init", self.param_init, "param_init")
        self.mlp = MLP(self.hidden, self.dropout_rate, self.param_init, self.dtype)
        self.classifier = Dense(self.num_labels, param_init=self.param_init, dtype=self.dtype)
        if self.kmcl:
            self.kmcl_head = KMCLHead(
                self.num_labels,
                self.kmcl_isotropic,
                self.kmcl_min_variance,
                self.param_init,
                self.dtype,
            )

    def __call__(self, x: jax.Array, y: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        """Forward pass.

        Args:
          x: Features [B, F].
          y: Labels [B, L]; unused (accepted for the trainer's common signature).
          train: Dropout on (rng stream "dropout"); no other randomness.

        Returns:
          Dict of float32 arrays: "feat_logits" [B, L] (predictions are their sigmoid),
          "features" h [B, D]; with `kmcl`, "kmcl_means" and "kmcl_variances" ([B, L] isotropic,
          [B, L, D] anisotropic).
        """
        del y
        features = self.mlp(x, train=train)  # [B, D]
        outputs = {
            "feat_logits": self.classifier(features).astype(jnp.float32),  # [B, L]
            "features": features.astype(jnp.float32),  # [B, D]
        }
        if self.kmcl:
            means, variances = self.kmcl_head(features)
            outputs["kmcl_means"] = means  # [B, L] or [B, L, D]
            outputs["kmcl_variances"] = variances  # same shape
        return outputs

    def predict(self, x: jax.Array) -> jax.Array:
        """Deterministic logits [B, L] float32 (dropout off); the KMCL head is not run."""
        return self.classifier(self.mlp(x, train=False)).astype(jnp.float32)
