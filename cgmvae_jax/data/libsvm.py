"""LIBSVM multi-label / Extreme Classification text.

An optional header line `n F L`; then one row per line, `l1,l2,... i:v i:v ...` with 0-based
label numbers; a row with no label starts directly with `i:v` (or is empty); `#` starts a
comment. Feature indices are 0- or 1-based: `index_base=None` picks 0 when some index is 0,
else 1 when some index equals F (from the header or `num_features`), else 0 when the file has a
header (Extreme Classification files are 0-based) and 1 without one (LIBSVM's convention).
Without a header, L is `num_labels` or the largest label + 1, and F is `num_features` or the
largest index + 1 - base. The train/test files of one data set are read together, so that they
agree on F, L and the index base.
"""

import dataclasses
import re

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import reading, validation

EXTENSIONS = (".txt", ".svm", ".libsvm", ".xc")
HEADER_RE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$")
ROW_RE = re.compile(r"^\s*(\d+(,\d+)*)?(\s+\d+:\S+)*\s*$|^\s*\d+:\S+(\s+\d+:\S+)*\s*$")


class _Part:
    """Parsed rows of one libsvm file (coordinates, before F, L and the index base are fixed)."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e}); is this a libsvm file?") from None
        while lines and not lines[-1].strip():
            lines.pop()
        self.header = None
        first = 0
        if lines and HEADER_RE.match(lines[0]):
            self.header = tuple(int(v) for v in lines[0].split())
            first = 1
        self.first_line = first + 1  # 1-based line number of row 0
        label_rows, label_cols, rows, cols, vals = [], [], [], [], []
        r = -1
        for r, line in enumerate(lines[first:]):
            line = line.split("#", 1)[0]
            tokens = line.split()
            if tokens and ":" not in tokens[0]:
                for t in tokens[0].split(","):
                    try:
                        label = int(t)
                    except ValueError:
                        raise self.error(
                            r,
                            f"label {t!r} is not a whole number (labels are 0-based integers "
                            "separated by commas, e.g. '3,17 0:1.5 4:2')",
                        ) from None
                    label_rows.append(r)
                    label_cols.append(label)
                tokens = tokens[1:]
            for t in tokens:
                index, sep, value = t.partition(":")
                try:
                    if not sep:
                        raise ValueError
                    i = int(index)
                    v = float(value)
                except ValueError:
                    raise self.error(
                        r, f"cannot parse feature {t!r}; expected index:value, e.g. 4:0.25"
                    ) from None
                rows.append(r)
                cols.append(i)
                vals.append(v)
        self.n = r + 1
        self.label_rows = np.asarray(label_rows, np.int64)
        self.label_cols = np.asarray(label_cols, np.int64)
        self.rows = np.asarray(rows, np.int64)
        self.cols = np.asarray(cols, np.int64)
        self.vals = np.asarray(vals, np.float64)

    def line(self, row: int) -> int:
        return row + self.first_line

    def error(self, row: int, text: str) -> ValueError:
        return ValueError(f"{self.path}: line {self.line(row)} (row {row}): {text}.")


def _check_headers(parts) -> tuple[int | None, int | None, str | None]:
    """(F, L, the file giving them) from the headers, after checking row counts and agreement."""
    for p in parts:
        if p.n == 0 and p.header is None:
            raise ValueError(
                f"{p.path}: no rows (the file is empty or truncated). Fix: write or download it "
                "again."
            )
        if p.header is not None and p.header[0] != p.n:
            raise ValueError(
                f"{p.path}: the header says {p.header[0]} rows but the file has {p.n}. The file "
                "is truncated or the header is wrong. Fix: download or write the file again."
            )
    headers = [p for p in parts if p.header is not None]
    if not headers:
        return None, None, None
    ref = headers[0]
    for p in headers[1:]:
        for k, what in ((1, "features"), (2, "labels")):
            if p.header[k] != ref.header[k]:
                raise ValueError(
                    f"{p.path} has {p.header[k]} {what} (header) but {ref.path} has "
                    f"{ref.header[k]}. Fix: all parts of a data set must have the same "
                    "features and labels."
                )
    return ref.header[1], ref.header[2], ref.path


def _label_count(parts, header_l, header_path, num_labels) -> int:
    """L from the header, `num_labels` or the largest label, checked against every row."""
    if num_labels and header_l is not None and num_labels != header_l:
        raise ValueError(
            f"{header_path}: the header says {header_l} labels but num_labels={num_labels}."
            " Fix: make them agree (or drop num_labels)."
        )
    max_label = max((int(p.label_cols.max()) for p in parts if p.label_cols.size), default=-1)
    num_l = header_l or num_labels or max_label + 1
    for p in parts:
        bad = (p.label_cols < 0) | (p.label_cols >= num_l)
        if np.any(bad):
            k = int(np.nonzero(bad)[0][0])
            origin = "header" if header_l else "num_labels"
            raise p.error(
                int(p.label_rows[k]),
                f"label {int(p.label_cols[k])} is outside 0..{num_l - 1} ({num_l} labels from "
                f"the {origin}); labels are 0-based. Fix: check the header's L or num_labels",
            )
        _check_unique(p, p.label_rows, p.label_cols, "label")
    if num_l <= 0:
        raise ValueError(
            f"{parts[0].path}: no row has a label and neither a header nor num_labels gives the "
            "label count. Fix: pass num_labels=L."
        )
    return num_l


def _index_base(parts, f_known, has_header, index_base) -> int:
    """The feature index base: `index_base`, or detected (module docstring)."""
    if index_base is not None:
        return int(index_base)
    all_cols = [p.cols for p in parts if p.cols.size]
    if any(bool(np.any(c == 0)) for c in all_cols):
        return 0
    max_index = max((int(c.max()) for c in all_cols), default=-1)
    if f_known is not None and max_index == f_known:
        return 1
    return 0 if has_header else 1


def _feature_count(parts, header_f, header_path, options) -> tuple[int, int]:
    """(F, index base), checked against every row's indices and values."""
    for p in parts:
        if p.cols.size and np.any(p.cols < 0):
            k = int(np.nonzero(p.cols < 0)[0][0])
            raise p.error(int(p.rows[k]), f"negative feature index {int(p.cols[k])}")
    if header_f and options.num_features and header_f != options.num_features:
        raise ValueError(
            f"{header_path}: the header says {header_f} features but "
            f"num_features={options.num_features}."
        )
    f_known = header_f or options.num_features or None
    base = _index_base(parts, f_known, header_f is not None, options.index_base)
    max_index = max((int(p.cols.max()) for p in parts if p.cols.size), default=-1)
    num_f = f_known or max(max_index + 1 - base, 0)
    if num_f <= 0:
        raise ValueError(f"{parts[0].path}: no feature in any row; F is unknown (num_features).")
    for p in parts:
        col = p.cols - base
        bad = (col < 0) | (col >= num_f)
        if np.any(bad):
            k = int(np.nonzero(bad)[0][0])
            raise p.error(
                int(p.rows[k]),
                f"feature index {int(p.cols[k])} is outside {base}..{num_f - 1 + base} "
                f"({num_f} features, {base}-based indices). Fix: check the header / num_features"
                " / index_base",
            )
        _check_unique(p, p.rows, p.cols, "feature index")
        bad = ~np.isfinite(p.vals) | (np.abs(np.nan_to_num(p.vals)) > np.finfo(np.float32).max)
        if np.any(bad):
            k = int(np.nonzero(bad)[0][0])
            raise p.error(
                int(p.rows[k]),
                f"feature {int(p.cols[k])} has value {validation.scalar_text(p.vals[k])}; "
                "features must be finite float32 numbers. Fix: impute or drop it before loading",
            )
    return num_f, base


def _check_unique(part, rows, cols, what):
    if rows.size == 0:
        return
    key = rows * (int(cols.max()) + 1) + cols
    uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
    if np.any(counts > 1):
        k = int(first[counts > 1][0])
        raise part.error(
            int(rows[k]), f"{what} {int(cols[k])} appears twice in the row. Fix: list it once"
        )


def read_parts(paths, options: reading.ReadOptions) -> list[dataset_lib.Dataset]:
    """Reads the files of one data set together: one F, L and index base for all of them."""
    parts = [_Part(p) for p in paths]
    header_f, header_l, header_path = _check_headers(parts)
    num_l = _label_count(parts, header_l, header_path, options.num_labels)
    num_f, base = _feature_count(parts, header_f, header_path, options)
    datasets = []
    for p in parts:
        x = np.zeros((p.n, num_f), np.float32)
        x[p.rows, p.cols - base] = p.vals
        y = np.zeros((p.n, num_l), np.uint8)
        y[p.label_rows, p.label_cols] = 1
        name = reading.part_stem(p.path)
        datasets.append(reading.checked_dataset(x, y, source=p.path, name=name))
    return datasets


def read(
    path: str, options: reading.ReadOptions, *, name: str | None = None
) -> dataset_lib.Dataset:
    """Reads one libsvm / Extreme Classification file (see the module docstring)."""
    (ds,) = read_parts([path], options)
    return ds if name is None else dataclasses.replace(ds, name=name)
