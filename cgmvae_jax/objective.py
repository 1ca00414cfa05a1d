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

`mlp_loss` is the objective of the MLP baselines (`config.model="mlp"`), selected by
`config.loss`: BCE or ASL, optionally with the KMCL terms or the CLML term (see its docstring).
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from cgmvae_jax import config_lib, losses

PRIORS = config_lib.CHOICES["prior"]
KL_DIRECTIONS = config_lib.CHOICES["kl_direction"]
MLP_LOSSES = config_lib.CHOICES["loss"]
TERMS = ("loss", "bce_label", "bce_feat", "bce_feat2", "kl", "contrastive")
MLP_TERMS = ("loss", "bce", "asl", "kmcl_rec", "kmcl_con", "clml")

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


def _check_batch(labels, weights, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Labels [B, L] and weights [B] as arrays; ValueError unless they fit the logits [B, L]."""
    labels, weights = jnp.asarray(labels), jnp.asarray(weights)
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels shape {labels.shape} does not match the logits shape {logits.shape}"
        )
    if weights.shape != labels.shape[:1]:
        raise ValueError(f"weights must have shape {labels.shape[:1]}, got {weights.shape}")
    return labels, weights


def _bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy summed over labels: [B, L] -> [B]."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels), axis=-1)


# Over 80 lines with its docstring, which documents every term, mask and reduction.
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
    config_lib.check_choice("prior", prior)
    config_lib.check_choice("kl_direction", kl_direction)
    feat_logits = outputs["feat_logits"]  # [B, L]
    labels, weights = _check_batch(labels, weights, feat_logits)

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


def _select_rows(x: jax.Array, rows: jax.Array, fill: float = 0.0) -> jax.Array:
    """`x` [B, ...] with the rows where `rows` [B] is False replaced by `fill`."""
    return jnp.where(rows.reshape(rows.shape + (1,) * (x.ndim - 1)), x, fill)


# Over 80 lines with its docstring, which documents the released codes' reductions.
def mlp_loss(
    outputs: Mapping[str, jax.Array],
    labels: jax.Array,
    weights: jax.Array,
    *,
    loss: str,
    epoch: int | jax.Array | None,
    asl_gamma_pos: float = 0.0,
    asl_gamma_neg: float = 4.0,
    asl_clip: float = 0.05,
    kmcl_weight: float = 1.0,
    kmcl_temperature: float = 0.17,
    kmcl_distance_scale: float | None = None,
    clml_weight: float = 0.01,
    clml_threshold: float = 0.75,
    clml_start_epoch: int = 1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The objective of the MLP baselines, selected by `loss`.

        bce        bce
        asl        asl
        asl+kmcl   asl + kmcl_weight * (kmcl_rec + kmcl_con)
        bce+clml   bce + clml_weight * clml
        asl+clml   asl + clml_weight * clml

    Reductions (the released codes sum ASL/BCE over the batch; here every term is a mean, so
    the loss scale does not depend on the batch size):

    * "bce": binary cross-entropy summed over labels, averaged over valid rows.
    * "asl": `losses.asymmetric_loss` (summed over labels), averaged over valid rows. The
      released ASL, KMCL and CLML trainings sum it over the batch, i.e. B times this value.
    * "kmcl_rec": `losses.kmcl_reconstruction_loss`, averaged over the valid rows with at least
      one positive label (the released code also averages the constant -log(1e-7) of label-less
      rows, which has no gradient).
    * "kmcl_con": `losses.kmcl_contrastive_loss` over the valid rows of the batch (padding rows
      are left out of the denominators too), averaged over the anchors that share a label with
      another valid row (the released code divides by B, counting the others as 0). Since the
      released ASL is a batch sum, its KMCL terms weigh 1/B relative to ASL:
      `kmcl_weight = 1 / batch_size` reproduces that balance.
    * "clml": `losses.clml_loss` (lambda = 1, so `clml_weight` is lambda). CLML is batch-level:
      padding rows get zero features and labels, which changes no singular value, and the
      1/B factor counts the valid rows only, so a padded batch gives the loss of its valid rows.
      With the released base loss summed over the batch, `clml_weight = lambda / batch_size`
      gives the released balance.

    Rows with weight 0 (padding) contribute nothing to any term; weights > 0 weight the
    per-row means (CLML uses only which rows are valid).

    Args:
      outputs: `baselines.MLPClassifier.__call__` outputs: "feat_logits" [B, L], "features"
        [B, D], and for KMCL "kmcl_means", "kmcl_variances" ([B, L] or [B, L, D]).
      labels: Multi-hot labels [B, L], bool or 0/1 of any dtype.
      weights: Per-example validity weights [B] (0 for padding rows).
      loss: One of `MLP_LOSSES`.
      epoch: Current epoch, 0-based, may be traced (CLML's label correction starts at
        `clml_start_epoch`); may be None for losses without CLML.
      asl_gamma_pos, asl_gamma_neg, asl_clip: `losses.asymmetric_loss` settings (focusing
        weights without gradient, eps 1e-8, as in the released training).
      kmcl_weight: Weight of kmcl_rec + kmcl_con.
      kmcl_temperature: Temperature of the KMCL contrastive term.
      kmcl_distance_scale: The factor M of the Bhattacharyya distance; None for the exact
        distance (M = D for isotropic Gaussians [B, L], 1 for anisotropic [B, L, D]). The
        released code uses D in both modes.
      clml_weight: Weight of the CLML term (default: about the released balance; a weight of
        1 shrinks the features to 0, since the term is positively homogeneous in them).
      clml_threshold: CLML label-correction probability threshold.
      clml_start_epoch: First epoch with label correction.

    Returns:
      (loss, terms): the scalar total and a dict of unweighted scalar terms: "loss" and, by
      `loss`, "bce" or "asl", "kmcl_rec" and "kmcl_con", "clml".

    Raises:
      ValueError: For an unknown `loss`, shapes that do not fit, or a CLML loss without epoch.
      KeyError: If a KMCL loss gets outputs without the KMCL head.
    """
    config_lib.check_choice("loss", loss)
    base, _, extra = loss.partition("+")
    logits = outputs["feat_logits"]  # [B, L]
    labels, weights = _check_batch(labels, weights, logits)
    if extra == "clml" and epoch is None:
        raise ValueError(f"loss={loss!r} needs the current epoch (label correction).")
    if extra == "kmcl" and "kmcl_means" not in outputs:
        raise KeyError(
            f"loss={loss!r} needs the outputs 'kmcl_means' and 'kmcl_variances' (build the model "
            "with MLPClassifier(kmcl=True), as make_model does for a loss with 'kmcl')."
        )

    positive = labels > 0  # [B, L]
    targets = positive.astype(jnp.float32)  # [B, L]
    valid = weights.astype(jnp.float32)  # [B]
    is_valid = valid > 0  # [B]
    # Double-where: padding rows are replaced by benign values before any term is computed, so
    # whatever they hold gives no inf/NaN value or gradient; the masked means then drop them.
    safe_logits = _select_rows(logits, is_valid)  # [B, L]

    terms = {}
    if base == "bce":
        terms["bce"] = masked_mean(_bce(safe_logits, targets), valid)
    else:
        asl = losses.asymmetric_loss(
            safe_logits, targets, gamma_pos=asl_gamma_pos, gamma_neg=asl_gamma_neg, clip=asl_clip
        )  # [B]
        terms["asl"] = masked_mean(asl, valid)
    total = terms[base]

    if extra == "kmcl":
        rec, con = _kmcl_terms(
            outputs,
            safe_logits,
            targets,
            valid,
            temperature=kmcl_temperature,
            distance_scale=kmcl_distance_scale,
        )
        terms["kmcl_rec"], terms["kmcl_con"] = rec, con
        total = total + kmcl_weight * (rec + con)
    elif extra == "clml":
        terms["clml"] = _clml_term(
            outputs["features"],
            safe_logits,
            targets,
            valid,
            threshold=clml_threshold,
            epoch=epoch,
            start_epoch=clml_start_epoch,
        )
        total = total + clml_weight * terms["clml"]
    return total, {"loss": total, **terms}


def _kmcl_terms(outputs, safe_logits, targets, valid, *, temperature, distance_scale):
    """The KMCL reconstruction and contrastive terms of `mlp_loss`, each a scalar mean."""
    is_valid = valid > 0  # [B]
    features = _select_rows(outputs["features"], is_valid)  # [B, D]
    means = _select_rows(outputs["kmcl_means"], is_valid)  # [B, L(, D)]
    variances = _select_rows(outputs["kmcl_variances"], is_valid, 1.0)  # [B, L(, D)]
    if distance_scale is None:  # exact Bhattacharyya distance
        distance_scale = 1.0 if means.ndim == 3 else float(features.shape[-1])
    defined = jnp.where(jnp.any(targets > 0, axis=-1), valid, 0.0)  # [B]
    rec = losses.kmcl_reconstruction_loss(features, safe_logits, means, variances, targets)
    con = losses.kmcl_contrastive_loss(
        means,
        variances,
        targets,
        temperature=temperature,
        distance_scale=distance_scale,
        mask=is_valid,
    )  # [B]
    # Anchors with a positive: another valid row sharing a label.
    shares = jnp.matmul(targets, targets.T, precision=jax.lax.Precision.HIGHEST) > 0
    shares = shares & ~jnp.eye(shares.shape[0], dtype=bool) & is_valid[None, :]
    anchors = jnp.where(jnp.any(shares, axis=-1), valid, 0.0)  # [B]
    return masked_mean(rec, defined), masked_mean(con, anchors)


def _clml_term(features, safe_logits, targets, valid, *, threshold, epoch, start_epoch):
    """The CLML term of `mlp_loss` over the valid rows of a (padded) batch."""
    is_valid = valid > 0  # [B]
    features = _select_rows(features, is_valid)  # [B, D]: zero rows are inert
    num_valid = jnp.sum(is_valid)
    value = losses.clml_loss(
        features,
        safe_logits,
        _select_rows(targets, is_valid),
        threshold=threshold,
        epoch=epoch,
        start_epoch=start_epoch,
    )  # lam / B * [...] with B counting padding rows: rescale to the valid rows
    scale = features.shape[0] / jnp.maximum(num_valid, 1).astype(jnp.float32)
    return jnp.where(num_valid > 0, value * scale, 0.0)


def make_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
    """The objective of `config.model` as `loss_fn(outputs, labels, weights, *, epoch)`.

    `loss_fn` returns `(loss, terms)`; `epoch` is the current epoch as a traced int32 scalar, for
    objectives that change during training (CLML's label correction starts at an epoch).

    For "cgmvae" it is `cgmvae_loss` with bce_weight, kl_weight, contrastive_weight,
    temperature, prior and kl_direction taken from `config`.
    For "mlp" it is `mlp_loss` with loss, asl_gamma_pos, asl_gamma_neg, asl_clip, kmcl_weight,
    kmcl_temperature, kmcl_distance_scale (0 = exact distance), clml_weight, clml_threshold and
    clml_start_epoch taken from `config`.
    """
    for field in ("model", "loss", "prior", "kl_direction"):
        config_lib.check_choice(field, config[field], f"config.{field}")
    if config.model == "mlp":
        distance_scale = float(config.kmcl_distance_scale)
        mlp_settings = dict(
            loss=str(config.loss),
            asl_gamma_pos=float(config.asl_gamma_pos),
            asl_gamma_neg=float(config.asl_gamma_neg),
            asl_clip=float(config.asl_clip),
            kmcl_weight=float(config.kmcl_weight),
            kmcl_temperature=float(config.kmcl_temperature),
            kmcl_distance_scale=distance_scale if distance_scale > 0 else None,
            clml_weight=float(config.clml_weight),
            clml_threshold=float(config.clml_threshold),
            clml_start_epoch=int(config.clml_start_epoch),
        )

        def mlp_loss_fn(outputs, labels, weights, *, epoch=None):
            return mlp_loss(outputs, labels, weights, epoch=epoch, **mlp_settings)

        return mlp_loss_fn
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
