"""The project's npz format: arrays `X` [n, F], `Y` [n, L] (0/1), optional `label_names`,
`feature_names` and `split` (0 train, 1 test, 2 validation, -1 unused).

It is the layout of the shared data sets and of `dataset.save_npz`. Names must be str arrays:
the file is opened without pickles.
"""

import zipfile
import zlib

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import reading

EXTENSIONS = (".npz",)
_ARRAYS = ("X", "Y", "label_names", "feature_names", "split")


def _load_arrays(path: str) -> tuple[dict, list[str]]:
    """(the arrays of `_ARRAYS` present, all array names) of an npz file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            return {k: z[k] for k in _ARRAYS if k in names}, names
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
        hint = ""
        if "allow_pickle" in str(e):
            hint = " It holds object arrays; save names as str arrays (np.asarray(n, dtype=str))."
        raise ValueError(
            f"{path}: cannot read the npz file ({type(e).__name__}: {e}).{hint} The file is "
            "truncated, corrupt or not an npz. Fix: copy or convert it again "
            "(python launch/prepare_data.py --input=... --output=...)."
        ) from None


def read(
    path: str, options: reading.ReadOptions, *, name: str | None = None
) -> dataset_lib.Dataset:
    """Reads the project's npz; `options.num_labels`, when set, must match Y.

    `name` names the data set (default: the file name without `.npz`).
    """
    arrays, names = _load_arrays(path)
    for key in ("X", "Y"):
        if key not in arrays:
            raise ValueError(
                f"{path}: the npz has no array {key!r} (it has: {', '.join(names) or 'none'}). "
                "Fix: a data set npz needs X [n, F] features and Y [n, L] 0/1 labels "
                "(np.savez(path, X=x, Y=y)), or convert with python launch/prepare_data.py."
            )
    x, y = arrays["X"], arrays["Y"]
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"{path}: X must be 2-D [n, F] and Y 2-D [n, L]; got X {x.shape}, Y {y.shape}. "
            "Fix: reshape (a single label vector becomes Y[:, None])."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{path}: X has {x.shape[0]} rows but Y has {y.shape[0]} rows. Fix: features and "
            "labels must describe the same examples, one row each."
        )
    if options.num_labels and options.num_labels != y.shape[1]:
        raise ValueError(
            f"{path}: num_labels={options.num_labels} was given but Y has {y.shape[1]} label "
            "columns. Fix: drop num_labels (an npz knows its labels) or use the matching file."
        )
    return reading.checked_dataset(
        x,
        y,
        source=path,
        label_names=arrays.get("label_names"),
        feature_names=arrays.get("feature_names"),
        split=arrays.get("split"),
        name=name,
    )
