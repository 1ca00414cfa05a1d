"""Flax Linen modules of C-GMVAE: encoders, decoder and the full model.

Also the MLP baseline of the loss comparison (`MLPClassifier`, with an optional `KMCLHead`).
The model returns a dict of named outputs and never a loss; `cgmvae_jax.objective` turns the
outputs into the training objective. Shapes: B batch, F features, L labels, E label-embedding
size, d latent size.

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

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

Initializer = Callable[..., jax.Array]

INITS = ("torch", "flax")
PRIORS = ("mixture", "unimodal")


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
    if init == "torch":
        bound = 1.0 / float(fan_in) ** 0.5

        def bias_init(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), bias_init
    if init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros_init()
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def soft_clamp(values: jax.Array, limit: float) -> jax.Array:
    """`limit * tanh(values / limit)`: smooth, identity near 0, bounded by `limit` (0 = off)."""
    if not limit:
        return values
    return limit * jnp.tanh(values / limit)


def l2_normalize(values: jax.Array) -> jax.Array:
    """Rows divided by max(||v||, 1e-12), with a finite gradient at v = 0. Returns float32.

    The gradient is written out (`_l2_normalize_bwd`); it equals the automatic one of
    `values / sqrt(max(||v||^2, 1e-24))` (tests/speed_rewrites_test.py).
    """
    return _l2_normalize(values.astype(jnp.float32))


@jax.custom_vjp
def _l2_normalize(values: jax.Array) -> jax.Array:
    squared_norm = jnp.sum(jnp.square(values), axis=-1, keepdims=True)  # [..., 1]
    # sqrt(max(n^2, 1e-24)) = max(n, 1e-12); the max keeps sqrt away from 0, so no inf gradient.
    return values / jnp.sqrt(jnp.maximum(squared_norm, 1e-24))


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def repeat_leading(values: jax.Array, count: int) -> jax.Array:
    """`values` repeated along a new leading axis: [...] -> [count, ...] (a broadcast).

    Its gradient adds the `count` cotangent slices with `count - 1` element-wise additions: the
    automatic gradient of a broadcast is a reduction over the new short leading axis, which
    XLA:CPU (jaxlib 0.10) runs tens of times slower than the additions. Used where one tensor
    is shared by the decoder's samples (the x-projection, the posterior mean and scale).
    """
    return jnp.broadcast_to(values, (count, *values.shape))


def _repeat_leading_fwd(values, count):
    return repeat_leading(values, count), None


def _repeat_leading_bwd(count, residuals, cotangent):
    del residuals
    total = cotangent[0]
    for i in range(1, count):
        total = total + cotangent[i]
    return (total,)


repeat_leading.defvjp(_repeat_leading_fwd, _repeat_leading_bwd)


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
        return x @ kernel + bias  # [..., features]


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
        x_part = x @ kernel[:num_features] + bias  # [B, H], shared by all samples
        if z.ndim > x.ndim:
            x_part = repeat_leading(x_part, z.shape[0])  # [S, B, H]
        h = x_part + z @ kernel[num_features:]  # [(S,) B, H]
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
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        if self.param_init not in INITS:
            raise ValueError(f"param_init must be one of {INITS}, got {self.param_init!r}")
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
        return jnp.matmul(emb, w.T, preferred_element_type=jnp.float32)

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
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if config.dtype not in dtypes:
        raise ValueError(f"config.dtype must be one of {tuple(dtypes)}, got {config.dtype!r}")
    if config.model == "cgmvae":
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
            dtype=dtypes[config.dtype],
        )
    if config.model == "mlp":
        # MLPClassifier (defined below): feature_hidden, dropout_rate, init, dtype; the KMCL
        # head when config.loss includes "kmcl" (kmcl_isotropic, kmcl_min_variance).
        return MLPClassifier(
            num_labels=int(num_labels),
            hidden=tuple(int(h) for h in config.feature_hidden),
            dropout_rate=float(config.dropout_rate),
            param_init=config.init,
            kmcl="kmcl" in str(config.loss),
            kmcl_isotropic=bool(config.kmcl_isotropic),
            kmcl_min_variance=float(config.kmcl_min_variance),
            dtype=dtypes[config.dtype],
        )
    raise ValueError(f"config.model must be 'cgmvae' or 'mlp', got {config.model!r}")


# ------------------------------------------------------------------------------------------------
# MLP baseline with an optional KMCL head (the comparison models of the loss library).


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

        model = models.MLPClassifier(num_labels=L, kmcl=True)
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
        if self.param_init not in INITS:
            raise ValueError(f"param_init must be one of {INITS}, got {self.param_init!r}")
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
