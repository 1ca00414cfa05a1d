"""Binary relevance (BR): one logistic regression per label, the baseline of the result tables.

BR ignores label dependencies: label j is predicted from the features alone by its own
scikit-learn `LogisticRegression` (L2, lbfgs), fitted on the training split. It runs on the same
splits and standardised features as C-GMVAE (`data.load_from_config`) and is scored with the
same threshold protocols (`metrics.evaluate_protocols`), so the tables compare like with like.

A label that is constant in the training split (all 0 or all 1) cannot be fitted by a logistic
regression; it gets that constant as its probability for every row.

Needs scikit-learn (`pip install -e ".[test]"` or `pip install scikit-learn`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np

from cgmvae_jax import metrics


def binary_relevance_probs(
    train_x: np.ndarray,
    train_y: np.ndarray,
    eval_xs: Sequence[np.ndarray],
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    blas_threads: int | None = 1,
) -> list[np.ndarray]:
    """Fits one logistic regression per label (`OneVsRestClassifier`) and predicts.

    Args:
      train_x: Training features [N, F].
      train_y: Training labels [N, L], 0/1.
      eval_xs: Feature matrices [N_k, F] to predict for.
      c: Inverse L2 regularisation strength of every regression (sklearn's `C`).
      max_iter: lbfgs iterations per label; a regression that stops there unconverged is
        kept (its ConvergenceWarning is silenced).
      blas_threads: BLAS threads during fitting (threadpoolctl); None leaves the default.
        One thread is the default because the many small lbfgs matrix-vector products run
        up to 25x slower with two threads on a busy two-core machine (measured on enron:
        0.05 s per label with one thread, 1.2 s with two).

    Returns:
      float64 probabilities [N_k, L] for each matrix of `eval_xs`; a label constant in
      `train_y` gets that constant (0 or 1) everywhere (sklearn's constant predictor).
    """
    try:
        import threadpoolctl
        from sklearn import exceptions, linear_model, multiclass
    except ImportError as e:
        raise ImportError(
            "The binary-relevance baseline needs scikit-learn: pip install scikit-learn "
            '(or pip install -e ".[test]").'
        ) from e
    train_x = np.ascontiguousarray(train_x, dtype=np.float64)  # converted once, not per label
    train_y = (np.asarray(train_y) != 0).astype(np.int64)  # [N, L]
    model = multiclass.OneVsRestClassifier(linear_model.LogisticRegression(C=c, max_iter=max_iter))
    outputs = []
    with threadpoolctl.threadpool_limits(limits=blas_threads), warnings.catch_warnings():
        # "Label j is present in all training examples": the constant predictor is intended.
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        warnings.simplefilter("ignore", category=exceptions.ConvergenceWarning)
        model.fit(train_x, train_y)
        for x in eval_xs:
            probs = np.asarray(model.predict_proba(np.asarray(x, np.float64)), np.float64)
            outputs.append(probs.reshape(len(x), train_y.shape[1]))  # [N_k, L]
    return outputs


def binary_relevance_results(
    splits,
    *,
    cs: Sequence[float] = (1.0,),
    max_iter: int = 1000,
    threshold: float = 0.5,
    blas_threads: int | None = 1,
) -> dict:
    """Binary relevance on a `data.Splits`, scored like a training run.

    With several values in `cs`, the one with the best validation macro-F1 (at its
    validation-tuned threshold) is kept; the test split is not looked at for the choice.

    Args:
      splits: Train/val/test arrays (`data.load_from_config(config)[1]`).
      cs: Candidate inverse regularisation strengths.
      max_iter: lbfgs iterations per label.
      threshold: Threshold of the `fixed` protocol.
      blas_threads: See `binary_relevance_probs`.

    Returns:
      A dict shaped like the trainer's `results.json`: "val" and "test" ({protocol: {metric:
      value}}), "val_tuned_threshold", "split", "num_train", "num_val", "num_test",
      "train_seconds", plus "C" (the chosen value) and "val_macro_f1_by_C".
    """
    start = time.perf_counter()
    best, by_c = None, {}
    for c in cs:
        val_probs, test_probs = binary_relevance_probs(
            splits.train_x,
            splits.train_y,
            [splits.val_x, splits.test_x],
            c=c,
            max_iter=max_iter,
            blas_threads=blas_threads,
        )
        scored = metrics.evaluate_protocols(
            val_probs, splits.val_y, test_probs, splits.test_y, threshold=threshold
        )
        score = scored["val"]["val_tuned"]["macro_f1"]
        by_c[str(c)] = score
        if best is None or score > best[0]:
            best = (score, c, scored)
    _, chosen, scored = best
    return {
        "val": scored["val"],
        "test": scored["test"],
        "val_tuned_threshold": float(scored["val_tuned_threshold"]),
        "split": splits.description,
        "num_train": int(splits.train_x.shape[0]),
        "num_val": int(splits.val_x.shape[0]),
        "num_test": int(splits.test_x.shape[0]),
        "train_seconds": time.perf_counter() - start,
        "C": float(chosen),
        "val_macro_f1_by_C": by_c,
    }
