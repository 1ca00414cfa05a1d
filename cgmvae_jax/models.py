"""Flax Linen modules of C-GMVAE: encoders, decoder and the full model.

The model returns a dict of named outputs and never a loss; `cgmvae_jax.objective` turns the
outputs into the training objective. The baselines of the loss comparison are in
`cgmvae_jax.baselines`; dense layers and init schemes in `cgmvae_jax.layers`. Shapes: B batch,
F features, L labels, E label-embedding size, d latent size.

Parameters are float32. `dtype` sets the compute dtype of the dense layers (e.g. `jnp.bfloat16`);
everything returned (logits, embeddings, Gaussian parameters, samples) is float32.

Deviations from the official PyTorch code, all for numerical safety:

* Log-variance heads are soft-clamped, `limit * tanh(v / limit)` (`log_var_limit`, 0 disables),
  so that `exp(log_var)` cannot overflow: with the default limit 30 variances stay within
  (1e-13, 1e13), and a log-variance of magnitude 3 is changed by only 0.3 %.
* A row with no positive label gets z_y = 0 in the mixture label branch (a safe divide) instead of
  0/0 = NaN; the objective masks such rows out of every label-dependent term.
* The L2 normalisation of the decoder output divides by sqrt(max(||v||^2, 1e-24)), which equals
  max(||v||, 1e-12) and has a finite gradient at v = 0.

Usage:

    model = models.CGMVAE(num_labels=L)
    variables = model.init(k0, x, y, train=False)  # eval mode needs only the params key
    outputs = model.apply(variables, x, y, train=True, rngs={"dropout": k3, "sample": k4})
    logits = model.apply(variables, x, method=models.CGMVAE.predict)  # [B, L], no labels needed
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from cgmvae_jax import baselines, config_lib
from cgmvae_jax.cpu_rewrites import l2_normalize, matmul, repeat_leading
from cgmvae_jax.layers import MLP, Dense, GaussianHeads, initializers


class FeatureEncoder(nn.Module):
    """q(z|x): MLP `hidden` (ReLU + dropout) -> heads mean, log_var, each [B, d] float32."""

    latent_dim: int
    hidden: Sequence[int] = (256, 512, 256)
    dropout_rate: float = 0.5
    log_var_limit: float = 30.0
    param_init: str = "torch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden, self.dropout_rate, self.param_init, self.dtype, name="mlp")(
            x, train=train
        )
        return GaussianHeads(
            self.latent_dim, self.log_var_limit, self.param_init, self.dtype, name="heads"
        )(h)


class LabelEncoder(nn.Module):
    """Label embeddings W [L, E] (+ bias b [E]) and the label-side Gaussians.

    W and b are the official `label_lookup = Linear(L, E)` (torch init fan_in = L). W is also the
    prediction matrix (logits = emb @ W.T) and the contrastive keys. The encoder maps an input row
    h0 -> relu -> dropout -> MLP `hidden` (ReLU + dropout) -> heads mean, log_var:

    * `__call__(None)` (mixture prior): h0 = W[l] + b for every label, giving per-label Gaussians
      [L, d] (the official I_L @ W + b without the L x L matmul);
    * `__call__(y)` (unimodal prior): h0 = y @ W + b, one Gaussian per example, [B, d].
    """

    num_labels: int
    embedding_dim: int
    latent_dim: int
    hidden: Sequence[int] = (512, 256)
    dropout_rate: float = 0.5
    log_var_limit: float = 30.0
    param_init: str = "torch"
    dtype: Any = jnp.float32

    def setup(self):
        kernel_init, bias_init = initializers(self.param_init, self.num_labels)
        shape = (self.num_labels, self.embedding_dim)
        self.embeddings = self.param("embeddings", kernel_init, shape, jnp.float32)  # [L, E]
        self.bias = self.param("bias", bias_init, (self.embedding_dim,), jnp.float32)  # [E]
        self.dropout = nn.Dropout(self.dropout_rate)
        self.mlp = MLP(self.hidden, self.dropout_rate, self.param_init, self.dtype)
        self.heads = GaussianHeads(self.latent_dim, self.log_var_limit, self.param_init, self.dtype)

    def __call__(self, y: jax.Array | None = None, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """Returns (means, log_vars): [L, d] when `y` is None, else [B, d] for y [B, L]."""
        if y is None:
            h = self.embeddings + self.bias  # [L, E]
            h = h.astype(self.dtype)
        else:
            y, w, b = nn.dtypes.promote_dtype(y, self.embeddings, self.bias, dtype=self.dtype)
            h = y @ w + b  # [B, E]
        h = self.dropout(nn.relu(h), deterministic=not train)
        h = self.mlp(h, train=train)
        return self.heads(h)


class Decoder(nn.Module):
    """concat(x, z) -> `hidden` ReLU layers -> Dense(E) -> leaky_relu(0.01) -> unit rows.

    No dropout. The first layer is stored as one kernel [F + d, H] and bias [H] (a torch
    Linear(F + d, H), init fan_in = F + d), but applied as x @ W[:F] + b + z @ W[F:]: the x part is
    computed once and shared by every latent sample in `z`.
    """

    embedding_dim: int
    hidden: Sequence[int] = (512,)
    param_init: str = "torch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """Decodes each latent sample.

        Args:
          x: Features [B, F].
          z: Latents [B, d], or [S, B, d] for S samples decoded with the same x.

        Returns:
          Unit-norm embeddings, float32, [B, E] or [S, B, E].
        """
        num_features, latent_dim = x.shape[-1], z.shape[-1]
        sizes = (*self.hidden, self.embedding_dim)
        fan_in = num_features + latent_dim
        kernel_init, bias_init = initializers(self.param_init, fan_in)
        kernel = self.param("input_kernel", kernel_init, (fan_in, sizes[0]), jnp.float32)
        bias = self.param("input_bias", bias_init, (sizes[0],), jnp.float32)
        x, z, kernel, bias = nn.dtypes.promote_dtype(x, z, kernel, bias, dtype=self.dtype)
        x_part = matmul(x, kernel[:num_features]) + bias  # [B, H], shared by all samples
        if z.ndim > x.ndim:
            x_part = repeat_leading(x_part, z.shape[0])  # [S, B, H]
        h = x_part + matmul(z, kernel[num_features:])  # [(S,) B, H]
        for i, size in enumerate(sizes[1:]):
            h = Dense(size, param_init=self.param_init, dtype=self.dtype, name=f"layer_{i + 1}")(
                nn.relu(h)
            )
        # With no hidden layer the input layer is the output layer (size E).
        return l2_normalize(nn.leaky_relu(h, negative_slope=0.01))  # [(S,) B, E]


class CGMVAE(nn.Module):
    """C-GMVAE (Bai et al., ICML 2022): feature and label branches sharing a decoder.

    Attributes:
      num_labels: L.
      latent_dim: d.
      embedding_dim: E (size of the label embeddings and of the decoder output).
      feature_hidden: Hidden sizes of the feature encoder.
      label_hidden: Hidden sizes of the label encoder.
      decoder_hidden: Hidden sizes of the decoder.
      dropout_rate: Drop probability in both encoders (rng stream "dropout").
      param_init: "torch" (official logit scale) | "flax"; `config.init` (a Linen module
        cannot have a field named `init`: it would hide `Module.init`).
      prior: "mixture" (C-GMVAE: mean of the active labels' Gaussians' means; mixture prior) |
        "unimodal" (MPVAE-style ablation: one Gaussian per example from the multi-hot vector).
      log_var_limit: Soft clamp of the log-variance heads (0 disables).
      dtype: Compute dtype; parameters and outputs are float32.
    """

    num_labels: int
    latent_dim: int = 64
    embedding_dim: int = 512
    feature_hidden: Sequence[int] = (256, 512, 256)
    label_hidden: Sequence[int] = (512, 256)
    decoder_hidden: Sequence[int] = (512,)
    dropout_rate: float = 0.5
    param_init: str = "torch"
    prior: str = "mixture"
    log_var_limit: float = 30.0
    dtype: Any = jnp.float32

    def setup(self):
        config_lib.check_choice("prior", self.prior)
        config_lib.check_choice("init", self.param_init, "param_init")
        self.feature_encoder = FeatureEncoder(
            self.latent_dim,
            self.feature_hidden,
            self.dropout_rate,
            self.log_var_limit,
            self.param_init,
            self.dtype,
        )
        self.label_encoder = LabelEncoder(
            self.num_labels,
            self.embedding_dim,
            self.latent_dim,
            self.label_hidden,
            self.dropout_rate,
            self.log_var_limit,
            self.param_init,
            self.dtype,
        )
        self.decoder = Decoder(self.embedding_dim, self.decoder_hidden, self.param_init, self.dtype)

    def _logits(self, embeddings: jax.Array) -> jax.Array:
        """emb @ W.T (no bias), float32 [..., L]; the matmul runs in the compute dtype."""
        w = self.label_encoder.embeddings  # [L, E]
        emb, w = nn.dtypes.promote_dtype(embeddings, w, dtype=self.dtype)
        logits = matmul(emb, w, transpose_kernel=True, preferred_element_type=jnp.float32)
        return logits.astype(jnp.float32)

    def __call__(self, x: jax.Array, y: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        """Both branches.

        Args:
          x: Features [B, F].
          y: Multi-hot labels [B, L] (any numeric or bool dtype).
          train: Dropout on and latents sampled (rng streams "dropout" and "sample"). When False,
            dropout is off and every latent is its mean (z1 = z2 = z_kl = mean_x; unimodal
            label_z = label mean), so no rng is needed and the outputs are deterministic.

        Returns:
          Dict of float32 arrays:
            "label_logits", "feat_logits", "feat_logits2": [B, L] (label branch, feature samples 1
              and 2); predictions are sigmoid("feat_logits").
            "label_emb", "feat_emb", "feat_emb2": [B, E] unit rows.
            "label_embeddings": W [L, E] (prediction matrix, contrastive keys).
            "mean_x", "log_var_x": [B, d] q(z|x).
            "z_kl": [B, d] a third independent sample of q(z|x), for the single-sample KL.
            "label_means", "label_log_vars": [L, d] (mixture) or [B, d] (unimodal).
            "label_z": [B, d] the latent decoded by the label branch.
        """
        y = jnp.asarray(y).astype(jnp.float32)  # [B, L]
        mean_x, log_var_x = self.feature_encoder(x, train=train)  # [B, d] each
        if self.prior == "mixture":
            label_means, label_log_vars = self.label_encoder(None, train=train)  # [L, d]
            # Mean of the active labels' means; 0 (not NaN) for a row with no positive label.
            count = jnp.sum(y, axis=-1, keepdims=True)  # [B, 1]
            label_z = (y @ label_means) / jnp.maximum(count, 1.0)  # [B, d]
        else:
            label_means, label_log_vars = self.label_encoder(y, train=train)  # [B, d]
            label_z = label_means
            if train:
                eps = jax.random.normal(self.make_rng("sample"), label_means.shape)
                label_z = label_means + jnp.exp(0.5 * label_log_vars) * eps
        if train:
            eps = jax.random.normal(self.make_rng("sample"), (3, *mean_x.shape))  # [3, B, d]
            std_x = jnp.exp(0.5 * log_var_x)  # [B, d]
            z_feat = repeat_leading(mean_x, 3) + repeat_leading(std_x, 3) * eps  # [3, B, d]
        else:
            z_feat = jnp.broadcast_to(mean_x, (3, *mean_x.shape))
        # One decoder pass over [label_z, z1, z2]: the x part of the first layer is shared.
        latents = jnp.stack([label_z, z_feat[0], z_feat[1]])  # [3, B, d]
        embeddings = self.decoder(x, latents)  # [3, B, E]
        logits = self._logits(embeddings)  # [3, B, L]
        return {
            "label_logits": logits[0],
            "feat_logits": logits[1],
            "feat_logits2": logits[2],
            "label_emb": embeddings[0],
            "feat_emb": embeddings[1],
            "feat_emb2": embeddings[2],
            "label_embeddings": self.label_encoder.embeddings,
            "mean_x": mean_x,
            "log_var_x": log_var_x,
            "z_kl": z_feat[2],
            "label_means": label_means,
            "label_log_vars": label_log_vars,
            "label_z": label_z,
        }

    def predict(self, x: jax.Array) -> jax.Array:
        """Deterministic feature-branch logits [B, L] float32 (dropout off, z = mean_x).

        Needs no labels and does not run the label encoder MLP (only W). Equal to
        `__call__(x, y, train=False)["feat_logits"]`. Use as
        `model.apply(variables, x, method=CGMVAE.predict)`.
        """
        mean_x, _ = self.feature_encoder(x, train=False)
        return self._logits(self.decoder(x, mean_x))


def make_model(config: ml_collections.ConfigDict, num_features: int, num_labels: int) -> nn.Module:
    """Builds the model named by `config.model` from the config fields.

    Args:
      config: Uses model, latent_dim, embedding_dim, feature_hidden, label_hidden, decoder_hidden,
        dropout_rate, init, prior, log_var_limit, dtype ("float32" | "bfloat16"); for
        model="mlp" (`MLPClassifier`) also loss, kmcl_isotropic, kmcl_min_variance.
      num_features: F (the modules infer it from the input; accepted for models that need it).
      num_labels: L.

    Returns:
      An unbound Linen module.
    """
    del num_features  # inferred from the input by the dense layers
    config_lib.check_choice("model", config.model)
    config_lib.check_choice("dtype", config.dtype, "config.dtype")
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
    if config.model == "mlp":
        # The KMCL head when config.loss includes "kmcl".
        return baselines.MLPClassifier(
            num_labels=int(num_labels),
            hidden=tuple(int(h) for h in config.feature_hidden),
            dropout_rate=float(config.dropout_rate),
            param_init=config.init,
            kmcl="kmcl" in str(config.loss),
            kmcl_isotropic=bool(config.kmcl_isotropic),
            kmcl_min_variance=float(config.kmcl_min_variance),
            dtype=dtype,
        )
    return CGMVAE(
        num_labels=int(num_labels),
        latent_dim=int(config.latent_dim),
        embedding_dim=int(config.embedding_dim),
        feature_hidden=tuple(int(h) for h in config.feature_hidden),
        label_hidden=tuple(int(h) for h in config.label_hidden),
        decoder_hidden=tuple(int(h) for h in config.decoder_hidden),
        dropout_rate=float(config.dropout_rate),
        param_init=config.init,
        prior=config.prior,
        log_var_limit=float(config.log_var_limit),
        dtype=dtype,
    )
