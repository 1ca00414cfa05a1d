"""The self-contained model record: everything prediction needs, in two plain files.

A model directory holds

    model.json   format and version, the resolved config, F, L, label names, the thresholds
                 chosen on validation, the best epochs, and the SHA-256 of arrays.npz
    arrays.npz   "params/<path>" [S, ...] parameters of the best epoch of every seed, and
                 "feature_mean" / "feature_std" [F] when the features were standardised

Every training workdir gets one in `WORKDIR/model/` when training ends; `cgmvae_jax.Model.save`
writes the same. Nothing here unpickles: arrays are read with `allow_pickle=False` and the
description is JSON, so loading a model someone sent you runs no code from it. A truncated or
garbled record fails with one `ModelFileError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from typing import Any

import flax
import numpy as np
from flax import traverse_util

FORMAT = "cgmvae_jax.model"
VERSION = 1
_JSON, _ARRAYS = "model.json", "arrays.npz"
_PARAMS = "params/"


class ModelFileError(ValueError):
    """A model record is missing, truncated, garbled or of an unknown format."""


def describe(
    results: dict, *, label_names, num_features: int, num_labels: int, config: dict
) -> dict:
    """The description of a trained model, from its run's results.json content.

    The default threshold of `predict` is the validation-tuned threshold of what
    `predict_proba` returns: the seed ensemble's when there are several seeds; likewise the
    per-metric thresholds of the `val_per_metric` protocol.
    """
    ensemble = results.get("ensemble")
    threshold = ensemble["val_tuned"] if ensemble else results["val_tuned_threshold"]
    per_metric = ensemble["val_per_metric"] if ensemble else results["val_per_metric_thresholds"]
    return {
        "dataset": results["dataset"],
        "num_features": int(num_features),
        "num_labels": int(num_labels),
        "label_names": [str(n) for n in label_names],
        "num_seeds": len(results["best_epochs"]),
        "best_epochs": results["best_epochs"],
        "threshold": float(threshold),
        "per_metric_thresholds": dict(per_metric),
        "thresholds_per_seed": results["thresholds_per_seed"],
        "config": config,
    }


def record_dir(path: str) -> str | None:
    """The model record at `path`: a model directory, or a workdir's `model/`; else None."""
    for candidate in (path, os.path.join(path, "model")):
        if os.path.isfile(os.path.join(candidate, _JSON)):
            return candidate
    return None


def write(path: str, description: dict, params: Any, feature_mean, feature_std) -> str:
    """Writes a model record to the directory `path`; returns `path`.

    The record is written in full to a temporary directory beside `path`, then renamed into
    place (an existing record is renamed away first), so `path` never holds a partial record;
    a reader between the two renames finds no record and `read` says so.

    Args:
      path: The model directory (created; an existing record there is replaced).
      description: JSON-able fields (config, num_features, num_labels, label_names, ...).
      params: Parameter pytree with a leading seed axis, host or device arrays.
      feature_mean: [F] standardisation mean, or None.
      feature_std: [F] standardisation scale, or None.
    """
    arrays = {
        _PARAMS + key: np.asarray(value)
        for key, value in traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/").items()
    }
    if feature_mean is not None:
        arrays["feature_mean"] = np.asarray(feature_mean, np.float32)
        arrays["feature_std"] = np.asarray(feature_std, np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    record = {
        "format": FORMAT,
        "version": VERSION,
        **description,
        "arrays_sha256": hashlib.sha256(data).hexdigest(),
    }
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".model-tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a model dir is not
    try:
        with open(os.path.join(tmp, _ARRAYS), "wb") as f:
            f.write(data)
        with open(os.path.join(tmp, _JSON), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        if os.path.isdir(path):
            _replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_dir(new: str, path: str) -> None:
    """Swaps the directory `path` for `new` (the old one is removed after the rename)."""
    old = f"{path}.old-{os.getpid()}"
    os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def read(path: str) -> tuple[dict, dict, np.ndarray | None, np.ndarray | None]:
    """Reads the record at `path` (a model directory or a workdir).

    Returns:
      (description, params as a nested dict of [S, ...] arrays, feature_mean or None,
      feature_std or None).

    Raises:
      ModelFileError: no record, or one that is truncated, garbled or of another format.
    """
    directory = record_dir(path)
    if directory is None:
        raise ModelFileError(f"{path} holds no model (no {_JSON} in it or in {path}/model/).")
    json_path, arrays_path = os.path.join(directory, _JSON), os.path.join(directory, _ARRAYS)
    try:
        with open(json_path, encoding="utf-8") as f:
            description = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{json_path} cannot be read as a model description: {e}") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ModelFileError(f"{json_path} is not a cgmvae_jax model description.")
    if description.get("version") != VERSION:
        raise ModelFileError(
            f"{json_path} has model format version {description.get('version')!r}; this "
            f"cgmvae_jax reads version {VERSION}."
        )
    try:
        with open(arrays_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelFileError(f"{arrays_path} cannot be read: {e.strerror or e}") from None
    if hashlib.sha256(data).hexdigest() != description.get("arrays_sha256"):
        raise ModelFileError(
            f"{arrays_path} does not match the checksum in {json_path}: the file is truncated "
            "or garbled. Copy the model directory again."
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        flat = {k[len(_PARAMS) :]: arrays[k] for k in arrays.files if k.startswith(_PARAMS)}
        mean = arrays["feature_mean"] if "feature_mean" in arrays.files else None
        std = arrays["feature_std"] if "feature_std" in arrays.files else None
    params = traverse_util.unflatten_dict(flat, sep="/")
    return description, params, mean, std
