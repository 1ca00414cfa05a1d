"""The Python API: `fit` a model on arrays, `Model` to predict and save, `load` it anywhere.

    import cgmvae_jax
    model = cgmvae_jax.fit(x, y, num_epochs=50)     # x [n, F] float (or scipy.sparse), y 0/1
    probs = model.predict_proba(x_new)              # [n, L], mean over seeds
    model.save("runs/mine"); model = cgmvae_jax.load("runs/mine")

`fit` runs the same training program as `launch/train.py` (`train.train_and_evaluate` on the
same arrays, config and seeds gives the same parameters). A `Model` is self-contained: the
best epoch's parameters of every seed, the standardisation statistics, label names, F, L, the
validation-tuned threshold and the resolved config (`cgmvae_jax.model_file`). `load` also reads
any training workdir.
"""

from __future__ import annotations

import csv
import difflib
import os
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np

from cgmvae_jax import checkpoint, config_lib, metrics, model_file, models, train, trainer
from cgmvae_jax import data as data_lib


class Model:
    """A trained C-GMVAE (or MLP baseline) model, ready to predict.

    Attributes:
      config: The resolved training config (ConfigDict).
      label_names: The L label names.
      num_features: F, the number of input features.
      num_labels: L.
      threshold: Default threshold of `predict`: the one tuned on validation macro-F1 for
        `predict_proba`'s output (the seed ensemble's when there are several seeds).
      results: The run's results.json content when the model was just trained (else None).
    """

    def __init__(
        self,
        *,
        config: ml_collections.ConfigDict,
        params: Any,
        description: dict,
        feature_mean: np.ndarray | None = None,
        feature_std: np.ndarray | None = None,
        results: dict | None = None,
    ):
        self.config = config
        self.params = jax.device_put(params)  # [S, ...] per leaf, on the device once
        self.description = description
        self.label_names = tuple(description["label_names"])
        self.num_features = int(description["num_features"])
        self.num_labels = int(description["num_labels"])
        self.threshold = float(description["threshold"])
        self.feature_mean, self.feature_std = feature_mean, feature_std
        self.results = results
        module = models.make_model(config, self.num_features, self.num_labels)
        self._predict = trainer.make_predict(module)

    def __repr__(self) -> str:
        return (
            f"Model(dataset={self.description.get('dataset')!r}, F={self.num_features}, "
            f"L={self.num_labels}, seeds={self.description.get('num_seeds')}, "
            f"threshold={self.threshold:g})"
        )

    def _prepare(self, x_rows) -> np.ndarray:
        x = data_lib.loader.dense_rows(x_rows, "x").astype(np.float32, copy=False)
        if self.feature_mean is not None:
            x = (x - self.feature_mean) / self.feature_std
        return x

    def predict_proba(self, x) -> np.ndarray:
        """Label probabilities [n, L] (float32) for features x [n, F], mean over the seeds.

        Args:
          x: Raw features as in training (numpy-like or scipy.sparse); they are standardised
            with the training statistics here.

        Raises:
          ValueError: x is not [n, F] for this model's F, or holds NaN/inf (naming the row
            and column).
        """
        x = x if hasattr(x, "tocsr") else np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; this model was trained on {self.num_features} "
                f"features, so x must be [n, {self.num_features}]."
            )
        _check_finite(x)
        probs = trainer.predict_in_batches(
            self._predict, self.params, x, int(self.config.eval_batch_size), self._prepare
        )
        return probs.mean(axis=0)

    def predict(self, x, threshold: float | None = None) -> np.ndarray:
        """0/1 labels [n, L] (uint8): `predict_proba(x) >= threshold` (default `self.threshold`)."""
        t = self.threshold if threshold is None else float(threshold)
        return (self.predict_proba(x) >= t).astype(np.uint8)

    def save(self, path: str) -> str:
        """Writes the model to the directory `path` (model.json + arrays.npz); returns it."""
        return model_file.write(
            path, self.description, self.params, self.feature_mean, self.feature_std
        )


def score_split(model: Model, split: str) -> tuple[dict, np.ndarray]:
    """Scores `model` on a split of its training data set under every threshold protocol.

    The data set is read again from the path in the model's config (the model record holds
    no data), split as in training; models trained with `fit` on arrays cannot be scored here.

    Returns:
      ({protocol: {metric: value}}, probabilities [N, L] of the split): `fixed` at the
      config's threshold, `val_tuned` and `val_per_metric` at the thresholds chosen on
      validation in training, `official` (the best threshold per metric on this split:
      optimistic).
    """
    if model.config.dataset == "arrays":
        raise ValueError("This model was trained on arrays (fit); score it with your own data.")
    dataset, splits = data_lib.load_from_config(model.config)
    index = getattr(splits, f"{split}_index")
    probs = model.predict_proba(dataset.x[index])
    labels = dataset.y[index]
    scores = {
        "fixed": metrics.fixed_protocol(probs, labels, float(model.config.threshold)),
        "val_tuned": metrics.multilabel_metrics(probs, labels, model.threshold),
        "val_per_metric": metrics.per_metric_protocol(
            probs, labels, model.description["per_metric_thresholds"]
        ),
        "official": metrics.official_protocol(probs, labels),
    }
    return scores, probs


def write_predictions(path: str, probs: np.ndarray, label_names, threshold: float, top_k: int):
    """A CSV of one row per example: predicted labels, the top-k labels, every probability."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["row", "predicted_labels", f"top_{top_k}"] + [f"p_{n}" for n in label_names])
        for i, p in enumerate(probs):
            predicted = " ".join(label_names[j] for j in np.nonzero(p >= threshold)[0])
            top = " ".join(label_names[j] for j in order[i])
            w.writerow([i, predicted, top] + [f"{v:.6f}" for v in p])


def _check_finite(x) -> None:
    """ValueError naming the first NaN/inf entry of x (dense or scipy.sparse)."""
    if hasattr(x, "tocoo"):
        coo = x.tocoo()
        bad = np.flatnonzero(~np.isfinite(coo.data))
        if bad.size:
            i = bad[0]
            raise ValueError(
                f"x: value {coo.data[i]} at row {coo.row[i]}, feature column {coo.col[i]} "
                f"({bad.size} non-finite values in total); features must be finite."
            )
        return
    data_lib.validation.check_features(x, source="x")


def load(path: str) -> Model:
    """Loads a model saved with `Model.save`, or the model of a training workdir.

    A workdir finished by `launch/train.py` (or `fit(..., workdir=...)`) holds its model in
    `WORKDIR/model/`; neither the training data nor the working directory is needed.

    Raises:
      FileNotFoundError: `path` does not exist.
      model_file.ModelFileError: it holds no finished model, or a damaged one.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist.")
    if model_file.record_dir(path) is None and os.path.isfile(os.path.join(path, "config.json")):
        raise model_file.ModelFileError(
            f"{path} is a training workdir without a finished model (no model/model.json): "
            "training has not ended yet, was stopped, or ran with an older cgmvae_jax. Run "
            "the same launch/train.py command again to finish it."
        )
    description, params, mean, std = model_file.read(path)
    config = config_lib.from_dict(description["config"])
    return Model(
        config=config, params=params, description=description, feature_mean=mean, feature_std=std
    )


def fit(
    x,
    y,
    *,
    config: ml_collections.ConfigDict | None = None,
    x_val=None,
    y_val=None,
    label_names=None,
    workdir: str | None = None,
    **overrides,
) -> Model:
    """Trains C-GMVAE on arrays and returns the model of the best validation epoch.

    Args:
      x: Features [n, F], float (numpy-like, or a scipy.sparse matrix for bag-of-words data).
      y: Labels [n, L], 0/1.
      config: Training config (default `config_lib.base_config()`); not modified.
      x_val, y_val: Validation rows. Without them, validation (and test) rows are carved from
        x as `data.make_splits` does for a data set with no predefined split; with them, a
        test part for the results is carved from x.
      label_names: L label names (default `label_0`, ...).
      workdir: Keep the run there (resumable, like `launch/train.py --workdir`). None trains
        in a temporary directory and keeps the model in memory.
      **overrides: Config fields, e.g. `num_epochs=50, num_seeds=3`.

    Returns:
      The trained Model; `model.results` holds the run's results.json content.

    Raises:
      ValueError: bad shapes, NaN/inf features or labels other than 0/1 (naming the argument,
        the row and the column), or an invalid config field.
    """
    config = (config or config_lib.base_config()).copy_and_resolve_references()
    config.dataset = "arrays"
    for field, value in overrides.items():
        if field not in config:
            close = difflib.get_close_matches(field, list(config.keys()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"fit() got an unknown config field {field!r}{hint} The fields are those of "
                "cgmvae_jax.config_lib.base_config()."
            )
        config[field] = value
    config_lib.validate(config)
    dataset = data_lib.from_arrays(x, y, x_val=x_val, y_val=y_val, label_names=label_names)
    if workdir is not None:
        return _fit_in(config, dataset, workdir)
    with tempfile.TemporaryDirectory(prefix="cgmvae_fit_") as tmp:
        return _fit_in(config, dataset, os.path.join(tmp, "run"))


def _fit_in(config, dataset: data_lib.Dataset, workdir: str) -> Model:
    with checkpoint.quiet_orbax():
        results = train.train_and_evaluate(config, workdir, dataset=dataset)
    model = load(workdir)
    model.results = results
    return model
