"""Checks that turn bad input into a precise `ValueError` and questionable input into warnings.

Every error names the file, the row and/or column (0-based positions in the file's data, so
row 0 is the first example) and says how to fix the problem. Nothing is ever repaired
silently: errors stop loading; warnings (`dataset.DataWarning` subclasses) keep the data
unchanged.
"""

import hashlib
import warnings

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib

_MAX_LISTED = 5


def _name(names, j: int, kind: str) -> str:
    if names is not None and 0 <= j < len(names):
        return f" ({kind} {names[j]!r})"
    return ""


def scalar_text(value) -> str:
    """repr of a numpy or Python scalar without the numpy type wrapper."""
    return repr(value.item() if hasattr(value, "item") else value)


def _file_col(file_columns, c: int) -> str:
    if file_columns is None:
        return ""
    return f" (file column {int(file_columns[c])})"


def check_labels(y, *, source: str, label_names=None, file_columns=None) -> np.ndarray:
    """Checks that every label is 0 or 1 and returns the labels as uint8.

    Args:
      y: [n, L] numeric labels.
      source: file named in the message.
      label_names: optional names, quoted in the message.
      file_columns: optional [L] column of each label in the file (e.g. after the MPVAE
        meta_offset, or the label's position among the ARFF attributes), quoted in the message.

    Raises:
      ValueError: a label that is not 0 or 1 (NaN, 2, -1, 0.5, ...), naming the first one.
    """
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"{source}: labels must be a 2-D [n, L] array, got shape {y.shape}")
    if y.dtype == np.uint8 or y.dtype == np.bool_:
        bad = y > 1
    elif np.issubdtype(y.dtype, np.number):
        bad = (y != 0) & (y != 1)
    else:
        raise ValueError(
            f"{source}: labels have dtype {y.dtype}; they must be numbers 0 or 1. Fix: convert "
            "the label columns to 0/1 integers before loading."
        )
    if np.any(bad):
        rows, cols = np.nonzero(bad)
        r, c = int(rows[0]), int(cols[0])
        col_text = f"label column {c}" + _file_col(file_columns, c)
        raise ValueError(
            f"{source}: label value {scalar_text(y[r, c])} at row {r}, {col_text}"
            f"{_name(label_names, c, 'label')}; labels must be 0 or 1 ({rows.size} bad "
            "values in total). Fix: binarise the labels (e.g. y > 0) before saving, or check "
            "which columns are labels (num_labels / meta_offset / the XML label header)."
        )
    return y.astype(np.uint8)


def check_features(x, *, source: str, feature_names=None, file_columns=None) -> np.ndarray:
    """Checks that every feature is a finite number and returns the features as float32.

    Args:
      x: [n, F] numeric features.
      source: file named in the message.
      feature_names: optional names, quoted in the message.
      file_columns: optional [F] column of each feature in the file, quoted in the message.

    Raises:
      ValueError: NaN, +-inf, a missing value or a value outside the float32 range, naming
        the first one.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{source}: features must be a 2-D [n, F] array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(
            f"{source}: features have dtype {x.dtype}; they must be numbers. Fix: encode "
            "text or categorical features as numbers before loading."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32, copy=False)
    finite = np.isfinite(x32)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        r, c = int(rows[0]), int(cols[0])
        value = x[r, c]
        what = "a missing value or NaN" if np.isnan(value) else f"value {scalar_text(value)}"
        if np.isfinite(value):
            what += " (outside the float32 range)"
        col_text = f"feature column {c}" + _file_col(file_columns, c)
        raise ValueError(
            f"{source}: {what} at row {r}, {col_text}{_name(feature_names, c, 'feature')} "
            f"({rows.size} non-finite values in total); features must be finite. Fix: impute "
            "or drop those rows/columns before loading (nothing is repaired automatically)."
        )
    return x32


def check_names(names, *, expected: int, kind: str, source: str) -> tuple[str, ...]:
    """Checks the number of names and, for labels, that they are unique."""
    names = tuple(str(n) for n in names)
    if len(names) != expected:
        raise ValueError(
            f"{source}: {len(names)} {kind} names for {expected} {kind} columns. Fix: give one "
            f"name per {kind} column."
        )
    if kind == "label":
        first = {}
        for j, name in enumerate(names):
            if name in first:
                raise ValueError(
                    f"{source}: duplicate label name {name!r} at label columns {first[name]} "
                    f"and {j}; label names must be unique. Fix: rename one of them (or check "
                    "that the label header lists each label once)."
                )
            first[name] = j
    return names


def check_split(split, n: int, *, source: str) -> np.ndarray:
    """Checks a predefined split array (values -1, 0, 1, 2) and returns it as int8."""
    split = np.asarray(split)
    if split.shape != (n,):
        raise ValueError(
            f"{source}: 'split' has shape {split.shape} but the data have {n} rows. Fix: one "
            "split code per row (0 train, 1 test, 2 validation)."
        )
    if not np.issubdtype(split.dtype, np.integer):
        raise ValueError(f"{source}: 'split' has dtype {split.dtype}; it must hold integers.")
    bad = ~np.isin(split, (-1, 0, 1, 2))
    if np.any(bad):
        r = int(np.nonzero(bad)[0][0])
        raise ValueError(
            f"{source}: split code {int(split[r])} at row {r}; codes are 0 train, 1 test, "
            "2 validation, -1 unused. Fix: recode the split array."
        )
    if not np.any(split == 0):
        raise ValueError(
            f"{source}: the predefined split has no training rows (split == 0). Fix: mark the "
            "training rows with 0, or drop the 'split' array to get a random split."
        )
    return split.astype(np.int8)


def split_from_index_files(index_arrays, n: int, *, data_source: str) -> np.ndarray:
    """Builds a split array from index files (MPVAE layout) after checking them.

    Args:
      index_arrays: sequence of (split code, path, index array); code 0 train, 1 test,
        2 validation.
      n: number of rows of the data file.
      data_source: the data file, named in the messages.

    Raises:
      ValueError: an index file that is not 1-D integers, is empty, holds an index outside
        [0, n), lists a row twice, or shares a row with another index file.
    """
    split = np.full(n, dataset_lib.UNUSED, dtype=np.int8)
    owner = {}
    for code, path, idx in index_arrays:
        idx = np.asarray(idx)
        if idx.ndim != 1:
            raise ValueError(
                f"{path}: an index file must hold a 1-D array of row numbers, got shape "
                f"{idx.shape}. Fix: save it with np.save(path, np.asarray(indices).ravel())."
            )
        if idx.size == 0:
            raise ValueError(
                f"{path}: the {dataset_lib.SPLIT_NAMES[code]} split is empty (the index file "
                "holds no rows). Fix: list at least one row, or delete the file to carve the "
                "split from the training rows."
            )
        if not np.issubdtype(idx.dtype, np.integer):
            if np.issubdtype(idx.dtype, np.floating) and np.all(np.isfinite(idx)):
                fractional = idx != np.round(idx)
                if np.any(fractional):
                    p = int(np.nonzero(fractional)[0][0])
                    raise ValueError(
                        f"{path}: index {scalar_text(idx[p])} at position {p} is not a whole "
                        "number. Fix: index files hold integer row numbers."
                    )
                idx = idx.astype(np.int64)
            else:
                raise ValueError(f"{path}: index dtype {idx.dtype}; row numbers must be integers.")
        out = (idx < 0) | (idx >= n)
        if np.any(out):
            p = int(np.nonzero(out)[0][0])
            raise ValueError(
                f"{path}: index {int(idx[p])} at position {p} is out of range for "
                f"{data_source} with {n} rows (valid: 0..{n - 1}; {int(out.sum())} bad indices "
                "in total). Fix: the index files must belong to this data file (0-based rows)."
            )
        uniq, counts = np.unique(idx, return_counts=True)
        if np.any(counts > 1):
            row = int(uniq[counts > 1][0])
            positions = np.nonzero(idx == row)[0][:2].tolist()
            raise ValueError(
                f"{path}: row {row} is listed twice (positions {positions[0]} and "
                f"{positions[1]}). Fix: each row may appear once per index file."
            )
        taken = split[idx] != dataset_lib.UNUSED
        if np.any(taken):
            shared = idx[taken]
            other_code = int(split[shared[0]])
            raise ValueError(
                f"{path} and {owner[other_code]} overlap: {shared.size} rows are in both the "
                f"{dataset_lib.SPLIT_NAMES[code]} and the {dataset_lib.SPLIT_NAMES[other_code]} "
                f"split (first: row {int(shared[0])}). Fix: the splits must be disjoint."
            )
        split[idx] = code
        owner[code] = path
    return split


def validate(ds: "dataset_lib.Dataset") -> None:
    """Checks the values of a constructed Dataset (labels 0/1, finite features, names, split)."""
    check_labels(ds.y, source=ds.source, label_names=ds.label_names)
    check_features(ds.x, source=ds.source, feature_names=ds.feature_names)
    check_names(ds.label_names, expected=ds.num_labels, kind="label", source=ds.source)
    if ds.split is not None:
        check_split(ds.split, ds.num_examples, source=ds.source)


def _list(items) -> str:
    items = list(items)
    text = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return text + (", ..." if len(items) > _MAX_LISTED else "")


def quality_warnings(ds: "dataset_lib.Dataset") -> None:
    """Warns about rows without labels, constant features, duplicate rows and unused rows.

    The data are kept as they are; each warning is a `dataset.DataWarning` subclass so that
    callers can filter or escalate them (`warnings.simplefilter("error", DataWarning)`).
    """
    n = ds.num_examples
    if n == 0:
        return
    empty = np.nonzero(ds.y.max(axis=1) == 0)[0] if ds.num_labels else np.arange(n)
    if empty.size:
        warnings.warn(
            f"{ds.source}: {empty.size} of {n} rows have no positive label (rows "
            f"{_list(empty.tolist())}). They are kept; check the label columns if this is "
            "unexpected.",
            dataset_lib.NoLabelRowsWarning,
            stacklevel=3,
        )
    constant = np.nonzero(ds.x.max(axis=0) == ds.x.min(axis=0))[0]
    if constant.size:
        names = [f"{j} ({ds.feature_names[j]!r})" for j in constant[: _MAX_LISTED + 1]]
        warnings.warn(
            f"{ds.source}: {constant.size} of {ds.num_features} features are constant "
            f"(columns {_list(names)}). They are "
            "kept; they carry no information (standardisation maps them to 0).",
            dataset_lib.ConstantFeaturesWarning,
            stacklevel=3,
        )
    seen = {}
    duplicates = []
    for i in range(n):
        h = hashlib.blake2b(ds.x[i].tobytes(), digest_size=16)
        h.update(ds.y[i].tobytes())
        key = h.digest()
        first = seen.setdefault(key, i)
        if first != i and np.array_equal(ds.x[first], ds.x[i]):
            duplicates.append((i, first))
    if duplicates:
        pairs = [f"{i} = {j}" for i, j in duplicates]
        warnings.warn(
            f"{ds.source}: {len(duplicates)} rows repeat an earlier row exactly, features and "
            f"labels (row = earlier row: {_list(pairs)}). They are kept; remove them yourself "
            "if copies in train and test would matter.",
            dataset_lib.DuplicateRowsWarning,
            stacklevel=3,
        )
    if ds.split is not None:
        unused = np.nonzero(ds.split == dataset_lib.UNUSED)[0]
        if unused.size:
            warnings.warn(
                f"{ds.source}: {unused.size} of {n} rows are in no predefined split (rows "
                f"{_list(unused.tolist())}); they are not used for training or evaluation.",
                dataset_lib.UnassignedRowsWarning,
                stacklevel=3,
            )
