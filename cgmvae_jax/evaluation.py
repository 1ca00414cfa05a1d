"""Scoring a run: per-epoch validation, the best-epoch choice, and the content of results.json.

Everything here works on host arrays of probabilities with a leading seed axis, `[S, N, L]`,
and is shared by the training loop, `launch/evaluate.py` and the Python API:

* `validate` scores one epoch on validation: per seed, the threshold that maximises macro-F1
  (the `val_tuned` rule) and the metrics at the fixed threshold.
* `Selection` keeps, per seed, the best epoch so far by that validation score.
* `results` scores the best parameters' predictions under every threshold protocol of
  `cgmvae_jax.metrics` and assembles the results.json record (mean, std, per-seed rows and the
  seed ensemble when there are several seeds, and a constant predictor for scale).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cgmvae_jax import metrics


class NonFiniteError(FloatingPointError):
    """A loss, gradient or prediction became NaN or inf."""


def check_finite_predictions(probs: np.ndarray, split: str, epoch: int, first_seed: int) -> None:
    """Raises NonFiniteError when the probabilities [S, N, L] of a split hold NaN/inf."""
    bad = ~np.isfinite(probs)
    if not bad.any():
        return
    seed_i, row, _ = (int(v[0]) for v in np.nonzero(bad))
    rows = int(bad.any(axis=(0, 2)).sum())
    raise NonFiniteError(
        f"Non-finite predictions on the {split} split with the parameters of epoch {epoch} "
        f"(seed {first_seed + seed_i}): {rows} row(s), the first is row {row}. Their "
        "features are probably too large for float32 arithmetic: use "
        "--config.standardize=True or rescale the data."
    )


@dataclasses.dataclass
class EpochScore:
    """Validation of one epoch, per seed: tuned macro-F1, its threshold, fixed-threshold metrics.

    `selection` is what the best epoch is chosen by: the tuned macro-F1, or with
    `selection_metrics` the mean of those metrics, each at its best validation threshold.
    """

    macro_f1: list[float]
    thresholds: list[float]
    fixed: list[dict[str, float]]
    selection: list[float] = dataclasses.field(default_factory=list)

    def log_fields(self) -> dict:
        """The validation keys of a metrics.jsonl line (means over seeds)."""
        record = {f"val_{k}": float(np.mean([m[k] for m in self.fixed])) for k in self.fixed[0]}
        record["val_tuned_macro_f1"] = float(np.mean(self.macro_f1))
        record["val_selection"] = float(np.mean(self.selection))
        record["val_tuned_threshold"] = float(np.mean(self.thresholds))
        if len(self.macro_f1) > 1:
            record["val_tuned_macro_f1_per_seed"] = [float(s) for s in self.macro_f1]
        return record


def validate(
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    threshold: float,
    selection_metrics: tuple[str, ...] = ("macro_f1",),
) -> EpochScore:
    """Scores validation probabilities [S, N, L] of one epoch, seed by seed.

    One pass over `metrics.THRESHOLD_GRID` per seed gives the tuned threshold (the `val_tuned`
    rule), its macro-F1, the metrics at `threshold` and the selection score: the mean of the
    `selection_metrics`, each at its best grid threshold.
    """
    grid = list(metrics.THRESHOLD_GRID)
    score = EpochScore([], [], [])
    for probs in val_probs:
        curves = metrics.metrics_over_thresholds(probs, val_labels, grid)
        tuned = metrics.argmax_threshold(curves["macro_f1"], grid)
        score.macro_f1.append(float(curves["macro_f1"][grid.index(tuned)]))
        score.thresholds.append(tuned)
        if threshold in grid:
            at = grid.index(threshold)
            score.fixed.append({m: float(curves[m][at]) for m in metrics.METRIC_NAMES})
        else:
            score.fixed.append(metrics.multilabel_metrics(probs, val_labels, threshold))
        score.selection.append(float(np.mean([curves[m].max() for m in selection_metrics])))
    return score


@dataclasses.dataclass
class Selection:
    """The best epoch of every seed so far, by `EpochScore.selection` (by default the
    validation macro-F1 at the tuned threshold).

    With `window` > 1 an epoch is scored by the mean of the last `window` epochs' validation
    macro-F1 (its own and the ones before), which picks the end of a good stretch rather than
    one lucky epoch of a flat, noisy validation curve. A later epoch replaces the best only
    when it scores strictly higher.
    """

    best_epoch: list[int]
    best_score: list[float]
    best_threshold: list[float]
    window: int = 1
    recent: list[list[float]] = dataclasses.field(default_factory=list)  # per seed

    @classmethod
    def start(cls, num_seeds: int, threshold: float, window: int = 1) -> Selection:
        return cls(
            [-1] * num_seeds,
            [-1.0] * num_seeds,
            [float(threshold)] * num_seeds,
            int(window),
            [[] for _ in range(num_seeds)],
        )

    @classmethod
    def from_json(cls, saved: dict) -> Selection:
        """From a checkpoint's progress (older ones have no window: 1)."""
        num_seeds = len(saved["best_epoch"])
        return cls(
            list(saved["best_epoch"]),
            list(saved["best_score"]),
            list(saved["best_threshold"]),
            int(saved.get("window", 1)),
            [list(r) for r in saved.get("recent", [[] for _ in range(num_seeds)])],
        )

    def update(self, epoch: int, score: EpochScore) -> np.ndarray:
        """Records `epoch` for the seeds it improves; returns that bool mask [S]."""
        smoothed = []
        for s, value in enumerate(score.selection):
            self.recent[s] = [*self.recent[s], float(value)][-self.window :]
            smoothed.append(float(np.mean(self.recent[s])))
        improved = np.array(smoothed) > np.array(self.best_score)
        for s in np.nonzero(improved)[0]:
            self.best_score[s] = smoothed[s]
            self.best_epoch[s] = epoch
            self.best_threshold[s] = float(score.thresholds[s])
        return improved


def seed_summary(per_seed: list[dict]) -> tuple[dict, dict]:
    """Mean and std over seeds of nested {protocol: {metric: value}} dicts."""
    mean, std = {}, {}
    for protocol in per_seed[0]:
        mean[protocol], std[protocol] = {}, {}
        for metric in per_seed[0][protocol]:
            values = np.array([s[protocol][metric] for s in per_seed], np.float64)
            mean[protocol][metric] = float(values.mean())
            std[protocol][metric] = float(values.std())
    return mean, std


def _thresholds(scored: dict) -> dict:
    """The validation-chosen thresholds of an `evaluate_protocols` result."""
    return {
        "val_tuned": float(scored["val_tuned_threshold"]),
        "val_per_metric": dict(scored["val_per_metric_thresholds"]),
    }


def results(
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    test_probs: np.ndarray,
    test_labels: np.ndarray,
    *,
    train_labels: np.ndarray,
    threshold: float,
    best_epochs: list[int],
    first_seed: int,
) -> dict:
    """The scores of results.json for probabilities [S, N, L] of the best parameters.

    Returns:
      {"best_epoch", "val", "test", "val_tuned_threshold", "val_per_metric_thresholds",
      "best_epochs", "thresholds_per_seed", "constant_baseline"}: the top-level epoch and
      thresholds are the first seed's, the lists hold every seed's. For S > 1 "val"/"test" are
      the seed means, plus "val_std", "test_std", "seeds", "per_seed" and "ensemble" (the
      protocols applied to the mean probabilities, with its own thresholds).
    """
    per_seed = [
        metrics.evaluate_protocols(v, val_labels, t, test_labels, threshold=threshold)
        for v, t in zip(val_probs, test_probs, strict=True)
    ]
    out = {
        "best_epoch": int(best_epochs[0]),
        "val": per_seed[0]["val"],
        "test": per_seed[0]["test"],
        "val_tuned_threshold": float(per_seed[0]["val_tuned_threshold"]),
        "val_per_metric_thresholds": dict(per_seed[0]["val_per_metric_thresholds"]),
        "best_epochs": [int(e) for e in best_epochs],
        "thresholds_per_seed": [_thresholds(p) for p in per_seed],
    }
    # A constant predictor for scale: every row gets the training label frequencies.
    freq = train_labels.mean(axis=0, dtype=np.float64).astype(np.float32)
    constant = metrics.evaluate_protocols(
        np.broadcast_to(freq, val_labels.shape),
        val_labels,
        np.broadcast_to(freq, test_labels.shape),
        test_labels,
        threshold=threshold,
    )
    out["constant_baseline"] = {"val": constant["val"], "test": constant["test"]}
    if len(per_seed) == 1:
        return out
    mean_val, std_val = seed_summary([p["val"] for p in per_seed])
    mean_test, std_test = seed_summary([p["test"] for p in per_seed])
    ensemble = metrics.evaluate_protocols(
        val_probs.mean(0), val_labels, test_probs.mean(0), test_labels, threshold=threshold
    )
    out.update(
        val=mean_val,
        test=mean_test,
        val_std=std_val,
        test_std=std_test,
        seeds=[first_seed + i for i in range(len(per_seed))],
        per_seed=[{"val": p["val"], "test": p["test"]} for p in per_seed],
        ensemble={"val": ensemble["val"], "test": ensemble["test"], **_thresholds(ensemble)},
    )
    return out
