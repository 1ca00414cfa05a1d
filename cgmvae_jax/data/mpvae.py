"""The MPVAE / C-GMVAE `.npy` layout.

A directory with `NAME_data.npy` (rows = [meta (meta_offset columns) | labels (L) | features])
and `NAME_train_idx.npy`, `NAME_test_idx.npy`, optionally `NAME_val_idx.npy` (0-based row
numbers). The index files give the split as is; rows in none of them get split -1. L is taken
from, in order: `ReadOptions.num_labels`; `NAME_labels.txt` or `label_names.txt` (one label name
per line); the paper's label count for a known NAME (`KNOWN_LABEL_COUNTS`). Otherwise loading
fails and says so.
"""

import dataclasses
import os

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import reading, validation

EXTENSIONS = (".npy",)
DATA_SUFFIX = "_data.npy"

# Label counts of the paper's data sets (C-GMVAE / MPVAE papers, Mulan), used when neither
# `num_labels` nor a label-names file gives L.
KNOWN_LABEL_COUNTS = {
    "bibtex": 159,
    "bookmarks": 208,
    "delicious": 983,
    "ebird": 100,
    "emotions": 6,
    "enron": 53,
    "medical": 45,
    "mirflickr": 38,
    "nus_vec": 81,
    "reuters": 90,
    "scene": 6,
    "sider": 27,
    "yeast": 14,
}


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(
            f"{path}: cannot read the .npy file ({type(e).__name__}: {e}). The file is truncated "
            "or corrupt (or holds Python objects). Fix: download or unpack it again."
        ) from None


def _locate(path: str, name: str | None) -> tuple[str, str]:
    """(directory, NAME) of the data file that `path` (a directory or NAME_data.npy) means."""
    if not os.path.isdir(path):
        base = os.path.basename(path)
        if not base.endswith(DATA_SUFFIX):
            raise ValueError(
                f"{path}: an MPVAE data file must be named NAME_data.npy (with "
                "NAME_train_idx.npy, NAME_test_idx.npy beside it)."
            )
        return os.path.dirname(path) or ".", base[: -len(DATA_SUFFIX)]
    candidates = sorted(e[: -len(DATA_SUFFIX)] for e in os.listdir(path) if e.endswith(DATA_SUFFIX))
    base = os.path.basename(os.path.normpath(path))
    if name and name in candidates:
        return path, name
    if len(candidates) == 1:
        return path, candidates[0]
    if base in candidates:
        return path, base
    if not candidates:
        raise ValueError(
            f"{path}: no NAME_data.npy in this directory, so it is not in the MPVAE layout."
        )
    listing = ", ".join(c + DATA_SUFFIX for c in candidates)
    raise ValueError(
        f"{path}: several MPVAE data files ({listing}); pass the one to load as the path."
    )


def _index_paths(directory: str, stem: str, data_path: str) -> dict[int, str]:
    """Split code -> index file; raises when the train or test file is missing."""
    paths = {
        dataset_lib.TRAIN: os.path.join(directory, f"{stem}_train_idx.npy"),
        dataset_lib.VALIDATION: os.path.join(directory, f"{stem}_val_idx.npy"),
        dataset_lib.TEST: os.path.join(directory, f"{stem}_test_idx.npy"),
    }
    missing = [p for c, p in paths.items() if c != dataset_lib.VALIDATION and not os.path.exists(p)]
    if missing:
        raise ValueError(
            f"{data_path}: missing index file(s) {', '.join(missing)}. Fix: the MPVAE layout needs "
            f"{stem}_train_idx.npy and {stem}_test_idx.npy ({stem}_val_idx.npy is optional: "
            "without it validation is carved from train); or convert the data with "
            "python launch/prepare_data.py."
        )
    return paths


def _label_names(directory: str, stem: str, num_labels: int):
    """Label names from NAME_labels.txt or label_names.txt (one per line), or None."""
    for candidate in (f"{stem}_labels.txt", "label_names.txt"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                names = tuple(line.strip() for line in f if line.strip())
            if num_labels and num_labels != len(names):
                raise ValueError(
                    f"{path} lists {len(names)} labels but num_labels={num_labels}. Fix: make "
                    "them agree (or drop num_labels / the names file)."
                )
            validation.check_names(names, expected=len(names), kind="label", source=path)
            return names
    return None


def _label_count(stem, data_path, names, width, options) -> int:
    """L from num_labels, the names file or KNOWN_LABEL_COUNTS (module docstring)."""
    meta_offset = options.meta_offset
    if options.num_labels:
        count = options.num_labels
    elif names is not None:
        count = len(names)
    elif stem in KNOWN_LABEL_COUNTS:
        count = KNOWN_LABEL_COUNTS[stem]
    else:
        directory = os.path.dirname(data_path)
        raise ValueError(
            f"{data_path}: cannot tell how many of the {width - meta_offset} columns after "
            f"meta_offset={meta_offset} are labels. Fix: pass num_labels=L (config: "
            f"--config.num_labels_arff=L) or list the label names, one per line, in "
            f"{os.path.join(directory, stem + '_labels.txt')}."
        )
    if count <= 0 or meta_offset + count >= width:
        raise ValueError(
            f"{data_path}: rows have {width} columns, too few for meta_offset={meta_offset} + "
            f"{count} labels + at least one feature. Fix: check num_labels and meta_offset."
        )
    return count


def read(
    path: str, options: reading.ReadOptions, *, name: str | None = None
) -> dataset_lib.Dataset:
    """Reads the MPVAE layout: `path` is the directory or its `NAME_data.npy`.

    `name` picks NAME when the directory holds several data files; `options.num_labels` and
    `options.meta_offset` describe the columns (see the module docstring).
    """
    directory, stem = _locate(path, name)
    data_path = os.path.join(directory, f"{stem}{DATA_SUFFIX}")
    index_paths = _index_paths(directory, stem, data_path)
    data = _load_npy(data_path)
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
        raise ValueError(
            f"{data_path}: expected a 2-D numeric array [n, meta_offset + L + F], got "
            f"{data.dtype} of shape {data.shape}."
        )
    n, width = data.shape
    names = _label_names(directory, stem, options.num_labels)
    count = _label_count(stem, data_path, names, width, options)
    first_feature = options.meta_offset + count
    index_arrays = [(code, p, _load_npy(p)) for code, p in index_paths.items() if os.path.exists(p)]
    split = validation.split_from_index_files(index_arrays, n, data_source=data_path)
    ds = reading.checked_dataset(
        data[:, first_feature:],
        data[:, options.meta_offset : first_feature],
        source=data_path,
        label_names=names,
        split=split,
        name=stem,
        label_columns=np.arange(options.meta_offset, first_feature),
        feature_columns=np.arange(first_feature, width),
    )
    # Messages name the data file; the data set's source is the directory (data + index files).
    return dataclasses.replace(ds, source=directory)
