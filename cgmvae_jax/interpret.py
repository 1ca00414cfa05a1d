"""Label-label structure learnt by C-GMVAE: similarity, clustering, co-occurrence and plots.

The label embeddings W [L, E] (`params["label_encoder"]["embeddings"]`) are the prediction
matrix and the contrastive keys of C-GMVAE; the matrix of their inner products shows which
labels the model treats alike (paper Fig. 3). This module compares that matrix with the
co-occurrence of the labels in the training data:

    w = interpret.label_embeddings_from_params(params)   # [S, L, E] for a trainer's params
    sim = interpret.label_similarity(w).mean(axis=0)    # [L, L], NaN diagonal
    cooc = interpret.cooccurrence(splits.train_y)       # [L, L], NaN diagonal
    rho = interpret.rank_correlation(sim, cooc)         # Spearman over label pairs
    interpret.plot_similarity_heatmaps(sim, cooc, names, "label_similarity.png")

`visualize_run(workdir)` does all of it for a training run (what `launch/visualize.py` calls).

Importing this module needs only numpy. scipy (clustering, rank correlation) and matplotlib
(plots, Agg backend) are imported inside the functions that use them; both come with
`pip install -e ".[plot]"`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_PLOT_EXTRA = 'pip install -e ".[plot]"'
COOCCURRENCE_KINDS = ("npmi", "jaccard", "count")


def _import_scipy(feature: str):
    try:
        import scipy.cluster.hierarchy
        import scipy.spatial.distance
        import scipy.stats
    except ImportError as e:  # pragma: no cover - scipy is installed in the test environment
        raise ImportError(
            f"{feature} needs scipy, which is not installed. Install the plotting extra: "
            f"{_PLOT_EXTRA} (or pip install scipy)."
        ) from e
    return scipy


def _new_figure(ncols: int, figsize: tuple[float, float]):
    """A figure and its axes, made without pyplot: the caller's backend is left alone.

    Plots are written to files; a notebook's `plt.show()` keeps working as before.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Plotting needs matplotlib, which is not installed. Install the plotting extra: "
            f"{_PLOT_EXTRA} (or pip install matplotlib)."
        ) from e
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(1, ncols)


def _square(matrix, name: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square [L, L] matrix; got shape {matrix.shape}.")
    return matrix


# ----------------------------------------------------------------------------------------------
# Matrices.


def label_similarity(embeddings, *, cosine: bool = False) -> np.ndarray:
    """Label-label similarity of label embeddings, with the diagonal removed.

    Args:
      embeddings: Label embeddings [..., L, E] (e.g. W [L, E], or [S, L, E] for S seeds).
      cosine: False for inner products w_i . w_j (the paper's Fig. 3); True for cosine
        similarity w_i . w_j / (|w_i| |w_j|), in [-1, 1] (0 where an embedding is zero).

    Returns:
      float64 [..., L, L], symmetric, with the diagonal set to NaN: a label's similarity to
      itself is its squared norm (or 1), not a relation between labels, and NaN keeps it out
      of colour scales, clustering and `rank_correlation`.
    """
    w = np.asarray(embeddings, dtype=np.float64)  # [..., L, E]
    if w.ndim < 2:
        raise ValueError(f"embeddings must be [..., L, E]; got shape {w.shape}.")
    if cosine:
        norms = np.linalg.norm(w, axis=-1, keepdims=True)  # [..., L, 1]
        w = np.divide(w, norms, out=np.zeros_like(w), where=norms > 0)
    sim = w @ np.swapaxes(w, -1, -2)  # [..., L, L]
    sim = (sim + np.swapaxes(sim, -1, -2)) / 2  # exactly symmetric despite rounding
    if cosine:
        sim = np.clip(sim, -1.0, 1.0)
    num_labels = sim.shape[-1]
    sim[..., np.arange(num_labels), np.arange(num_labels)] = np.nan
    return sim


def cooccurrence(labels, *, kind: str = "npmi") -> np.ndarray:
    """Label-label co-occurrence of a label matrix, with the diagonal removed.

    With n rows, n_i rows holding label i and n_ij rows holding both i and j:

    * "npmi" (default): normalised pointwise mutual information
      log(n_ij n / (n_i n_j)) / -log(n_ij / n), in [-1, 1]: 1 when i and j always occur
      together, 0 when independent, -1 when they never co-occur (also the value for a label
      that never occurs). Unlike raw counts it does not just rank frequent labels first.
    * "jaccard": n_ij / |rows with i or j|, in [0, 1] (0 when neither occurs).
    * "count": n_ij / n, the fraction of rows holding both.

    Args:
      labels: Binary label matrix [N, L].
      kind: "npmi" | "jaccard" | "count".

    Returns:
      float64 [L, L], symmetric, diagonal NaN.
    """
    if kind not in COOCCURRENCE_KINDS:
        raise ValueError(f"kind must be one of {COOCCURRENCE_KINDS}; got {kind!r}.")
    y = np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"labels must be [N, L]; got shape {y.shape}.")
    if y.shape[0] == 0:
        raise ValueError("labels has no rows.")
    y = (y != 0).astype(np.float64)  # [N, L]
    n = float(y.shape[0])
    joint = y.T @ y  # [L, L], n_ij
    single = np.diag(joint).copy()  # [L], n_i
    if kind == "count":
        out = joint / n
    elif kind == "jaccard":
        union = single[:, None] + single[None, :] - joint  # [L, L]
        out = np.divide(joint, union, out=np.zeros_like(joint), where=union > 0)
    else:
        out = np.full_like(joint, -1.0)
        both = joint > 0  # implies n_i, n_j > 0
        p_ij = joint[both] / n
        pmi = np.log(p_ij) - np.log(np.outer(single, single)[both] / n**2)
        denominator = -np.log(p_ij)  # 0 when i and j occur in every row
        out[both] = np.divide(pmi, denominator, out=np.ones_like(pmi), where=denominator > 0)
        out = np.clip(out, -1.0, 1.0)
    out[np.arange(len(single)), np.arange(len(single))] = np.nan
    return out


def cluster_order(similarity) -> np.ndarray:
    """Orders labels so that similar labels sit together (hierarchical clustering).

    Average-linkage agglomerative clustering (scipy) on the distance
    max(similarity) - similarity over the off-diagonal entries (so any similarity scale works,
    inner products included); the order is the dendrogram's leaf order (optimal leaf ordering
    for L <= 300). The diagonal is ignored; NaN entries count as the least similar.

    Args:
      similarity: [L, L] similarity matrix (symmetrised here).

    Returns:
      int64 [L], a permutation of range(L): `similarity[order][:, order]` is the reordered matrix.
    """
    scipy = _import_scipy("cluster_order")
    sim = _square(similarity, "similarity")
    num_labels = sim.shape[0]
    if num_labels <= 2:
        return np.arange(num_labels, dtype=np.int64)
    sim = (sim + sim.T) / 2
    off = ~np.eye(num_labels, dtype=bool)
    finite = off & np.isfinite(sim)
    if not finite.any():
        return np.arange(num_labels, dtype=np.int64)
    top, bottom = np.max(sim[finite]), np.min(sim[finite])
    distance = np.where(finite, top - sim, top - bottom)  # NaN -> the largest distance
    np.fill_diagonal(distance, 0.0)
    condensed = scipy.spatial.distance.squareform(distance, checks=False)
    tree = scipy.cluster.hierarchy.linkage(
        condensed, method="average", optimal_ordering=num_labels <= 300
    )
    return scipy.cluster.hierarchy.leaves_list(tree).astype(np.int64)


def rank_correlation(a, b) -> float:
    """Spearman rank correlation of two label-label matrices over the label pairs.

    Uses the entries strictly above the diagonal (each unordered pair once) where both
    matrices are finite; ties get average ranks.

    Args:
      a: [L, L] matrix (e.g. `label_similarity`).
      b: [L, L] matrix (e.g. `cooccurrence`).

    Returns:
      Spearman's rho in [-1, 1] as a Python float; NaN when fewer than two pairs are usable or
      one side is constant over them.
    """
    scipy = _import_scipy("rank_correlation")
    a, b = _square(a, "a"), _square(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}.")
    rows, cols = np.triu_indices(a.shape[0], k=1)
    x, y = a[rows, cols], b[rows, cols]  # [P]
    usable = np.isfinite(x) & np.isfinite(y)
    x, y = x[usable], y[usable]
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(scipy.stats.spearmanr(x, y).statistic)


def label_embeddings_from_params(params: Mapping[str, Any]) -> np.ndarray:
    """The label embedding matrix W of C-GMVAE parameters, as numpy.

    Args:
      params: The parameter tree of `models.CGMVAE` (`params["label_encoder"]["embeddings"]`),
        or a variables dict holding it under "params". A trainer's parameters
        (`train.load_best`) carry a leading seed axis.

    Returns:
      float32 W as stored: [S, L, E] for a trainer's stacked seeds, [L, E] for one model.

    Raises:
      KeyError: the tree has no `label_encoder/embeddings` entry (e.g. not a C-GMVAE).
    """
    tree = params
    if "label_encoder" not in tree and "params" in tree:
        tree = tree["params"]
    try:
        w = tree["label_encoder"]["embeddings"]
    except (KeyError, TypeError):
        top = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise KeyError(
            "No label embeddings at params['label_encoder']['embeddings'] (C-GMVAE's W [L, E]); "
            f"top-level entries: {top}."
        ) from None
    return np.asarray(w, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Plots.


def _tick_step(num_labels: int, most: int = 60) -> int:
    return max(1, math.ceil(num_labels / most))


def plot_similarity_heatmaps(
    sim,
    cooc,
    label_names: Sequence[str],
    path: str,
    *,
    order: Sequence[int] | None = None,
    titles: tuple[str, str] = (
        "Learnt label similarity (inner products)",
        "Training co-occurrence (NPMI)",
    ),
    suptitle: str | None = None,
) -> str:
    """Draws the similarity and co-occurrence matrices side by side as heatmaps (a PNG).

    Both panels use the same label order (by default `cluster_order(sim)`), label names on both
    axes (every k-th name when there are more than 60 labels), a diverging colour map centred
    at 0 and a colour bar each; the removed diagonal is grey.

    Args:
      sim: [L, L] label similarity (`label_similarity`).
      cooc: [L, L] co-occurrence (`cooccurrence`).
      label_names: L names.
      path: Output PNG path (directories are created).
      order: Label permutation; default `cluster_order(sim)`.
      titles: Panel titles.
      suptitle: Optional figure title.

    Returns:
      `path`.
    """
    sim, cooc = _square(sim, "sim"), _square(cooc, "cooc")
    num_labels = sim.shape[0]
    if cooc.shape != sim.shape:
        raise ValueError(f"sim and cooc must have the same shape; got {sim.shape}, {cooc.shape}.")
    names = [str(n) for n in label_names]
    if len(names) != num_labels:
        raise ValueError(f"{len(names)} label names for {num_labels} labels.")
    order = cluster_order(sim) if order is None else np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(num_labels)):
        raise ValueError("order must be a permutation of range(L).")
    import matplotlib

    step = _tick_step(num_labels)
    ticks = np.arange(0, num_labels, step)
    tick_names = [names[order[i]] for i in ticks]
    side = float(np.clip(0.16 * len(ticks) + 3.0, 5.0, 14.0))  # inches per panel
    fontsize = float(np.clip(220.0 / max(len(ticks), 1), 5.0, 10.0))
    fig, axes = _new_figure(2, (2 * side + 2.5, side + 1.0))
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.8")  # grey diagonal
    for ax, matrix, title in zip(axes, (sim, cooc), titles, strict=True):
        shown = matrix[np.ix_(order, order)]
        finite = shown[np.isfinite(shown)]
        scale = float(np.max(np.abs(finite))) if finite.size else 1.0
        scale = scale if scale > 0 else 1.0
        image = ax.imshow(
            np.ma.masked_invalid(shown), cmap=cmap, vmin=-scale, vmax=scale, interpolation="nearest"
        )
        ax.set_title(title)
        ax.set_xticks(ticks, tick_names, rotation=90, fontsize=fontsize)
        ax.set_yticks(ticks, tick_names, fontsize=fontsize)
        ax.set_xlabel("label")
        ax.set_ylabel("label")
        fig.colorbar(image, ax=ax, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    _save(fig, path)
    return path


def read_metrics(metrics_jsonl_path: str) -> list[dict]:
    """The records of a run's `metrics.jsonl`, one dict per epoch (a torn last line is skipped)."""
    records = []
    with open(metrics_jsonl_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


_VAL_CURVES = (
    "val_example_f1",
    "val_micro_f1",
    "val_macro_f1",
    "val_tuned_macro_f1",
    "val_hamming_accuracy",
    "val_precision_at_1",
)


def plot_training_curves(metrics_jsonl_path: str, path: str, *, title: str | None = None) -> str:
    """Plots a run's `metrics.jsonl` against the epoch (a PNG with three panels).

    Panels: the training loss and each of its terms (`train_*` keys other than `train_loss`,
    `train_grad_norm`), validation metrics at the fixed threshold plus the validation macro-F1
    at the tuned threshold, and the learning rate with the gradient norm.

    Args:
      metrics_jsonl_path: A run's `metrics.jsonl`.
      path: Output PNG path (directories are created).
      title: Optional figure title.

    Returns:
      `path`.

    Raises:
      ValueError: the file holds no epoch record.
    """
    records = read_metrics(metrics_jsonl_path)
    if not records:
        raise ValueError(f"{metrics_jsonl_path} holds no epoch record (has the run started?).")
    epochs = np.array([r.get("epoch", i) for i, r in enumerate(records)])

    def series(key):
        return np.array([r.get(key, np.nan) for r in records], dtype=np.float64)

    keys = sorted({k for r in records for k in r})
    loss_terms = [
        k
        for k in keys
        if k.startswith("train_")
        and k not in ("train_loss", "train_grad_norm")
        and isinstance(records[-1].get(k, 0.0), (int, float))
    ]
    fig, axes = _new_figure(3, (17, 4.8))
    ax = axes[0]
    if "train_loss" in keys:
        ax.plot(epochs, series("train_loss"), color="black", linewidth=2, label="loss (total)")
    for k in loss_terms:
        ax.plot(epochs, series(k), label=k.removeprefix("train_"))
    ax.set_title("Training loss by term (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    for k in _VAL_CURVES:
        if k in keys:
            label = k.removeprefix("val_")
            label = "macro_f1 (tuned threshold)" if k == "val_tuned_macro_f1" else label
            ax.plot(epochs, series(k), label=label, linestyle="--" if "tuned" in k else "-")
    ax.set_title("Validation metrics (threshold 0.5 unless tuned)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("metric")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[2]
    if "lr" in keys:
        ax.plot(epochs, series("lr"), color="tab:blue", label="learning rate")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate", color="tab:blue")
    ax.set_title("Learning rate and gradient norm")
    ax.grid(alpha=0.3)
    if "train_grad_norm" in keys:
        twin = ax.twinx()
        twin.plot(epochs, series("train_grad_norm"), color="tab:red", label="grad norm")
        twin.set_ylabel("gradient norm (epoch mean)", color="tab:red")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return path


def _save(fig, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------
# A whole run.


def visualize_run(
    workdir: str,
    out_dir: str | None = None,
    *,
    cosine: bool = False,
    cooccurrence_kind: str = "npmi",
) -> dict:
    """Similarity heatmaps and training curves of a training run's best checkpoint.

    Loads the best parameters with `train.load_best`, computes the label similarity of each
    seed's W and averages it over seeds, the co-occurrence of the training labels, and their
    rank correlation; writes `label_similarity.png` and `training_curves.png`.

    Args:
      workdir: A training run directory (config.json, checkpoints/, metrics.jsonl).
      out_dir: Where to write the PNGs; default `workdir/figures`.
      cosine: Cosine similarity instead of inner products.
      cooccurrence_kind: See `cooccurrence`.

    Returns:
      {"rank_correlation": rho of the seed-averaged similarity, "rank_correlation_per_seed":
      [S floats], "label_similarity_png": path, "training_curves_png": path or None when there
      is no metrics.jsonl, "dataset": name, "num_labels": L}.
    """
    from cgmvae_jax import train  # jax and flax only when a run is loaded

    out_dir = out_dir or os.path.join(workdir, "figures")
    _, params, splits, dataset, _ = train.load_best(workdir)
    w = label_embeddings_from_params(params)  # [S, L, E]
    if w.ndim == 2:
        w = w[None]
    per_seed = label_similarity(w, cosine=cosine)  # [S, L, L]
    sim = per_seed.mean(axis=0)  # [L, L]; the NaN diagonal stays NaN
    cooc = cooccurrence(splits.train_y, kind=cooccurrence_kind)
    rho = rank_correlation(sim, cooc)
    rho_per_seed = [rank_correlation(s, cooc) for s in per_seed]
    what = "cosine similarity" if cosine else "inner products"
    seeds = f", mean over {len(w)} seeds" if len(w) > 1 else ""
    heatmap = plot_similarity_heatmaps(
        sim,
        cooc,
        dataset.label_names,
        os.path.join(out_dir, "label_similarity.png"),
        titles=(
            f"Learnt label embeddings: {what}{seeds}",
            f"Training-label co-occurrence ({cooccurrence_kind.upper()})",
        ),
        suptitle=f"{dataset.name}: labels ordered by average-linkage clustering of the "
        f"learnt similarity; Spearman rho = {rho:.3f}",
    )
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    curves = None
    if os.path.exists(metrics_path):
        curves = plot_training_curves(
            metrics_path,
            os.path.join(out_dir, "training_curves.png"),
            title=f"{dataset.name}: {os.path.basename(os.path.abspath(workdir))}",
        )
    return {
        "dataset": dataset.name,
        "num_labels": int(sim.shape[0]),
        "rank_correlation": rho,
        "rank_correlation_per_seed": rho_per_seed,
        "label_similarity_png": heatmap,
        "training_curves_png": curves,
    }
