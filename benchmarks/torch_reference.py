"""PyTorch reference of the C-GMVAE model, objective and optimizer, for benchmarks only.

Written from spec/OFFICIAL_BEHAVIOUR.md §1 (layers §1.2, forward pass §1.3, loss §1.4, Adam with
coupled L2 weight decay §1.5). It is the yardstick that `benchmarks/step_throughput.py` times the
JAX step against, so it does the same work per step as the official PyTorch code: the same
layers, three decoder calls, a third sample for the KL estimate, one label-encoder pass per step.

Deviations from the official computation, each exact in value for valid inputs:

- BCE is `F.binary_cross_entropy_with_logits` (log-sigmoid form) instead of `log(sigmoid(.))`;
  this is the one numerical-stability deviation (the official form gives NaN once a logit
  passes about 16.6 in float32).
- The mixture log-density takes the log-sum-exp over the active labels only (`-inf` for the
  inactive ones) instead of a `-1e6` penalty.
- Rows with no positive label are masked out of the label-branch BCE, the KL term and the
  contrastive term (averaged over the rows where they are defined), as in DESIGN.md §3.6; the
  official code gives NaN for such rows.
- The label encoder's input `I_L @ W^T + b` is computed as `W^T + b` and the contrastive logits
  reuse the label- and feature-branch logits (same values, no identity matmul, no recomputation).

Requires torch, which the `bench` extra installs:

    pip install torch==2.13.0   # a CPU build
    pip install -e ".[bench]"

Example:

    model, optimizer = torch_reference.build(128, 81, embedding_dim=1024)
    x, y = torch_reference.synthetic_batch(256, 128, 81)
    loss = torch_reference.train_step(model, optimizer, x, y)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------------
# Loss helpers (pure functions of tensors).


def log_normal_diag(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Diagonal-Gaussian log-density without the `-d/2 log(2 pi)` constant (spec §1.4 b).

    Args:
        z: Points, shape `[..., d]`.
        mean: Means, broadcastable to `z`.
        log_var: Log-variances, broadcastable to `z`.

    Returns:
        `sum_d -0.5 * (log_var + (z - mean)^2 / exp(log_var))`, shape `[...]`.
    """
    return -0.5 * torch.sum(log_var + (z - mean).square() * torch.exp(-log_var), dim=-1)


def mixture_log_density_matmul(
    z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor
) -> torch.Tensor:
    """`log_normal_diag(z[:, None], mean, log_var)` via matrix products: O(B*L) memory.

    Expands `sum_d (z_d - m_d)^2 / v_d = z^2 . (1/v) - 2 z . (m/v) + sum_d m_d^2 / v_d`.

    Args:
        z: Samples, shape `[B, d]`.
        mean: Component means, shape `[L, d]`.
        log_var: Component log-variances, shape `[L, d]`.

    Returns:
        Component log-densities, shape `[B, L]`.
    """
    precision = torch.exp(-log_var)  # [L, d]
    quad = z.square() @ precision.T - 2.0 * (z @ (mean * precision).T)  # [B, L]
    const = torch.sum(log_var + mean.square() * precision, dim=-1)  # [L]
    return -0.5 * (quad + const)


def mixture_kl_single_sample(
    z: torch.Tensor,
    mean_x: torch.Tensor,
    log_var_x: torch.Tensor,
    mean_e: torch.Tensor,
    log_var_e: torch.Tensor,
    labels: torch.Tensor,
    *,
    matmul: bool = False,
) -> torch.Tensor:
    """Single-sample KL estimate `log q(z|x) - log p(z|y)` with a mixture prior (spec §1.4 b).

    `p(z|y)` is the equal-weight mixture of the active labels' Gaussians.

    Args:
        z: One sample from `q(z|x)`, shape `[B, d]`.
        mean_x: Posterior means, shape `[B, d]`.
        log_var_x: Posterior log-variances, shape `[B, d]`.
        mean_e: Per-label means, shape `[L, d]`.
        log_var_e: Per-label log-variances, shape `[L, d]`.
        labels: Multi-hot labels, shape `[B, L]`.
        matmul: Compute the `[B, L]` component densities with matrix products instead of a
            `[B, L, d]` broadcast (same value, less memory).

    Returns:
        Per-example estimates, shape `[B]`; 0 (with zero gradient) for rows with no active label.
    """
    log_q = log_normal_diag(z, mean_x, log_var_x)  # [B]
    if matmul:
        comp = mixture_log_density_matmul(z, mean_e, log_var_e)  # [B, L]
    else:
        comp = log_normal_diag(z[:, None, :], mean_e[None], log_var_e[None])  # [B, L]
    active = labels > 0  # [B, L]
    num_active = active.sum(dim=-1)  # [B]
    valid = num_active > 0  # [B]
    # Double-where: rows without an active label take the log-sum-exp over all labels, so the
    # value and its gradient stay finite; the row is then zeroed.
    active = active | ~valid[:, None]
    comp = comp.masked_fill(~active, float("-inf"))
    log_p = torch.logsumexp(comp, dim=-1) - torch.log(num_active.clamp_min(1).to(z.dtype))  # [B]
    return torch.where(valid, log_q - log_p, torch.zeros_like(log_q))


def label_contrastive(
    scores: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """Label-anchored contrastive loss per anchor (spec §1.4 c).

    `-(1/|Y|) sum_{l in Y} log_softmax(scores / temperature)_l`: softmax cross-entropy over labels
    with target distribution `y / |y|`.

    Args:
        scores: Anchor-key inner products `anchor @ W`, shape `[N, L]`.
        labels: Multi-hot labels of the anchors, shape `[N, L]`.
        temperature: Softmax temperature.

    Returns:
        Per-anchor losses, shape `[N]`; 0 for anchors with no positive label.
    """
    log_probs = F.log_softmax(scores / temperature, dim=-1)  # [N, L]
    num_pos = labels.sum(dim=-1)  # [N]
    return -(labels * log_probs).sum(dim=-1) / num_pos.clamp_min(1.0)


def bce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over labels, per example (stable log-sigmoid form).

    Args:
        logits: Shape `[B, L]`.
        labels: Multi-hot labels, shape `[B, L]`.

    Returns:
        Shape `[B]`.
    """
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(dim=-1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over entries where `mask` is true (0 when none are)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


# ------------------------------------------------------------------------------------------------
# Model.


# `CGMVAE`'s keyword arguments: the fields of the same name of `cgmvae_jax.models.CGMVAE`.
MODEL_FIELDS = (
    "embedding_dim",
    "latent_dim",
    "feature_hidden",
    "label_hidden",
    "decoder_hidden",
    "dropout_rate",
    "log_var_limit",
)


def _mlp(sizes: Sequence[int]) -> nn.ModuleList:
    """Linear layers `sizes[0] -> sizes[1] -> ...` with torch's default init."""
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


class CGMVAE(nn.Module):
    """C-GMVAE network (spec §1.2): feature encoder, label encoder, shared decoder.

    Attributes:
        label_lookup: `Linear(L, E)`; its weight `W` `[E, L]` holds one embedding per column and
            is also the prediction matrix and the contrastive keys.
    """

    def __init__(
        self,
        num_features: int,
        num_labels: int,
        *,
        embedding_dim: int,
        latent_dim: int = 64,
        feature_hidden: Sequence[int] = (256, 512, 256),
        label_hidden: Sequence[int] = (512, 256),
        decoder_hidden: Sequence[int] = (512,),
        dropout_rate: float = 0.5,
        log_var_limit: float | None = None,
    ):
        """Builds the layers.

        Args:
            num_features: F.
            num_labels: L.
            embedding_dim: E.
            latent_dim: d.
            feature_hidden: Hidden sizes of the feature encoder.
            label_hidden: Hidden sizes of the label encoder after the label lookup.
            decoder_hidden: Hidden sizes of the decoder.
            dropout_rate: Drop probability of the (single, shared) dropout module.
            log_var_limit: If set, log-variance heads are soft-clamped to
                `limit * tanh(v / limit)` (config `log_var_limit`); None is the official model.
        """
        super().__init__()
        self.log_var_limit = log_var_limit
        self.dropout = nn.Dropout(dropout_rate)
        self.feature_layers = _mlp([num_features, *feature_hidden])
        self.feature_mean = nn.Linear(feature_hidden[-1], latent_dim)
        self.feature_log_var = nn.Linear(feature_hidden[-1], latent_dim)
        self.label_lookup = nn.Linear(num_labels, embedding_dim)
        self.label_layers = _mlp([embedding_dim, *label_hidden])
        self.label_mean = nn.Linear(label_hidden[-1], latent_dim)
        self.label_log_var = nn.Linear(label_hidden[-1], latent_dim)
        self.decoder_layers = _mlp([num_features + latent_dim, *decoder_hidden, embedding_dim])

    def _limit(self, log_var: torch.Tensor) -> torch.Tensor:
        if self.log_var_limit is None:
            return log_var
        return self.log_var_limit * torch.tanh(log_var / self.log_var_limit)

    def encode_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`x` `[B, F]` -> posterior mean, log-variance `[B, d]` each."""
        h = x
        for layer in self.feature_layers:
            h = self.dropout(F.relu(layer(h)))
        return self.feature_mean(h), self._limit(self.feature_log_var(h))

    def encode_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-label Gaussians: mean, log-variance `[L, d]` each."""
        # Row l of I_L @ W^T + b is W[:, l] + b.
        h = self.dropout(F.relu(self.label_lookup.weight.T + self.label_lookup.bias))  # [L, E]
        for layer in self.label_layers:
            h = self.dropout(F.relu(layer(h)))
        return self.label_mean(h), self._limit(self.label_log_var(h))

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """`concat(x, z)` -> unit-norm embedding `[B, E]` (no dropout in the decoder)."""
        h = torch.cat([x, z], dim=-1)
        *hidden, last = self.decoder_layers
        for layer in hidden:
            h = F.relu(layer(h))
        h = F.leaky_relu(last(h), negative_slope=0.01)
        return F.normalize(h, dim=-1, eps=1e-12)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward pass (spec §1.3); samples in training mode, `z = mean` in eval mode.

        Args:
            x: Features, shape `[B, F]`.
            y: Multi-hot labels (float), shape `[B, L]`.

        Returns:
            Dict with `label_logits`, `feat_logits`, `feat_logits2` `[B, L]`; `label_emb`,
            `feat_emb`, `feat_emb2` `[B, E]`; `mean_x`, `log_var_x` `[B, d]`; `mean_e`,
            `log_var_e` `[L, d]`.
        """
        mean_e, log_var_e = self.encode_labels()  # [L, d]
        z_y = (y @ mean_e) / y.sum(dim=-1, keepdim=True).clamp_min(1.0)  # [B, d]
        label_emb = self.decode(x, z_y)  # [B, E]

        mean_x, log_var_x = self.encode_features(x)  # [B, d]
        if self.training:
            std = torch.exp(0.5 * log_var_x)
            z1 = mean_x + std * torch.randn_like(std)
            z2 = mean_x + std * torch.randn_like(std)
        else:
            z1 = z2 = mean_x
        feat_emb = self.decode(x, z1)
        feat_emb2 = self.decode(x, z2)

        w = self.label_lookup.weight  # [E, L]
        return {
            "label_logits": label_emb @ w,
            "feat_logits": feat_emb @ w,
            "feat_logits2": feat_emb2 @ w,
            "label_emb": label_emb,
            "feat_emb": feat_emb,
            "feat_emb2": feat_emb2,
            "mean_x": mean_x,
            "log_var_x": log_var_x,
            "mean_e": mean_e,
            "log_var_e": log_var_e,
        }


def loss_terms(
    outputs: dict[str, torch.Tensor],
    y: torch.Tensor,
    *,
    temperature: float = 1.0,
    kl_matmul: bool = False,
) -> dict[str, torch.Tensor]:
    """Scalar loss terms (spec §1.4): `nll_label`, `nll_feat`, `nll_feat2`, `kl`, `contrastive`.

    Args:
        outputs: `CGMVAE.forward` outputs.
        y: Multi-hot labels, shape `[B, L]`.
        temperature: Contrastive temperature.
        kl_matmul: Passed to `mixture_kl_single_sample`.

    Returns:
        Dict of scalar tensors.
    """
    valid = y.sum(dim=-1) > 0  # [B]
    mean_x, log_var_x = outputs["mean_x"], outputs["log_var_x"]
    # The KL estimate uses a third sample, independent of the two decoded ones.
    z_kl = mean_x + torch.exp(0.5 * log_var_x) * torch.randn_like(mean_x)  # [B, d]
    kl = mixture_kl_single_sample(
        z_kl, mean_x, log_var_x, outputs["mean_e"], outputs["log_var_e"], y, matmul=kl_matmul
    )  # [B]
    # Anchors concat(label_emb, feat_emb) against the columns of W: the scores are the logits.
    scores = torch.cat([outputs["label_logits"], outputs["feat_logits"]], dim=0)  # [2B, L]
    con = label_contrastive(scores, torch.cat([y, y], dim=0), temperature=temperature)  # [2B]
    return {
        "nll_label": _masked_mean(bce_sum(outputs["label_logits"], y), valid),
        "nll_feat": bce_sum(outputs["feat_logits"], y).mean(),
        "nll_feat2": bce_sum(outputs["feat_logits2"], y).mean(),
        "kl": _masked_mean(kl, valid),
        "contrastive": _masked_mean(con, torch.cat([valid, valid])),
    }


def total_loss(
    terms: dict[str, torch.Tensor],
    *,
    bce_weight: float = 0.5,
    kl_weight: float = 6.0,
    contrastive_weight: float = 1.0,
) -> torch.Tensor:
    """`bce_weight * (three BCE terms) + kl_weight * kl + contrastive_weight * contrastive`."""
    nll = terms["nll_label"] + terms["nll_feat"] + terms["nll_feat2"]
    return bce_weight * nll + kl_weight * terms["kl"] + contrastive_weight * terms["contrastive"]


# ------------------------------------------------------------------------------------------------
# Training.


def build(
    num_features: int,
    num_labels: int,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    seed: int = 0,
    num_threads: int | None = None,
    **model_kwargs,
) -> tuple[CGMVAE, torch.optim.Adam]:
    """Builds the model (training mode) and its Adam optimizer.

    Args:
        num_features: F.
        num_labels: L.
        lr: Adam learning rate (constant; the benchmark does not need the schedule).
        weight_decay: Coupled L2 decay, `torch.optim.Adam(weight_decay=...)` (spec §1.5).
        seed: `torch.manual_seed` for the initialisation (the global torch RNG).
        num_threads: `torch.set_num_threads` (process-wide); None = the cores this process may
            use.
        **model_kwargs: `CGMVAE`'s keyword arguments (`embedding_dim` is required; the names
            are `MODEL_FIELDS`).

    Returns:
        `(model, optimizer)`.
    """
    torch.set_num_threads(num_threads or available_cores())
    torch.manual_seed(seed)
    model = CGMVAE(num_features, num_labels, **model_kwargs)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return model, optimizer


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _loss(model: CGMVAE, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return total_loss(loss_terms(model(x, y), y))


def train_step(
    model: CGMVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:
    """One eager optimizer update with the default objective weights; returns the loss (float).

    Args:
        model: From `build`.
        optimizer: From `build`.
        x: Features, shape `[B, F]`.
        y: Multi-hot labels (float), shape `[B, L]`.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = _loss(model, x, y)
    loss.backward()
    optimizer.step()
    return loss.item()


@dataclasses.dataclass
class CompiledStep:
    """A train step `step(x, y) -> float` and how it was built.

    Attributes:
        step: The step function (compiled, or the eager `train_step` after a fallback).
        compiled: Whether `step` runs torch.compile'd code.
        reason: Why compilation was not used (empty when `compiled`).
        compile_seconds: Wall time of the first (compiling) call; it performed one real update.
    """

    step: Callable[[torch.Tensor, torch.Tensor], float]
    compiled: bool
    reason: str
    compile_seconds: float


def compiled_train_step(
    model: CGMVAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    backend: str = "inductor",
    mode: str | None = None,
) -> CompiledStep:
    """Builds a `torch.compile`d train step, or falls back to eager with a reason.

    The loss (forward; backward through AOTAutograd) and `optimizer.step` are compiled
    separately, the usual pattern for training with torch.compile. The function runs the
    compiled step once on `(x, y)` to compile it and check that it works, so `model` and
    `optimizer` have taken one update when it returns. If compiling or that first call raises,
    the model and optimizer are restored to their state before the call and the eager step is
    returned.

    Args:
        model: From `build`.
        optimizer: From `build`.
        x: Example features `[B, F]` (the shapes the step is compiled for).
        y: Example labels `[B, L]`.
        backend: torch.compile backend.
        mode: torch.compile mode (None, "reduce-overhead", "max-autotune", ...).

    Returns:
        A `CompiledStep`.
    """
    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    start = time.perf_counter()
    try:
        loss_fn = torch.compile(_loss, backend=backend, mode=mode)
        optimizer_step = torch.compile(optimizer.step, backend=backend, mode=mode)

        def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
            optimizer.zero_grad(set_to_none=False)
            loss = loss_fn(model, xb, yb)
            loss.backward()
            optimizer_step()
            return loss.item()

        loss = step(x, y)
        if not math.isfinite(loss):
            raise FloatingPointError(f"compiled step returned a non-finite loss {loss}")
    except Exception as e:  # any failure means "use eager"
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
        return CompiledStep(
            step=lambda xb, yb: train_step(model, optimizer, xb, yb),
            compiled=False,
            reason=reason[:500],
            compile_seconds=time.perf_counter() - start,
        )
    return CompiledStep(
        step=step, compiled=True, reason="", compile_seconds=time.perf_counter() - start
    )


# ------------------------------------------------------------------------------------------------
# Benchmark helpers.


def synthetic_batch(
    batch_size: int,
    num_features: int,
    num_labels: int,
    *,
    positives_per_row: int = 3,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random standard-normal features and multi-hot labels with at least one positive per row.

    Args:
        batch_size: B.
        num_features: F.
        num_labels: L.
        positives_per_row: Labels switched on per row (capped at L).
        seed: Seed of a private generator.

    Returns:
        `x` `[B, F]` float32 and `y` `[B, L]` float32 in {0, 1}.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, num_features, generator=gen)
    k = max(1, min(positives_per_row, num_labels))
    idx = torch.rand(batch_size, num_labels, generator=gen).argsort(dim=-1)[:, :k]
    y = torch.zeros(batch_size, num_labels).scatter_(1, idx, 1.0)
    return x, y


def matmul_flops_per_step(
    batch_size: int,
    num_features: int,
    num_labels: int,
    *,
    embedding_dim: int,
    latent_dim: int = 64,
    feature_hidden: Sequence[int] = (256, 512, 256),
    label_hidden: Sequence[int] = (512, 256),
    decoder_hidden: Sequence[int] = (512,),
) -> dict[str, int]:
    """Analytic matmul FLOPs (2 per multiply-add) of one training step of this reference.

    Counts every dense layer and logit product: forward once; backward twice the forward
    (input and weight gradients) except products with an input that needs no gradient (the
    feature encoder's first layer and `y @ mean_e`: one gradient only). Element-wise work
    (activations, the `[B, L, d]` KL broadcast, Adam) is left out; it is a few per cent at the
    benchmark shapes.

    Args:
        batch_size: B.
        num_features: F.
        num_labels: L.
        embedding_dim: E.
        latent_dim: d.
        feature_hidden: Feature-encoder hidden sizes.
        label_hidden: Label-encoder hidden sizes.
        decoder_hidden: Decoder hidden sizes.

    Returns:
        Dict with `forward`, `backward`, `total` FLOPs.
    """
    b, f, n, e, d = batch_size, num_features, num_labels, embedding_dim, latent_dim

    def chain(rows: int, sizes: Sequence[int]) -> int:
        return sum(rows * a * c for a, c in zip(sizes[:-1], sizes[1:], strict=True))

    # (multiply-adds, backward multiplier)
    parts = [
        (b * f * feature_hidden[0], 1),  # first feature layer: input x needs no gradient
        (chain(b, feature_hidden) + b * feature_hidden[-1] * 2 * d, 2),  # rest + two heads
        (chain(n, [e, *label_hidden]) + n * label_hidden[-1] * 2 * d, 2),  # label encoder
        (3 * chain(b, [f + d, *decoder_hidden, e]), 2),  # three decoder calls
        (3 * b * e * n, 2),  # three logit products
        (b * n * d, 1),  # z_y = y @ mean_e: y needs no gradient
    ]
    forward = 2 * sum(m for m, _ in parts)
    backward = 2 * sum(m * k for m, k in parts)
    return {"forward": forward, "backward": backward, "total": forward + backward}
