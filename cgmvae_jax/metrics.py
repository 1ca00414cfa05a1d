"""Multi-label metrics and threshold protocols (NumPy, on the host).

Every function takes `probs` [N, L] (predicted probabilities; NumPy or JAX arrays, anything
`np.asarray` accepts) and binary `labels` [N, L] and returns Python floats or NumPy arrays.
Nothing here imports jax, so metrics run on the host after `jax.device_get`.

Metrics (DESIGN.md §5; paper §4.2). Predictions are `probs >= threshold`, compared in the
floating dtype of `probs` (float32 stays float32, exactly like `probs >= 0.5` in NumPy; other
dtypes are converted to float64 first):

- `hamming_accuracy`: 1 - fraction of wrong entries.
- `example_f1`: mean over rows of 2 tp / (|true| + |predicted|), over the rows that have at
  least one true or predicted label only; 0.0 when no row qualifies.
- `micro_f1`: 2 TP / (2 TP + FP + FN) over all entries; 0.0 when the denominator is 0.
- `macro_f1`: mean over classes of 2 tp / (2 tp + fp + fn); a class with a zero denominator
  (never true, never predicted) counts as 0.
- `subset_accuracy`: fraction of rows predicted exactly.
- `precision_at_k` (k = 1, 3, 5): mean over all rows of (true labels among the k highest
  scores) / k. It uses the scores, not the threshold. Ties are broken deterministically: the
  labels are ordered by descending score, the lower label index first among equal scores. If
  L < k, all L labels are taken and the count is still divided by k.

Differences from the official evaluation code (spec/OFFICIAL_BEHAVIOUR.md §1.6), all on
degenerate inputs or ties:

- example_f1 with no qualifying row and micro_f1 with a zero denominator are 0.0 here; the
  official code returns NaN.
- macro_f1 is exact here; the official code adds 1e-6 to every denominator, so a perfectly
  predicted class scores 2tp / (2tp + 1e-6), slightly below 1.
- precision_at_k breaks ties by label index here; the official order (reversed `np.argsort`)
  is not stable. The official code also fails unless the labels hold both a 0 and a 1.

Threshold protocols (DESIGN.md §5; the names are keys of `results.json`):

- `fixed`: threshold 0.5. The default and the honest number.
- `val_tuned`: one threshold from `THRESHOLD_GRID` (0.05, 0.10, ..., 0.95), chosen to
  maximise validation macro_f1 and applied unchanged to the test split.
- `val_per_metric`: for every metric separately, the threshold from `THRESHOLD_GRID` that
  maximises it on validation, applied unchanged to the test split. The honest counterpart of
  `official`: thresholds per metric, but chosen without the scored labels. Its validation
  numbers are each metric's best over the grid and so are optimistic like `official`'s. On
  test it can exceed `official`, which searches only the coarser `OFFICIAL_THRESHOLDS`.
- `official`: for every metric separately, its best value over `OFFICIAL_THRESHOLDS`
  (0.1, ..., 0.9) on the split being scored. This is how the paper's tables were produced; it
  tunes the threshold on the scored data (on test for test numbers) and so is optimistic.

Threshold choices break ties (equal metric values) towards 0.5, then towards the smaller
threshold; precision_at_k, which ignores the threshold, therefore always gets the grid value
nearest 0.5. See docs/metrics.md for a longer reference.

Cost, measured once on 270,000 x 81 float32 probabilities on a shared 2-core CPU (load average
about 5, so timings varied): `multilabel_metrics` 0.8-1.2 s, of which precision_at_k (one
`np.partition` per row) is about 0.5 s; every further threshold of `metrics_over_thresholds`
adds 0.05-0.15 s (19 thresholds: 1.9-3.4 s); `evaluate_protocols` on two such splits 4-5.3 s;
`mean_auc`, which sorts every column, 2.4-4.3 s. Adding `val_per_metric` (at most five more
test thresholds; two in the timing) left `evaluate_protocols` within the noise: 3.7 s before,
2.4-3.8 s after, on two 270,000 x 81 splits.
"""

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

METRIC_NAMES = (
    "hamming_accuracy",
    "example_f1",
    "micro_f1",
    "macro_f1",
    "subset_accuracy",
    "precision_at_1",
    "precision_at_3",
    "precision_at_5",
)
TOP_K = (1, 3, 5)
PROTOCOLS = ("fixed", "val_tuned", "val_per_metric", "official")

# Rounded so that the grid holds the floats 0.05, 0.1, 0.15, ... exactly as written.
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # val_tuned, val_per_metric
OFFICIAL_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # official

_AUC_BLOCK_ELEMENTS = 2**22  # mean_auc sorts at most this many entries at a time


# ----------------------------------------------------------------------------------------------
# Input validation.


def _as_float(probs: np.ndarray, name: str) -> np.ndarray:
    """Returns `probs` as float32 or float64; raises ValueError for non-numeric dtypes."""
    if probs.dtype in (np.float32, np.float64):
        return probs
    # bfloat16 and other ml_dtypes floats have kind "V" but cast to float64 exactly.
    if probs.dtype.kind in "biuf" or (probs.dtype.kind == "V" and probs.dtype.names is None):
        try:
            return probs.astype(np.float64)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"{name} must hold real numbers; got dtype {probs.dtype}.")


def _prepare(
    probs, labels, prob_name: str = "probs", label_name: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """Validates and converts inputs.

    Args:
      probs: predicted probabilities, [N, L].
      labels: binary targets, [N, L] (bool, integer or float holding 0 and 1 only).
      prob_name: name of `probs` in error messages.
      label_name: name of `labels` in error messages.

    Returns:
      (probs as float32/float64 [N, L], labels as bool [N, L]).

    Raises:
      ValueError: if an array is not 2-D, the shapes differ or are empty, a probability is
        not finite, or a label is not 0 or 1. The message names the first bad entry.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    for name, array in ((prob_name, probs), (label_name, labels)):
        if array.ndim != 2:
            raise ValueError(f"{name} must be 2-D [N, L]; got shape {array.shape}.")
    if probs.shape != labels.shape:
        raise ValueError(
            f"{prob_name} and {label_name} must have the same shape; got {probs.shape} and "
            f"{labels.shape}."
        )
    if probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(
            f"{prob_name} needs at least one row and one label column; got shape {probs.shape}."
        )
    num_labels = probs.shape[1]

    probs = _as_float(probs, prob_name)
    nonfinite = ~np.isfinite(probs)  # [N, L]
    if nonfinite.any():
        row, col = divmod(int(np.argmax(nonfinite)), num_labels)
        raise ValueError(
            f"{prob_name} must be finite; {prob_name}[{row}, {col}] = {probs[row, col]} "
            f"(row {row}, column {col}; {int(np.count_nonzero(nonfinite))} non-finite entries "
            "in total)."
        )

    if labels.dtype != np.bool_:
        if labels.dtype.kind not in "biuf" and not (
            labels.dtype.kind == "V" and labels.dtype.names is None
        ):
            raise ValueError(f"{label_name} must hold 0 and 1; got dtype {labels.dtype}.")
        not_binary = (labels != 0) & (labels != 1)  # [N, L]; NaN is caught here too
        if not_binary.any():
            row, col = divmod(int(np.argmax(not_binary)), num_labels)
            raise ValueError(
                f"{label_name} must be binary (0 or 1); {label_name}[{row}, {col}] = "
                f"{labels[row, col]} (row {row}, column {col})."
            )
        labels = labels != 0
    return probs, labels


def _check_thresholds(thresholds, name: str = "thresholds") -> np.ndarray:
    """Returns `thresholds` as a non-empty 1-D float64 array of finite values."""
    try:
        values = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be real numbers; got {thresholds!r}.") from error
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence; got {thresholds!r}.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite; got {thresholds!r}.")
    return values


def _check_threshold(threshold, name: str = "threshold") -> float:
    """Returns `threshold` as a finite Python float."""
    try:
        value = float(threshold)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a real number; got {threshold!r}.") from error
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {threshold!r}.")
    return value


def _check_metric_thresholds(thresholds) -> dict[str, float]:
    """Returns {metric: finite float} in `METRIC_NAMES` order; every metric, no other key."""
    if not isinstance(thresholds, Mapping):
        raise ValueError(
            f"thresholds must map every metric name to a threshold; got {thresholds!r}."
        )
    missing = [name for name in METRIC_NAMES if name not in thresholds]
    unknown = sorted(str(name) for name in thresholds if name not in METRIC_NAMES)
    if missing or unknown:
        raise ValueError(
            f"thresholds must have exactly the keys of METRIC_NAMES; missing {missing}, "
            f"unknown {unknown}."
        )
    return {
        name: _check_threshold(thresholds[name], f"thresholds[{name!r}]") for name in METRIC_NAMES
    }


# ----------------------------------------------------------------------------------------------
# Core computations on validated arrays.


class _Truth(NamedTuple):
    """Threshold-independent facts about the labels, computed once per split."""

    per_row: np.ndarray  # [N], true labels per row
    per_class: np.ndarray  # [L], true labels per class
    rows: np.ndarray  # [P], row of every positive entry
    cols: np.ndarray  # [P], column of every positive entry
    probs: np.ndarray  # [P], probability at every positive entry


def _truth(probs: np.ndarray, labels: np.ndarray) -> _Truth:
    """Collects the label counts and positive entries of validated inputs."""
    rows, cols = np.nonzero(labels)  # [P] each
    return _Truth(
        per_row=np.count_nonzero(labels, axis=1),
        per_class=np.count_nonzero(labels, axis=0),
        rows=rows,
        cols=cols,
        probs=probs[rows, cols],
    )


def _thresholded_scores(probs: np.ndarray, truth: _Truth, threshold: float) -> dict:
    """The five threshold-dependent metrics at one threshold (validated inputs)."""
    num_rows, num_labels = probs.shape
    threshold = probs.dtype.type(threshold)  # compare in the dtype of probs
    predicted = (probs >= threshold).view(np.uint8)  # [N, L], 0/1
    pred_per_row = predicted.sum(axis=1, dtype=np.int64)  # [N]
    pred_per_class = predicted.sum(axis=0, dtype=np.int64)  # [L]
    # True positives are counted on the positive entries only (labels are usually sparse).
    hit = truth.probs >= threshold  # [P]
    hit_per_row = np.bincount(truth.rows[hit], minlength=num_rows)  # [N]
    hit_per_class = np.bincount(truth.cols[hit], minlength=num_labels)  # [L]

    true_total = int(truth.per_class.sum())
    pred_total = int(pred_per_class.sum())
    hit_total = int(hit_per_class.sum())
    wrong = (pred_total - hit_total) + (true_total - hit_total)  # FP + FN

    row_denominator = truth.per_row + pred_per_row  # [N]
    scored_rows = row_denominator > 0  # [N]
    if scored_rows.any():
        example_f1 = float(np.mean(2.0 * hit_per_row[scored_rows] / row_denominator[scored_rows]))
    else:
        example_f1 = 0.0

    micro_denominator = true_total + pred_total
    micro_f1 = 2.0 * hit_total / micro_denominator if micro_denominator > 0 else 0.0

    class_denominator = truth.per_class + pred_per_class  # [L]
    class_f1 = np.divide(
        2.0 * hit_per_class,
        class_denominator,
        out=np.zeros(num_labels, dtype=np.float64),
        where=class_denominator > 0,
    )  # [L]

    exact_rows = (pred_per_row == hit_per_row) & (hit_per_row == truth.per_row)  # [N]
    return {
        "hamming_accuracy": 1.0 - wrong / (num_rows * num_labels),
        "example_f1": example_f1,
        "micro_f1": float(micro_f1),
        "macro_f1": float(class_f1.mean()),
        "subset_accuracy": float(np.mean(exact_rows)),
    }


def _hits_at_k(probs: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Per-row number of true labels among the k highest scores, for every k in `ks`.

    The k highest scores are taken in the order (descending score, ascending label index).
    One `np.partition` finds the k-th largest score v of every row. Where exactly k labels
    score >= v those are the top k; rows with more (ties at v) take every label above v and
    fill the remaining places with the labels scoring exactly v, lowest index first.
    """
    num_labels = probs.shape[1]
    kept = {k: min(k, num_labels) for k in ks}  # k is capped at L
    most = max(kept.values())
    top = np.sort(np.partition(probs, num_labels - most, axis=1)[:, num_labels - most :], axis=1)
    hits = {}
    for k, m in kept.items():
        kth_score = top[:, most - m, None]  # [N, 1], the m-th largest score of each row
        selected = probs >= kth_score  # [N, L]
        row_hits = np.count_nonzero(selected & labels, axis=1)  # [N]
        crowded = np.flatnonzero(np.count_nonzero(selected, axis=1) > m)  # rows with ties at v
        if crowded.size:
            scores, truth, kth = probs[crowded], labels[crowded], kth_score[crowded]  # [C, L]
            above = scores > kth  # [C, L]
            tied = scores == kth  # [C, L]
            room = m - np.count_nonzero(above, axis=1)  # [C], places left for tied labels
            tie_rank = np.cumsum(tied, axis=1)  # [C, L], 1-based position among tied labels
            taken = above | (tied & (tie_rank <= room[:, None]))  # [C, L]
            row_hits[crowded] = np.count_nonzero(taken & truth, axis=1)
        hits[k] = row_hits
    return hits


def _precision_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """precision_at_1, _3 and _5 as Python floats (validated inputs)."""
    hits = _hits_at_k(probs, labels, TOP_K)
    return {f"precision_at_{k}": float(np.mean(hits[k]) / k) for k in TOP_K}


def _curves(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict:
    """All metrics at every threshold: {metric: float64 [T]} (validated inputs)."""
    curves = {name: np.empty(len(thresholds), dtype=np.float64) for name in METRIC_NAMES}
    truth = _truth(probs, labels)
    for i, threshold in enumerate(thresholds):
        for name, value in _thresholded_scores(probs, truth, float(threshold)).items():
            curves[name][i] = value
    for name, value in _precision_scores(probs, labels).items():
        curves[name][:] = value  # does not depend on the threshold
    return curves


def _at(curves: dict, thresholds: Sequence[float], threshold: float) -> dict[str, float]:
    """The metrics at one threshold of `thresholds`, read off `curves`."""
    i = list(thresholds).index(threshold)
    return {name: float(curves[name][i]) for name in METRIC_NAMES}


def _best(curves: dict, thresholds: Sequence[float], subset: Sequence[float]) -> dict:
    """For every metric separately, its largest value over the thresholds in `subset`."""
    index = [list(thresholds).index(t) for t in subset]
    return {name: float(np.max(curves[name][index])) for name in METRIC_NAMES}


def _per_metric(curves: dict, thresholds: Sequence[float], chosen: Mapping) -> dict:
    """Every metric at its own threshold `chosen[metric]` (an element of `thresholds`)."""
    index = list(thresholds).index
    return {name: float(curves[name][index(chosen[name])]) for name in METRIC_NAMES}


def _tune(curves: dict, thresholds: Sequence[float], candidates: Sequence[float]) -> dict:
    """For every metric, the threshold in `candidates` (all in `thresholds`) that maximises it."""
    index = [list(thresholds).index(t) for t in candidates]
    return {name: argmax_threshold(curves[name][index], candidates) for name in METRIC_NAMES}


def argmax_threshold(values: np.ndarray, grid: Sequence[float]) -> float:
    """The grid threshold with the largest value; ties: closest to 0.5, then the smaller."""
    values = np.asarray(values)
    best = np.max(values)
    candidates = [float(t) for t, v in zip(grid, values, strict=True) if v == best]
    # Rounding the distance makes 0.2 and 0.8 equally close to 0.5 despite float error.
    return min(candidates, key=lambda t: (round(abs(t - 0.5), 9), t))


# ----------------------------------------------------------------------------------------------
# Public API.


def multilabel_metrics(probs, labels, threshold: float = 0.5) -> dict[str, float]:
    """Multi-label metrics of probabilities binarised at one threshold.

    Args:
      probs: predicted probabilities, [N, L], finite (NumPy or JAX array).
      labels: binary targets, [N, L] (bool, or integers/floats that are 0 or 1).
      threshold: a label is predicted when `probs >= threshold`.

    Returns:
      {metric: Python float} with exactly the keys of `METRIC_NAMES`: hamming_accuracy,
      example_f1, micro_f1, macro_f1, subset_accuracy, precision_at_1, precision_at_3,
      precision_at_5. Edge cases as in the module docstring; no value is NaN.

    Raises:
      ValueError: on shapes that differ or are not 2-D, non-finite probabilities, non-binary
        labels, or a non-finite threshold.
    """
    probs, labels = _prepare(probs, labels)
    threshold = _check_threshold(threshold)
    scores = _thresholded_scores(probs, _truth(probs, labels), threshold)
    scores.update(_precision_scores(probs, labels))
    return {name: scores[name] for name in METRIC_NAMES}


def precision_at_k(probs, labels, k: int) -> float:
    """Mean over rows of (true labels among the k highest scores) / k.

    Args:
      probs: scores, [N, L], finite; only their order within a row matters.
      labels: binary targets, [N, L].
      k: number of top-scoring labels per row, >= 1. If k > L all labels are taken and the
        count is still divided by k.

    Returns:
      Precision at k as a Python float. Ties: descending score, then ascending label index.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    probs, labels = _prepare(probs, labels)
    k = int(k)
    return float(np.mean(_hits_at_k(probs, labels, (k,))[k]) / k)


def mean_auc(probs, labels) -> float:
    """Mean over classes of the ROC AUC, skipping classes whose labels are all 0 or all 1.

    The AUC of a class is the Mann-Whitney statistic: (sum of the ranks of its positives -
    P (P + 1) / 2) / (P Q) for P positives and Q negatives, with tied scores given their
    average rank (the same value as `sklearn.metrics.roc_auc_score`). Columns are sorted in
    blocks to bound memory.

    Args:
      probs: scores, [N, L], finite.
      labels: binary targets, [N, L].

    Returns:
      The mean AUC over the classes that have both a positive and a negative example, or NaN
      if no class has both.
    """
    probs, labels = _prepare(probs, labels)
    num_rows = probs.shape[0]
    positives = np.count_nonzero(labels, axis=0)  # [L]
    usable = (positives > 0) & (positives < num_rows)  # [L]
    if not usable.any():
        return math.nan
    probs, labels, positives = probs[:, usable], labels[:, usable], positives[usable]
    negatives = num_rows - positives

    block = max(1, _AUC_BLOCK_ELEMENTS // num_rows)  # columns per block
    position = np.arange(num_rows)[:, None]  # [N, 1]
    rank_sums = []
    for start in range(0, probs.shape[1], block):
        scores = probs[:, start : start + block]  # [N, C]
        order = np.argsort(scores, axis=0)  # [N, C]; ties get their average rank below
        ordered = np.take_along_axis(scores, order, axis=0)  # [N, C]
        ordered_labels = np.take_along_axis(labels[:, start : start + block], order, axis=0)
        starts_run = np.ones(ordered.shape, dtype=bool)  # [N, C], first entry of a tie run
        starts_run[1:] = ordered[1:] != ordered[:-1]
        ends_run = np.ones(ordered.shape, dtype=bool)  # [N, C], last entry of a tie run
        ends_run[:-1] = starts_run[1:]
        first = np.maximum.accumulate(np.where(starts_run, position, 0), axis=0)  # [N, C]
        run_end = np.where(ends_run, position, num_rows - 1)[::-1]  # [N, C], bottom-up
        last = np.minimum.accumulate(run_end, axis=0)[::-1]  # [N, C]
        average_rank = (first + last) / 2.0 + 1.0  # [N, C], 1-based
        rank_sums.append(np.sum(average_rank, axis=0, where=ordered_labels))  # [C]
    rank_sum = np.concatenate(rank_sums)  # [L']
    auc = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives.astype(float))
    return float(np.mean(auc))


def metrics_over_thresholds(probs, labels, thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """All metrics at several thresholds.

    Args:
      probs: predicted probabilities, [N, L], finite.
      labels: binary targets, [N, L].
      thresholds: T finite thresholds, in any order.

    Returns:
      {metric: float64 [T]} with the keys of `METRIC_NAMES`; entry i is the metric at
      `thresholds[i]`. precision_at_k does not depend on the threshold and is computed once.
    """
    probs, labels = _prepare(probs, labels)
    thresholds = _check_thresholds(thresholds)
    return _curves(probs, labels, thresholds)


def fixed_protocol(probs, labels, threshold: float = 0.5) -> dict[str, float]:
    """The `fixed` protocol: every metric at one preset threshold (default 0.5).

    Same as `multilabel_metrics(probs, labels, threshold)`.
    """
    return multilabel_metrics(probs, labels, threshold)


def tune_threshold(
    val_probs,
    val_labels,
    metric: str = "macro_f1",
    grid: Sequence[float] = THRESHOLD_GRID,
) -> float:
    """The grid threshold that maximises `metric` on validation data (the `val_tuned` rule).

    Args:
      val_probs: validation probabilities, [N, L].
      val_labels: validation targets, [N, L].
      metric: one of `METRIC_NAMES`.
      grid: candidate thresholds.

    Returns:
      The chosen threshold, an element of `grid` as a Python float. Ties (equal metric values)
      go to the threshold closest to 0.5, then to the smaller one; a metric that does not
      depend on the threshold (precision_at_k) therefore gives the grid value nearest 0.5.
    """
    if metric not in METRIC_NAMES:
        raise ValueError(f"metric must be one of {METRIC_NAMES}; got {metric!r}.")
    val_probs, val_labels = _prepare(val_probs, val_labels, "val_probs", "val_labels")
    grid = _check_thresholds(grid, "grid")
    curves = _curves(val_probs, val_labels, grid)
    return argmax_threshold(curves[metric], grid)


def tune_thresholds(
    val_probs, val_labels, grid: Sequence[float] = THRESHOLD_GRID
) -> dict[str, float]:
    """For every metric separately, the grid threshold that maximises it on validation data.

    The `val_per_metric` rule. One pass over the grid scores all metrics at once;
    `tune_thresholds(p, y)[m] == tune_threshold(p, y, metric=m)` for every metric m.

    Args:
      val_probs: validation probabilities, [N, L].
      val_labels: validation targets, [N, L].
      grid: candidate thresholds.

    Returns:
      {metric: threshold} with the keys of `METRIC_NAMES`, each threshold an element of
      `grid` as a Python float. Ties as in `tune_threshold` (closest to 0.5, then the
      smaller), so precision_at_1, _3 and _5 get the grid value nearest 0.5.
    """
    val_probs, val_labels = _prepare(val_probs, val_labels, "val_probs", "val_labels")
    grid = [float(t) for t in _check_thresholds(grid, "grid")]
    return _tune(_curves(val_probs, val_labels, np.asarray(grid)), grid, grid)


def per_metric_protocol(probs, labels, thresholds: Mapping[str, float]) -> dict[str, float]:
    """Every metric at its own threshold (the `val_per_metric` protocol on given thresholds).

    `per_metric_protocol(p, y, t)[m] == multilabel_metrics(p, y, t[m])[m]` for every metric
    m; the predictions are computed once per distinct threshold.

    Args:
      probs: predicted probabilities, [N, L].
      labels: binary targets, [N, L].
      thresholds: {metric: finite threshold} with exactly the keys of `METRIC_NAMES`, e.g.
        the result of `tune_thresholds` on validation data. The precision_at_k entries are
        required but do not change the result.

    Returns:
      {metric: Python float} with the keys of `METRIC_NAMES`.

    Raises:
      ValueError: on bad arrays (as `multilabel_metrics`), a missing or unknown metric name,
        or a non-finite threshold.
    """
    probs, labels = _prepare(probs, labels)
    chosen = _check_metric_thresholds(thresholds)
    grid = sorted(set(chosen.values()))
    return _per_metric(_curves(probs, labels, np.asarray(grid)), grid, chosen)


def official_protocol(probs, labels) -> dict[str, float]:
    """The `official` protocol: each metric's best value over `OFFICIAL_THRESHOLDS`.

    Every metric picks its own threshold from 0.1, 0.2, ..., 0.9 on the very data being
    scored, as the official C-GMVAE code does for its validation and test numbers (and so for
    the paper's tables). On test data this tunes on the test labels: the numbers are
    optimistic and not comparable with `fixed`, `val_tuned` or `val_per_metric`.

    Args:
      probs: predicted probabilities, [N, L].
      labels: binary targets, [N, L].

    Returns:
      {metric: Python float} with the keys of `METRIC_NAMES`.
    """
    probs, labels = _prepare(probs, labels)
    curves = _curves(probs, labels, np.asarray(OFFICIAL_THRESHOLDS))
    return _best(curves, OFFICIAL_THRESHOLDS, OFFICIAL_THRESHOLDS)


def evaluate_protocols(
    val_probs, val_labels, test_probs, test_labels, *, threshold: float = 0.5
) -> dict:
    """Scores validation and test predictions under all four threshold protocols.

    Thresholds are chosen on validation over `THRESHOLD_GRID` (ties as in `tune_threshold`)
    and applied unchanged to both splits: `val_tuned` uses the one that maximises macro_f1,
    `val_per_metric` each metric's own. Each split is scored once on the union of the
    thresholds it needs, and every protocol is read off those curves.

    Args:
      val_probs: validation probabilities, [N_val, L].
      val_labels: validation targets, [N_val, L].
      test_probs: test probabilities, [N_test, L].
      test_labels: test targets, [N_test, L].
      threshold: threshold of the `fixed` protocol.

    Returns:
      {"val": {protocol: m}, "test": {protocol: m}, "val_tuned_threshold": float,
      "val_per_metric_thresholds": {metric: float}} with protocol in `PROTOCOLS` order
      (fixed, val_tuned, val_per_metric, official) and each m {metric: Python float} with the
      keys of `METRIC_NAMES` (the shape of `results.json`, DESIGN.md §6). The validation
      numbers under `val_per_metric` are each metric's best over `THRESHOLD_GRID`;
      `val_per_metric_thresholds["macro_f1"] == val_tuned_threshold`.
    """
    val_probs, val_labels = _prepare(val_probs, val_labels, "val_probs", "val_labels")
    test_probs, test_labels = _prepare(test_probs, test_labels, "test_probs", "test_labels")
    if val_probs.shape[1] != test_probs.shape[1]:
        raise ValueError(
            "val and test must have the same number of labels; got "
            f"{val_probs.shape[1]} and {test_probs.shape[1]}."
        )
    threshold = _check_threshold(threshold)

    val_grid = sorted({*THRESHOLD_GRID, *OFFICIAL_THRESHOLDS, threshold})
    val_curves = _curves(val_probs, val_labels, np.asarray(val_grid))
    per_metric = _tune(val_curves, val_grid, THRESHOLD_GRID)
    tuned = per_metric["macro_f1"]  # val_tuned is val_per_metric's macro_f1 threshold

    test_grid = sorted({*OFFICIAL_THRESHOLDS, threshold, *per_metric.values()})
    test_curves = _curves(test_probs, test_labels, np.asarray(test_grid))

    results = {}
    for split, curves, grid in (("val", val_curves, val_grid), ("test", test_curves, test_grid)):
        results[split] = {
            "fixed": _at(curves, grid, threshold),
            "val_tuned": _at(curves, grid, tuned),
            "val_per_metric": _per_metric(curves, grid, per_metric),
            "official": _best(curves, grid, OFFICIAL_THRESHOLDS),
        }
    results["val_tuned_threshold"] = tuned
    results["val_per_metric_thresholds"] = per_metric
    return results
