"""The C-GMVAE training objective: model outputs + labels -> scalar loss and its terms.

    total = bce_weight * (bce_label + bce_feat + bce_feat2) + kl_weight * kl
            + contrastive_weight * contrastive

Each term is a per-example value from `optax` or `cgmvae_jax.losses`, reduced here with a masked
mean. Two masks:

* `weights` [B]: per-example validity weight (0 for the padding rows of a last, padded batch), so
  a padded batch gives the same loss as the unpadded one;
* rows with at least one positive label. A row with no positive label keeps its feature-branch
  BCE terms but has no label-branch latent, no mixture prior and no contrastive positive, so it
  is left out of `bce_label`, `kl` and `contrastive`. Those terms are averaged over the rows
  where they are defined (valid and with a positive label) and are 0 when no row qualifies. The
  official code produces NaN for such rows instead. The same rule applies to the unimodal
  prior, so that both priors optimise the terms over the same rows.

The ablations of the paper (Table 4) are the switches `prior="unimodal"`, `kl_weight=0` and
`contrastive_weight=0`; every term is still computed and returned for logging.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from cgmvae_jax import losses

PRIORS = ("mixture", "unimodal")
KL_DIRECTIONS = ("label_to_feature", "feature_to_label")
TERMS = ("loss", "bce_label", "bce_feat", "bce_feat2", "kl", "contrastive")

LossFn = Callable[
    [Mapping[str, jax.Array], jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]
]


def masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """sum(weights * values) / sum(weights) over entries with weight > 0; 0 if there are none.

    Entries with weight 0 are selected away (not multiplied), so a non-finite value there
    cannot leak into the result.
    """
    weights = jnp.broadcast_to(weights, values.shape)
    active = weights > 0
    total_weight = jnp.sum(jnp.where(active, weights, 0.0))
    total = jnp.sum(jnp.where(active, weights * values, 0.0))
    return jnp.where(total_weight > 0, total / jnp.where(total_weight > 0, total_weight, 1.0), 0.0)


def _bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy summed over labels: [B, L] -> [B]."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels), axis=-1)


def cgmvae_loss(
    outputs: Mapping[str, jax.Array],
    labels: jax.Array,
    weights: jax.Array,
    *,
    bce_weight: float,
    kl_weight: float,
    contrastive_weight: float,
    temperature: float = 1.0,
    prior: str = "mixture",
    kl_direction: str = "label_to_feature",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The C-GMVAE objective and its terms.

    Args:
      outputs: `models.CGMVAE.__call__` outputs (float32): label_logits, feat_logits,
        feat_logits2 [B, L]; label_emb, feat_emb [B, E]; label_embeddings [L, E]; mean_x,
        log_var_x, z_kl [B, d]; label_means, label_log_vars ([L, d] mixture, [B, d] unimodal).
      labels: Multi-hot labels [B, L], bool or 0/1 of any dtype.
      weights: Per-example validity weights [B] (0 for padding rows).
      bce_weight: Weight of the three BCE terms (paper beta).
      kl_weight: Weight of the KL term (6.0 in the official code).
      contrastive_weight: Weight of the contrastive term (paper alpha).
      temperature: Contrastive softmax temperature.
      prior: "mixture": single-sample estimate log q(z_kl|x) - log p(z_kl|y) with p the uniform
        mixture of the active labels' Gaussians (`losses.mixture_kl_single_sample`).
        "unimodal": analytic KL between the label Gaussian and the feature Gaussian
        (`losses.gaussian_kl`, exact, without the 1e-6 the MPVAE code adds to one variance).
      kl_direction: Unimodal prior only. "label_to_feature": KL(N_label || N_feature) as in
        MPVAE; "feature_to_label": KL(N_feature || N_label), the direction of the mixture KL.

    Returns:
      (loss, terms): the scalar total and a dict of scalars with keys "loss", "bce_label",
      "bce_feat", "bce_feat2", "kl", "contrastive" (unweighted terms; "loss" is the total).
      BCE terms are summed over labels; bce_feat and bce_feat2 are averaged over valid rows,
      bce_label, kl and contrastive over valid rows with at least one positive label.

    Raises:
      ValueError: For an unknown `prior` or `kl_direction`, or shapes that do not fit.
    """
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    if kl_direction not in KL_DIRECTIONS:
        raise ValueError(f"kl_direction must be one of {KL_DIRECTIONS}, got {kl_direction!r}")
    labels, weights = jnp.asarray(labels), jnp.asarray(weights)
    feat_logits = outputs["feat_logits"]  # [B, L]
    if labels.shape != feat_logits.shape:
        raise ValueError(
            f"labels shape {labels.shape} does not match the logits shape {feat_logits.shape}"
        )
    if weights.shape != labels.shape[:1]:
        raise ValueError(f"weights must have shape {labels.shape[:1]}, got {weights.shape}")

    positive = labels > 0  # [B, L]
    targets = positive.astype(jnp.float32)  # [B, L]
    valid = weights.astype(jnp.float32)  # [B]
    # Rows where the label-dependent terms are defined: valid and with a positive label.
    defined = jnp.where(jnp.any(positive, axis=-1), valid, 0.0)  # [B]

    # Double-where: rows a term does not use are replaced by zeros before the term is computed,
    # so whatever they hold (padding garbage, extreme values) gives no inf/NaN value or gradient.
    def rows(x, mask):  # [..., B, k] with mask [B] -> masked rows set to 0
        return jnp.where(mask[:, None] > 0, x, 0.0)

    terms = {
        "bce_label": masked_mean(_bce(rows(outputs["label_logits"], defined), targets), defined),
        "bce_feat": masked_mean(_bce(rows(feat_logits, valid), targets), valid),
        "bce_feat2": masked_mean(_bce(rows(outputs["feat_logits2"], valid), targets), valid),
    }

    mean_x = rows(outputs["mean_x"], defined)  # [B, d]
    log_var_x = rows(outputs["log_var_x"], defined)  # [B, d]
    label_means, label_log_vars = outputs["label_means"], outputs["label_log_vars"]
    if prior == "mixture":
        # [B]; 0 with zero gradients for rows without a positive label.
        kl = losses.mixture_kl_single_sample(
            rows(outputs["z_kl"], defined), mean_x, log_var_x, label_means, label_log_vars, positive
        )
    else:
        if label_means.shape != mean_x.shape:
            raise ValueError(
                "prior='unimodal' needs per-example label Gaussians of shape "
                f"{mean_x.shape}, got {label_means.shape} (was the model built with "
                "prior='mixture'?)"
            )
        label_means, label_log_vars = rows(label_means, defined), rows(label_log_vars, defined)
        if kl_direction == "label_to_feature":
            kl = losses.gaussian_kl(label_means, label_log_vars, mean_x, log_var_x)  # [B]
        else:
            kl = losses.gaussian_kl(mean_x, log_var_x, label_means, label_log_vars)  # [B]
    terms["kl"] = masked_mean(kl, defined)

    # Anchors [2, B, E]: the label- and feature-branch embeddings, each with its row's labels;
    # the mean over the 2B anchors equals the mean of the two halves (same rows defined).
    anchors = rows(jnp.stack([outputs["label_emb"], outputs["feat_emb"]]), defined)
    contrastive = losses.label_contrastive_loss(
        anchors, outputs["label_embeddings"], positive, temperature=temperature
    )  # [2, B]
    terms["contrastive"] = masked_mean(contrastive, defined)

    loss = (
        bce_weight * (terms["bce_label"] + terms["bce_feat"] + terms["bce_feat2"])
        + kl_weight * terms["kl"]
        + contrastive_weight * terms["contrastive"]
    )
    return loss, {"loss": loss, **terms}


def make_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
    """The objective of `config.model` as `loss_fn(outputs, labels, weights, *, epoch)`.

    `loss_fn` returns `(loss, terms)`; `epoch` is the current epoch as a traced int32 scalar, for
    objectives that change during training (CLML's label correction starts at an epoch).

    For "cgmvae" it is `cgmvae_loss` with bce_weight, kl_weight, contrastive_weight,
    temperature, prior and kl_direction taken from `config`.
    """
    if config.model == "mlp":
        raise NotImplementedError(
            "The objective of config.model='mlp' (config.loss = bce | asl | asl+kmcl | ...) is "
            "not implemented yet; use config.model='cgmvae'"
        )
    if config.model != "cgmvae":
        raise ValueError(f"config.model must be 'cgmvae' or 'mlp', got {config.model!r}")
    if config.prior not in PRIORS:
        raise ValueError(f"config.prior must be one of {PRIORS}, got {config.prior!r}")
    if config.kl_direction not in KL_DIRECTIONS:
        raise ValueError(
            f"config.kl_direction must be one of {KL_DIRECTIONS}, got {config.kl_direction!r}"
        )
    settings = dict(
        bce_weight=float(config.bce_weight),
        kl_weight=float(config.kl_weight),
        contrastive_weight=float(config.contrastive_weight),
        temperature=float(config.temperature),
        prior=str(config.prior),
        kl_direction=str(config.kl_direction),
    )

    def loss_fn(outputs, labels, weights, *, epoch=None):
        del epoch  # the C-GMVAE objective does not change over epochs
        return cgmvae_loss(outputs, labels, weights, **settings)

    return loss_fn
