r"""Scores a run's best checkpoint on a split, or predicts labels for a new features file.

  # metrics of the best epoch on the test split (all three threshold protocols)
  python launch/evaluate.py --workdir=runs/yeast --split=test --output=runs/yeast/test.csv

  # probabilities and top-k label names for new rows (.npy, .npz with X, or .csv)
  python launch/evaluate.py --workdir=runs/yeast --features=new_rows.npy --output=pred.csv

Features of a new file are standardised with the training statistics of the run. With
`num_seeds > 1` the probabilities of the seeds are averaged (the ensemble).
"""

import csv
import json
import os
import sys

import numpy as np
from absl import app, flags

from cgmvae_jax import metrics, train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A training run directory.")
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to score.")
flags.DEFINE_string("features", None, "Features to predict for (.npy, .npz with X, or .csv).")
flags.DEFINE_string("output", None, "CSV file for probabilities and top-k label names.")
flags.DEFINE_integer("top_k", 5, "Label names listed per row in the CSV.")
flags.DEFINE_float(
    "threshold",
    None,
    "Threshold for the CSV's predicted labels (default: the run's validation-tuned threshold).",
)
flags.mark_flags_as_required(["workdir"])


def read_features(path: str, num_features: int) -> np.ndarray:
    """Reads a [N, F] float matrix from .npy, .npz (array X) or .csv (no header)."""
    if path.endswith(".npy"):
        x = np.load(path)
    elif path.endswith(".npz"):
        with np.load(path) as f:
            if "X" not in f:
                raise ValueError(f"{path}: an .npz features file needs an array named X.")
            x = f["X"]
    elif path.endswith(".csv"):
        x = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        raise ValueError(f"{path}: unknown features format; use .npy, .npz (X) or .csv.")
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != num_features:
        raise ValueError(
            f"{path}: features have shape {x.shape}; the model expects [N, {num_features}]."
        )
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"{path}: row {row}, column {col} is {x[row, col]} (not finite).")
    return x


def write_csv(path, probs, label_names, threshold, top_k):
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["row", "predicted_labels", f"top_{top_k}"] + [f"p_{n}" for n in label_names])
        for i, p in enumerate(probs):
            predicted = " ".join(label_names[j] for j in np.nonzero(p >= threshold)[0])
            top = " ".join(label_names[j] for j in order[i])
            w.writerow([i, predicted, top] + [f"{v:.6f}" for v in p])


def main(argv):
    del argv
    try:
        trainer, params, splits, dataset, info = train.load_best(FLAGS.workdir)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    threshold = FLAGS.threshold
    if threshold is None:
        threshold = float(np.mean(info.get("best_threshold", [0.5])))
    names = list(dataset.label_names)
    if FLAGS.features:
        x = read_features(FLAGS.features, splits.train_x.shape[1])
        if splits.feature_mean is not None:
            x = (x - splits.feature_mean) / splits.feature_std
        probs = trainer.predict(params, x.astype(np.float32)).mean(0)
        print(f"Predicted {len(x)} rows of {FLAGS.features}.")
    else:
        x, y = getattr(splits, f"{FLAGS.split}_x"), getattr(splits, f"{FLAGS.split}_y")
        probs = trainer.predict(params, x).mean(0)
        scores = {
            "fixed": metrics.fixed_protocol(probs, y, threshold=float(trainer.config.threshold)),
            "val_tuned": metrics.multilabel_metrics(probs, y, threshold=threshold),
            "official": metrics.official_protocol(probs, y),
        }
        print(json.dumps({"split": FLAGS.split, "threshold": threshold, **scores}, indent=2))
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        write_csv(FLAGS.output, probs, names, threshold, FLAGS.top_k)
        print(f"Wrote {FLAGS.output}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
