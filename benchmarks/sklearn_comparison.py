r"""CGMVAEClassifier next to binary relevance in scikit-learn's cross_validate, on yeast.

  python benchmarks/sklearn_comparison.py --data_dir=../shared/datasets

Both estimators go through the same `cross_validate` (KFold, 3 folds, shuffled with seed 0) on
all 2,417 rows of yeast and are scored with macro-F1 (`f1_score(average="macro")`) of their
`predict`: CGMVAEClassifier with yeast's paper settings (configs/yeast.py: Table 7, 100
epochs; inside each training fold it carves validation rows to pick its best epoch and
threshold), and `OneVsRestClassifier(LogisticRegression)` on standardised features. Prints a
Markdown table and writes it to --out (default benchmarks/results/sklearn_yeast.md) with the
date and machine.
"""

import datetime
import os
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Folder with yeast.npz (default: $CGMVAE_DATA).")
flags.DEFINE_integer("folds", 3, "Cross-validation folds.")
flags.DEFINE_integer("num_epochs", 100, "C-GMVAE epochs per fold.")
flags.DEFINE_string("out", "benchmarks/results/sklearn_yeast.md", "Markdown output ('' = none).")


def estimators(num_epochs: int) -> dict:
    """name -> scikit-learn estimator."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import cgmvae_jax
    from cgmvae_jax import config_lib

    fields = dict(config_lib.TABLE7["yeast"], num_epochs=num_epochs, progress=False)
    return {
        "CGMVAEClassifier (configs/yeast.py)": cgmvae_jax.CGMVAEClassifier(**fields),
        "OneVsRest(LogisticRegression), standardised": make_pipeline(
            StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=2000))
        ),
    }


def main(argv):
    del argv
    from sklearn.model_selection import KFold, cross_validate

    from benchmarks import hardware
    from cgmvae_jax import data

    ds = data.load_dataset("yeast", FLAGS.data_dir)
    cv = KFold(FLAGS.folds, shuffle=True, random_state=0)
    rows = []
    for name, estimator in estimators(FLAGS.num_epochs).items():
        start = time.perf_counter()
        scores = cross_validate(estimator, ds.x, ds.y, cv=cv, scoring="f1_macro")["test_score"]
        rows.append((name, scores, time.perf_counter() - start))
        print(f"{name}: macro-F1 {scores.mean():.4f} ± {scores.std():.4f} {np.round(scores, 4)}")
    machine = hardware.machine_info()
    lines = [
        "# C-GMVAE and binary relevance in scikit-learn's cross_validate (yeast)",
        "",
        f"`python benchmarks/sklearn_comparison.py` — {datetime.date.today()}, "
        f"{machine.get('cpu_model', 'unknown CPU')}, {machine.get('available_cores', '?')} cores. "
        f"KFold({FLAGS.folds}, shuffle, seed 0) over all {len(ds.x)} rows; macro-F1 of "
        f"`predict`; C-GMVAE {FLAGS.num_epochs} epochs per fold.",
        "",
        "| estimator | macro-F1 (mean ± std over folds) | per fold | seconds |",
        "| --- | --- | --- | --- |",
    ]
    for name, scores, seconds in rows:
        per_fold = " / ".join(f"{s:.4f}" for s in scores)
        lines.append(
            f"| {name} | {scores.mean():.4f} ± {scores.std():.4f} | {per_fold} | {seconds:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    app.run(main)
