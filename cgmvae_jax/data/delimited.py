"""CSV / TSV tables with a header row; also gzip-compressed (`.csv.gz`, `.tsv.gz`).

The first non-empty line names the columns. The columns are:

* `split` (that name, any case; optional): the predefined split of each row, `train`, `test`,
  `val` (also `valid`, `validation`) or the codes 0 (train), 1 (test), 2 (validation);
* the labels: the columns whose name starts with `ReadOptions.label_prefix`, or, without a
  prefix, the last (`label_location="end"`) or first (`"start"`) `num_labels` columns (the split
  column is not counted). When both are given, they must agree on L. Labels are 0 or 1;
* the features: every other column. Each cell must be a finite number (as Python's `float`
  reads it); text columns such as ids must be dropped or encoded before loading.

The delimiter is a tab for `.tsv` / `.tsv.gz` and a comma for `.csv` / `.csv.gz`; for other
names a tab when the header line holds one, else a comma. Quoted cells follow the `csv` module.
Empty lines are skipped. Every error names the file, the line (1-based, as in an editor) and the
column (1-based position and header name).
"""

import csv
import gzip
import itertools
import zlib

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import reading

EXTENSIONS = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
SPLIT_COLUMN = "split"
_SPLIT_CODES = {
    **reading.PART_NAMES,
    "unused": dataset_lib.UNUSED,
    "0": dataset_lib.TRAIN,
    "1": dataset_lib.TEST,
    "2": dataset_lib.VALIDATION,
    "-1": dataset_lib.UNUSED,
}
_TEXT_FIX = (
    "Fix: every feature and label cell must be a number; drop or encode text columns (e.g. "
    "ids) and impute missing values before loading"
)


class _Table:
    """The header and the cells (as text) of a delimited file, with each row's line number."""

    def __init__(self, path: str):
        self.path = path
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.lines: list[int] = []  # 1-based line of each row
        try:
            self._read()
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e}); is this a CSV/TSV file?") from None
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise ValueError(
                f"{path}: cannot read the file ({type(e).__name__}: {e}). It is truncated or "
                "not what its name says. Fix: write, download or unpack it again."
            ) from None

    def _read(self) -> None:
        opener = gzip.open if self.path.lower().endswith(".gz") else open
        with opener(self.path, "rt", encoding="utf-8-sig", newline="") as f:
            first = f.readline()
            reader = csv.reader(itertools.chain([first], f), delimiter=self._delimiter(first))
            try:
                for row in reader:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # an empty line
                    if not self.header:
                        self._set_header(row, reader.line_num)
                    elif len(row) != len(self.header):
                        raise self.error(
                            reader.line_num,
                            None,
                            f"{len(row)} cells but the header has {len(self.header)} columns "
                            "(a ragged row). Fix: give every row one cell per column",
                        )
                    else:
                        self.rows.append(row)
                        self.lines.append(reader.line_num)
            except csv.Error as e:
                raise self.error(reader.line_num, None, f"{e}. Fix: repair the quoting") from None
        if not self.header:
            raise ValueError(f"{self.path}: no header row (the file is empty).")

    def _delimiter(self, first_line: str) -> str:
        lower = self.path.lower()
        if lower.endswith((".tsv", ".tsv.gz")):
            return "\t"
        if lower.endswith((".csv", ".csv.gz")):
            return ","
        return "\t" if "\t" in first_line else ","

    def _set_header(self, row: list[str], line: int) -> None:
        header = self.header = [cell.strip() for cell in row]  # set first: errors name cells
        seen = {}
        for j, name in enumerate(header):
            if not name:
                raise self.error(line, j, "the header cell is empty. Fix: name every column")
            if name in seen:
                raise self.error(
                    line,
                    j,
                    f"column name {name!r} repeats column {seen[name] + 1}. Fix: give every "
                    "column its own name",
                )
            seen[name] = j
        if all(_is_number(name) for name in header):
            raise ValueError(
                f"{self.path}: line {line}: the first line holds numbers, not column names. "
                "Fix: add a header row naming the columns (labels by label_prefix or "
                "num_labels, see cgmvae_jax/data/delimited.py)."
            )

    def column(self, j: int) -> str:
        return f"column {j + 1} ({self.header[j]!r})"

    def error(self, line: int, j: int | None, text: str) -> ValueError:
        where = f"line {line}" if j is None or not self.header else f"line {line}, {self.column(j)}"
        return ValueError(f"{self.path}: {where}: {text}.")

    def cell_error(self, r: int, j: int, text: str) -> ValueError:
        return self.error(self.lines[r], j, text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_numbers(path: str) -> np.ndarray:
    """A table of numbers (.csv, or .tsv by its extension); a first line that is not all
    numbers is taken as a header. For features of new rows to predict (no labels).

    Raises:
      ValueError: a cell that is not a number or a row of another length, naming the line.
    """
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for line, cells in enumerate(csv.reader(f, delimiter=delimiter), start=1):
            if not cells:
                continue
            if not all(_is_number(c) for c in cells):
                if line == 1:
                    continue  # a header
                bad = next(i for i, c in enumerate(cells) if not _is_number(c))
                raise ValueError(
                    f"{path}: line {line}, column {bad + 1}: {cells[bad]!r} is not a number."
                )
            if rows and len(cells) != len(rows[0]):
                raise ValueError(
                    f"{path}: line {line} has {len(cells)} values, the first row {len(rows[0])}."
                )
            rows.append([float(c) for c in cells])
    if not rows:
        raise ValueError(f"{path}: no rows of numbers.")
    return np.asarray(rows, np.float64)


def _select_columns(table: _Table, options: reading.ReadOptions):
    """(split column or None, label columns, feature columns) by name, prefix or count."""
    header, path = table.header, table.path
    split_cols = [j for j, name in enumerate(header) if name.lower() == SPLIT_COLUMN]
    if len(split_cols) > 1:
        raise ValueError(f"{path}: several split columns ({len(split_cols)}); keep one.")
    split_col = split_cols[0] if split_cols else None
    others = [j for j in range(len(header)) if j != split_col]
    prefix, count = options.label_prefix, options.num_labels
    if prefix:
        labels = [j for j in others if header[j].startswith(prefix)]
        if not labels:
            shown = ", ".join(header[j] for j in others[:8]) + (", ..." if len(others) > 8 else "")
            raise ValueError(
                f"{path}: no label columns selected: no column name starts with label_prefix "
                f"{prefix!r} (columns: {shown}). Fix: set label_prefix (--config.label_prefix) "
                "to the label columns' common prefix."
            )
        if count and count != len(labels):
            raise ValueError(
                f"{path}: label_prefix {prefix!r} selects {len(labels)} columns but "
                f"num_labels={count}. Fix: make them agree (or drop num_labels)."
            )
    elif count:
        if count >= len(others):
            raise ValueError(
                f"{path}: num_labels={count} but the file has only {len(others)} columns besides "
                "the split (at least one must be a feature)."
            )
        labels = others[-count:] if options.label_location == "end" else others[:count]
    else:
        raise ValueError(
            f"{path}: no label columns selected. Fix: pass label_prefix=P (config: "
            "--config.label_prefix=P; the columns whose name starts with P) or num_labels=L "
            "(--config.num_labels_arff=L) with label_location 'end' (last L columns, default) "
            "or 'start' (first L)."
        )
    features = [j for j in others if j not in set(labels)]
    if not features:
        raise ValueError(f"{path}: every column is a label; there are no feature columns.")
    return split_col, labels, features


def _numbers(table: _Table, cols: list[int]) -> np.ndarray:
    """float64 [n, len(cols)] of the given columns; an error names the first non-number."""
    try:
        values = np.array([[row[j] for j in cols] for row in table.rows], dtype=np.float64)
    except ValueError:
        for r, row in enumerate(table.rows):
            for j in cols:
                if not _is_number(row[j]):
                    what = "is empty (a missing value)" if not row[j].strip() else "is not a number"
                    raise table.cell_error(r, j, f"cell {row[j]!r} {what}. {_TEXT_FIX}") from None
        raise
    return values.reshape(len(table.rows), len(cols))


def _check_cells(table: _Table, labels, label_cols, features, feature_cols) -> None:
    """Names the first label that is not 0/1 and the first non-finite feature by line/column."""
    bad = (labels != 0) & (labels != 1)
    if np.any(bad):
        r, c = (int(i[0]) for i in np.nonzero(bad))
        raise table.cell_error(
            r,
            label_cols[c],
            f"label value {table.rows[r][label_cols[c]].strip()!r} is not 0 or 1. Fix: binarise "
            "the labels, or check which columns are labels (label_prefix / num_labels)",
        )
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(features.astype(np.float32))
    if np.any(bad):
        r, c = (int(i[0]) for i in np.nonzero(bad))
        raise table.cell_error(
            r,
            feature_cols[c],
            f"feature value {table.rows[r][feature_cols[c]].strip()!r} is NaN, infinite or "
            "outside the float32 range; features must be finite. Fix: impute or drop it before "
            "loading (nothing is repaired automatically)",
        )


def _split(table: _Table, j: int) -> np.ndarray:
    codes = np.empty(len(table.rows), np.int8)
    for r, row in enumerate(table.rows):
        code = _SPLIT_CODES.get(row[j].strip().lower())
        if code is None:
            raise table.cell_error(
                r,
                j,
                f"split value {row[j]!r}; use train, test, val (or 0 train, 1 test, 2 validation)",
            )
        codes[r] = code
    return codes


def read(
    path: str, options: reading.ReadOptions, *, name: str | None = None
) -> dataset_lib.Dataset:
    """Reads a CSV/TSV file with a header row (columns: see the module docstring)."""
    table = _Table(path)
    split_col, label_cols, feature_cols = _select_columns(table, options)
    labels = _numbers(table, label_cols)
    features = _numbers(table, feature_cols)
    _check_cells(table, labels, label_cols, features, feature_cols)
    return reading.checked_dataset(
        features,
        labels,
        source=path,
        label_names=[table.header[j] for j in label_cols],
        feature_names=[table.header[j] for j in feature_cols],
        split=None if split_col is None else _split(table, split_col),
        name=name,
    )


def read_parts(paths, options: reading.ReadOptions) -> list[dataset_lib.Dataset]:
    """Reads the train/test(/val) files of one data set; a part may not hold a split column."""
    datasets = []
    for path in paths:
        ds = read(path, options, name=reading.part_stem(path))
        if ds.split is not None:
            raise ValueError(
                f"{path}: a train/test part file has its own split column. Fix: drop the "
                "column, or load one file that holds all rows and the split column."
            )
        datasets.append(ds)
    return datasets
