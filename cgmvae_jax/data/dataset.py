"""The in-memory data set, its errors and warnings, a summary table and the npz writer.

A `Dataset` holds the whole data set on the host as numpy arrays:

    x      float32 [n, F]   features, exactly as read (no scaling)
    y      uint8   [n, L]   0/1 labels
    split  int8    [n]      0 train, 1 test, 2 validation, -1 unused (in no predefined split);
                            None when the source has no predefined split

This module imports numpy and the standard library only (the data layer runs on the host and
never imports jax).
"""

import dataclasses
import os
import tempfile

import numpy as np

TRAIN, TEST, VALIDATION, UNUSED = 0, 1, 2, -1
SPLIT_NAMES = {TRAIN: "train", TEST: "test", VALIDATION: "validation", UNUSED: "unused"}


class DatasetNotFoundError(FileNotFoundError):
    """A data set name or path could not be found.

    The message lists the paths that were looked for, where to get the data set and the demo
    command that runs without any data. `searched` holds those paths.
    """

    def __init__(self, message: str, searched: tuple[str, ...] = ()):
        super().__init__(message)
        self.searched = tuple(searched)

    def __str__(self) -> str:
        return self.args[0]


class DataWarning(UserWarning):
    """Base class of the data-quality warnings (the data are kept unchanged)."""


class NoLabelRowsWarning(DataWarning):
    """Some rows have no positive label."""


class ConstantFeaturesWarning(DataWarning):
    """Some feature columns hold one value in every row."""


class DuplicateRowsWarning(DataWarning):
    """Some rows repeat an earlier row exactly (features and labels)."""


class UnassignedRowsWarning(DataWarning):
    """Some rows belong to no predefined split (MPVAE rows listed in no index file)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A multi-label data set held in host memory.

    Attributes:
      x: float32 [n, F] features, exactly as read from the source.
      y: uint8 [n, L] labels in {0, 1}.
      label_names: L label names (unique).
      feature_names: F feature names.
      split: int8 [n] predefined split (0 train, 1 test, 2 validation, -1 in no split), or None
        when the source has no predefined split.
      name: short name of the data set (e.g. "yeast").
      source: the file or directory it was read from ("synthetic" for generated data).
    """

    x: np.ndarray
    y: np.ndarray
    label_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    split: np.ndarray | None
    name: str
    source: str

    def __post_init__(self):
        where = self.source or self.name
        if not isinstance(self.x, np.ndarray) or self.x.dtype != np.float32 or self.x.ndim != 2:
            raise ValueError(
                f"{where}: Dataset.x must be a float32 [n, F] array, got {_desc(self.x)}"
            )
        if not isinstance(self.y, np.ndarray) or self.y.dtype != np.uint8 or self.y.ndim != 2:
            raise ValueError(
                f"{where}: Dataset.y must be a uint8 [n, L] array, got {_desc(self.y)}"
            )
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"{where}: features have {self.x.shape[0]} rows but labels have {self.y.shape[0]}"
            )
        if len(self.label_names) != self.y.shape[1]:
            raise ValueError(
                f"{where}: {len(self.label_names)} label names for {self.y.shape[1]} label columns"
            )
        if len(self.feature_names) != self.x.shape[1]:
            raise ValueError(
                f"{where}: {len(self.feature_names)} feature names for {self.x.shape[1]} "
                "feature columns"
            )
        if self.split is not None:
            s = self.split
            if not isinstance(s, np.ndarray) or s.dtype != np.int8 or s.shape != (self.x.shape[0],):
                raise ValueError(
                    f"{where}: Dataset.split must be an int8 [n] array or None, got {_desc(s)}"
                )

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_labels(self) -> int:
        return int(self.y.shape[1])

    def __repr__(self) -> str:
        split = "none" if self.split is None else split_counts_text(self.split)
        return (
            f"Dataset(name={self.name!r}, n={self.num_examples}, F={self.num_features}, "
            f"L={self.num_labels}, split={split}, source={self.source!r})"
        )


def _desc(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


def split_counts_text(split: np.ndarray) -> str:
    """'train 1500 / test 917' style text for a split array."""
    parts = []
    for code in (TRAIN, VALIDATION, TEST, UNUSED):
        count = int(np.sum(split == code))
        if count:
            parts.append(f"{SPLIT_NAMES[code]} {count}")
    return " / ".join(parts) if parts else "empty"


def summarize(dataset: Dataset) -> dict:
    """Summary statistics of a data set.

    Returns:
      dict with name, n, F, L, cardinality (mean positive labels per row), density
      (cardinality / L), rows_without_labels, constant_features and split (text).
    """
    n, num_labels = dataset.y.shape
    positives = dataset.y.sum(axis=1, dtype=np.int64)  # [n]
    cardinality = float(positives.mean()) if n else 0.0
    if n:
        constant = int(np.sum(dataset.x.max(axis=0) == dataset.x.min(axis=0)))
    else:
        constant = 0
    return {
        "name": dataset.name,
        "n": int(n),
        "F": dataset.num_features,
        "L": int(num_labels),
        "cardinality": cardinality,
        "density": cardinality / num_labels if num_labels else 0.0,
        "rows_without_labels": int(np.sum(positives == 0)),
        "constant_features": constant,
        "split": "none" if dataset.split is None else split_counts_text(dataset.split),
    }


def summary_table(datasets) -> str:
    """A Markdown table (one row per data set) of `summarize`."""
    header = (
        "| name | n | F | L | label cardinality | rows without labels | constant features "
        "| split |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    rows = []
    for ds in datasets:
        s = summarize(ds)
        rows.append(
            f"| {s['name']} | {s['n']} | {s['F']} | {s['L']} | {s['cardinality']:.3f} | "
            f"{s['rows_without_labels']} | {s['constant_features']} | {s['split']} |"
        )
    return "\n".join([header, *rows])


def save_npz(dataset: Dataset, path: str) -> str:
    """Writes `dataset` as the project's npz (X, Y, label_names, feature_names[, split]).

    The file is written to a temporary name in the same directory and renamed, so `path` is
    either the old file or the complete new one. Returns the path written.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    arrays = {
        "X": dataset.x,
        "Y": dataset.y,
        "label_names": np.asarray(dataset.label_names, dtype=str),
        "feature_names": np.asarray(dataset.feature_names, dtype=str),
    }
    if dataset.split is not None:
        arrays["split"] = dataset.split
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
