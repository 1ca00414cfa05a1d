"""Which reader reads a path: format names, detection, train/test part files and dispatch.

Formats (`format=` name; "auto" detects from the extension or the file's first bytes), one
module each, every reader returning a checked `Dataset`:

* `npz` (`data/npz.py`): arrays `X` [n, F], `Y` [n, L] (0/1), optional `label_names`,
  `feature_names` and `split` -- the layout of the shared data sets and of `save_npz`;
* `mpvae` (`data/mpvae.py`): the MPVAE/C-GMVAE directory `NAME_data.npy` +
  `NAME_{train,val,test}_idx.npy`;
* `arff` (`data/arff.py`): Mulan/MEKA ARFF, dense or sparse, labels from the Mulan XML header,
  `num_labels` or a MEKA `-C L`;
* `libsvm` (`data/libsvm.py`): LIBSVM multi-label / Extreme Classification text;
* `csv` (`data/delimited.py`): CSV/TSV (optionally gzip'd) with a header row, labels chosen by
  `label_prefix` or `num_labels`, an optional `split` column;
* a directory holding the train/test (optionally val) files of one text format:
  `STEM-train.arff` / `STEM-test.arff` (also `_train`, `-val`, `-valid`), `STEM_train.txt` /
  `STEM_test.txt` (also `.svm`, `train.txt`) or `STEM_train.csv` / `STEM_test.csv` (also
  `.tsv`, `.csv.gz`): rows are concatenated train, val, test with split 0, 2, 1.
"""

import os
import re

import numpy as np

from cgmvae_jax.data import arff, delimited, libsvm, mpvae, npz, reading
from cgmvae_jax.data import dataset as dataset_lib

FORMATS = ("auto", "npz", "mpvae", "arff", "libsvm", "csv")
_ALIASES = {"npy": "mpvae", "xc": "libsvm", "svmlight": "libsvm", "tsv": "csv"}
_READERS = {"npz": npz, "mpvae": mpvae, "arff": arff, "libsvm": libsvm, "csv": delimited}
_PART_FORMATS = ("arff", "libsvm", "csv")  # formats whose train/test files form one data set
# Longest extension first, so that ".csv.gz" is matched before the archive extension ".gz".
_EXTENSIONS = dict(
    sorted(
        ((ext, fmt) for fmt, module in _READERS.items() for ext in module.EXTENSIONS),
        key=lambda item: -len(item[0]),
    )
)
_ARCHIVE_EXTENSIONS = (".gz", ".tgz", ".zip", ".bz2", ".xz", ".tar", ".7z")
_SUPPORTED_TEXT = (
    "Supported: .npz (arrays X, Y), the MPVAE layout (NAME_data.npy + NAME_{train,val,test}"
    "_idx.npy), Mulan/MEKA .arff (dense or sparse), libsvm / Extreme Classification text "
    "(.txt, .svm), CSV/TSV with a header row (.csv, .tsv, .csv.gz, .tsv.gz), or a directory "
    "of NAME-train/NAME-test files of one of these"
)
_PART_RE = re.compile(
    r"^(?P<stem>.*?)[-_]?(?P<part>train|test|val|valid|validation)(?:[-_]sparse)?"
    r"(?P<ext>\.arff|\.txt|\.svm|\.libsvm|\.csv|\.tsv|\.csv\.gz|\.tsv\.gz)$",
    re.IGNORECASE,
)


def normalize_format(fmt: str, source: str = "") -> str:
    """Maps a format name or alias to one of `FORMATS`; raises ValueError for others."""
    key = str(fmt).lower()
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        where = f"{source}: " if source else ""
        raise ValueError(
            f"{where}unknown data format {fmt!r}. Use one of {', '.join(FORMATS)} "
            "(config: --config.data_format=...). " + _SUPPORTED_TEXT + "."
        )
    return key


def find_parts(directory: str, fmt: str = "auto", name: str | None = None):
    """Finds train/test(/val) files of one format in `directory`.

    Returns:
      (format, [(split code, path), ...]) ordered train, val, test; or None when the directory
      holds no train/test pair.

    Raises:
      ValueError: several train/test sets and `name` does not pick one, or two files for the
        same part.
    """
    groups = {}
    for entry in sorted(os.listdir(directory)):
        m = _PART_RE.match(entry)
        if not m or not os.path.isfile(os.path.join(directory, entry)):
            continue
        part_fmt = _EXTENSIONS[m.group("ext").lower()]
        if fmt not in ("auto", part_fmt):
            continue
        key = (m.group("stem").lower(), part_fmt)
        code = reading.PART_NAMES[m.group("part").lower()]
        parts = groups.setdefault(key, {})
        if code in parts:
            raise ValueError(
                f"{directory}: two {dataset_lib.SPLIT_NAMES[code]} files for the same data set: "
                f"{os.path.basename(parts[code])} and {entry}. Fix: keep one of them."
            )
        parts[code] = os.path.join(directory, entry)
    complete = {k: v for k, v in groups.items() if dataset_lib.TRAIN in v and dataset_lib.TEST in v}
    if not complete:
        return None
    if len(complete) > 1 and name is not None:
        chosen = {k: v for k, v in complete.items() if k[0] == name.lower()}
        complete = chosen or complete
    if len(complete) > 1:
        listing = ", ".join(f"{stem or '(no stem)'} ({f})" for stem, f in sorted(complete))
        raise ValueError(
            f"{directory}: several train/test sets ({listing}). Fix: load one by its path or "
            "keep one set per directory."
        )
    (_, part_fmt), parts = next(iter(complete.items()))
    order = (dataset_lib.TRAIN, dataset_lib.VALIDATION, dataset_lib.TEST)
    return part_fmt, [(code, parts[code]) for code in order if code in parts]


def _format_of_name(path: str) -> str | None:
    lower = path.lower()
    return next((fmt for ext, fmt in _EXTENSIONS.items() if lower.endswith(ext)), None)


def _single_data_file(directory: str):
    files = [
        os.path.join(directory, e)
        for e in sorted(os.listdir(directory))
        if _format_of_name(e) not in (None, "mpvae") and os.path.isfile(os.path.join(directory, e))
    ]
    return files[0] if len(files) == 1 else None


def _holds_mpvae(directory: str) -> bool:
    return any(e.endswith(mpvae.DATA_SUFFIX) for e in os.listdir(directory))


def _unknown_directory(path: str) -> ValueError:
    return ValueError(
        f"{path}: unknown data format: the directory holds no NAME_data.npy, no "
        f"NAME-train/NAME-test pair and not exactly one data file. {_SUPPORTED_TEXT}."
    )


def _detect_from_content(path: str) -> str | None:
    """The format of a file whose name says nothing, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "mpvae"
    text = head.decode("utf-8", errors="replace")
    lines = [ln.strip() for ln in text.split("\n")]
    lines = [ln for ln in lines[:-1] if ln and not ln.startswith("%")] or lines[:1]
    if lines and lines[0].lower().startswith("@relation"):
        return "arff"
    data_lines = [ln.split("#", 1)[0] for ln in lines[:5]]
    if (
        data_lines
        and (libsvm.HEADER_RE.match(data_lines[0]) or libsvm.ROW_RE.match(data_lines[0]))
        and all(libsvm.ROW_RE.match(ln) for ln in data_lines[1:])
    ):
        return "libsvm"
    return None


def detect_format(path: str) -> str:
    """Returns the format name of a file or directory, or raises ValueError (unknown format)."""
    if os.path.isdir(path):
        if _holds_mpvae(path):
            return "mpvae"
        found = find_parts(path)
        if found:
            return found[0]
        single = _single_data_file(path)
        if single:
            return detect_format(single)
        raise _unknown_directory(path)
    fmt = _format_of_name(path)
    if fmt is not None:
        return fmt
    if path.lower().endswith(_ARCHIVE_EXTENSIONS):
        raise ValueError(
            f"{path}: unknown data format: this is a compressed archive. Fix: unpack it first "
            "(cgmvae_jax.data.fetch unpacks what it downloads)."
        )
    fmt = _detect_from_content(path)
    if fmt is not None:
        return fmt
    raise ValueError(
        f"{path}: unknown data format (extension {os.path.splitext(path)[1] or 'none'}, "
        f"content not recognised). {_SUPPORTED_TEXT}. Fix: pass format=... (config: "
        "--config.data_format=...) or convert the file with python launch/prepare_data.py."
    )


def _check_parts_agree(datasets) -> None:
    ref = datasets[0]
    for ds in datasets[1:]:
        for what, a, b in (
            ("features", ref.feature_names, ds.feature_names),
            ("labels", ref.label_names, ds.label_names),
        ):
            if len(a) != len(b):
                raise ValueError(
                    f"{ds.source} has {len(b)} {what} but {ref.source} has {len(a)}. Fix: all "
                    "parts of a data set must have the same features and labels."
                )
            if a != b:
                j = next(i for i, (u, v) in enumerate(zip(a, b, strict=True)) if u != v)
                raise ValueError(
                    f"{ds.source} and {ref.source} disagree on {what[:-1]} column {j} "
                    f"({b[j]!r} vs {a[j]!r}). Fix: all parts must declare the same columns in "
                    "the same order."
                )


def read_parts(
    directory: str, fmt: str, parts, options: reading.ReadOptions, *, name: str | None = None
) -> dataset_lib.Dataset:
    """Reads train/(val/)test files of one format and concatenates them with a split."""
    datasets = _READERS[fmt].read_parts([p for _, p in parts], options)
    _check_parts_agree(datasets)
    split = []
    for (code, path), ds in zip(parts, datasets, strict=True):
        if ds.num_examples == 0:
            raise ValueError(
                f"{path}: the {dataset_lib.SPLIT_NAMES[code]} split is empty (no rows). Fix: "
                "the file must hold at least one example."
            )
        split.append(np.full(ds.num_examples, code, np.int8))
    ref = datasets[0]
    return dataset_lib.Dataset(
        x=np.concatenate([ds.x for ds in datasets]),
        y=np.concatenate([ds.y for ds in datasets]),
        label_names=ref.label_names,
        feature_names=ref.feature_names,
        split=np.concatenate(split),
        name=name or ref.name or os.path.basename(os.path.normpath(directory)),
        source=directory,
    )


def read_path(
    path: str,
    *,
    format: str = "auto",  # noqa: A002 - the public keyword of load_dataset
    name: str | None = None,
    options: reading.ReadOptions | None = None,
) -> dataset_lib.Dataset:
    """Reads an existing file or directory in `format` ("auto" detects it).

    Args:
      path: a data file, or a directory (MPVAE layout, train/test files, or one data file).
      format: one of `FORMATS` or an alias ("npy", "xc", "svmlight", "tsv").
      name: the data set's name when it was looked up by name (picks one data set in a
        directory that holds several).
      options: what the files do not say about themselves (`reading.ReadOptions`).
    """
    options = reading.ReadOptions() if options is None else options
    fmt = normalize_format(format, path)
    if os.path.isdir(path):
        if fmt == "mpvae" or (fmt == "auto" and _holds_mpvae(path)):
            return mpvae.read(path, options, name=name)
        found = find_parts(path, fmt, name) if fmt in ("auto", *_PART_FORMATS) else None
        if found:
            return read_parts(path, *found, options, name=name)
        single = _single_data_file(path)
        if single is None and fmt == "auto":
            raise _unknown_directory(path)
        if single is None:
            raise ValueError(f"{path}: no {fmt} data found in this directory. {_SUPPORTED_TEXT}.")
        path = single
    if fmt == "auto":
        fmt = detect_format(path)
    return _READERS[fmt].read(path, options, name=name)
