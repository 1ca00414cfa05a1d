"""Readers for the supported on-disk formats; each returns a validated `Dataset`.

Formats (`format=` name, auto-detected from the extension or the file's first bytes):

* `npz`: arrays `X` [n, F], `Y` [n, L] (0/1), optional `label_names`, `feature_names` and
  `split` (0 train, 1 test, 2 validation) -- the layout of the shared data sets and of
  `save_npz`.
* `mpvae`: the MPVAE/C-GMVAE layout, a directory with `NAME_data.npy` (rows =
  [meta (meta_offset columns) | labels (L) | features]) and `NAME_train_idx.npy`,
  `NAME_test_idx.npy`, optionally `NAME_val_idx.npy` (row numbers, 0-based). L is taken from,
  in order: the `num_labels` argument; `NAME_labels.txt` or `label_names.txt` (one label name
  per line); the paper's label count for a known NAME (`KNOWN_LABEL_COUNTS`). Otherwise
  loading fails and says so.
* `arff`: Mulan/MEKA ARFF, dense or sparse (`{index value, ...}` rows; liac-arff is needed).
  The label attributes are, in order: the Mulan XML label header (`xml_path`, or `STEM.xml`
  beside the file, where `STEM-train.arff` also looks for `STEM.xml`); `num_labels` with
  `label_location` "end" (the last L attributes, Mulan's habit) or "start" (the first L,
  MEKA's); a MEKA `-C L` option in `@relation` (L > 0: first L, L < 0: last |L|). When two
  sources are present, their label counts must agree. Nominal attributes whose values are
  numbers read as those numbers; true/false and yes/no read as 1/0; implicit (omitted) sparse
  values are 0, or a nominal attribute's first declared value.
* `libsvm`: LIBSVM multi-label / Extreme Classification text. An optional header line
  `n F L`; then one row per line, `l1,l2,... i:v i:v ...` with 0-based label numbers; a row
  with no label starts directly with `i:v` (or is empty); `#` starts a comment. Feature
  indices are 0- or 1-based: `index_base=None` picks 0 when some index is 0, else 1 when some
  index equals F (from the header or `num_features`), else 0 when the file has a header
  (Extreme Classification files are 0-based) and 1 without one (LIBSVM's convention).
  Without a header, L is `num_labels` or the largest label + 1, and F is `num_features` or
  the largest index + 1 - base.
* a directory holding the train/test (optionally val) files of one text format:
  `STEM-train.arff` / `STEM-test.arff` (also `_train`, `-val`, `-valid`) or
  `STEM_train.txt` / `STEM_test.txt` (also `.svm`, `train.txt`): rows are concatenated
  train, val, test with split 0, 2, 1.
"""

import os
import re
import zipfile
import zlib
from xml.etree import ElementTree

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import validation

FORMATS = ("auto", "npz", "mpvae", "arff", "libsvm")
_ALIASES = {"npy": "mpvae", "xc": "libsvm", "svmlight": "libsvm"}
LABEL_LOCATIONS = ("end", "start")

# Label counts of the paper's data sets (C-GMVAE / MPVAE papers, Mulan). Used for the MPVAE
# .npy layout when neither `num_labels` nor a label-names file gives L.
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

_TEXT_EXTENSIONS = {".txt": "libsvm", ".svm": "libsvm", ".libsvm": "libsvm", ".xc": "libsvm"}
_EXTENSIONS = {".npz": "npz", ".npy": "mpvae", ".arff": "arff", **_TEXT_EXTENSIONS}
_ARCHIVE_EXTENSIONS = (".gz", ".tgz", ".zip", ".bz2", ".xz", ".tar", ".7z")
_SUPPORTED_TEXT = (
    "Supported: .npz (arrays X, Y), the MPVAE layout (NAME_data.npy + NAME_{train,val,test}"
    "_idx.npy), Mulan/MEKA .arff (dense or sparse), libsvm / Extreme Classification text "
    "(.txt, .svm), or a directory of NAME-train/NAME-test files of one of these"
)
_PART_RE = re.compile(
    r"^(?P<stem>.*?)[-_]?(?P<part>train|test|val|valid|validation)(?:[-_]sparse)?"
    r"\.(?P<ext>arff|txt|svm|libsvm)$",
    re.IGNORECASE,
)
_PART_CODES = {
    "train": dataset_lib.TRAIN,
    "test": dataset_lib.TEST,
    "val": dataset_lib.VALIDATION,
    "valid": dataset_lib.VALIDATION,
    "validation": dataset_lib.VALIDATION,
}
_HEADER_RE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$")
_LIBSVM_ROW_RE = re.compile(r"^\s*(\d+(,\d+)*)?(\s+\d+:\S+)*\s*$|^\s*\d+:\S+(\s+\d+:\S+)*\s*$")
_MEKA_RE = re.compile(r"(?:^|\s)-C\s+(-?\d+)")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


def default_names(prefix: str, count: int) -> tuple[str, ...]:
    """('label_0', 'label_1', ...) style names."""
    return tuple(f"{prefix}_{j}" for j in range(count))


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


def _stem(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    for ext in (*_EXTENSIONS, ".xml"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


# ----------------------------------------------------------------------------------------------
# Format detection.


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
        part_fmt = "arff" if m.group("ext").lower() == "arff" else "libsvm"
        if fmt not in ("auto", part_fmt):
            continue
        key = (m.group("stem").lower(), part_fmt)
        code = _PART_CODES[m.group("part").lower()]
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
    (stem, part_fmt), parts = next(iter(complete.items()))
    order = (dataset_lib.TRAIN, dataset_lib.VALIDATION, dataset_lib.TEST)
    return part_fmt, [(code, parts[code]) for code in order if code in parts]


def _single_data_file(directory: str):
    files = [
        os.path.join(directory, e)
        for e in sorted(os.listdir(directory))
        if os.path.splitext(e)[1].lower() in (".npz", ".arff", *_TEXT_EXTENSIONS)
        and os.path.isfile(os.path.join(directory, e))
    ]
    return files[0] if len(files) == 1 else None


def detect_format(path: str) -> str:
    """Returns the format name of a file or directory, or raises ValueError (unknown format)."""
    if os.path.isdir(path):
        if any(e.endswith("_data.npy") for e in os.listdir(path)):
            return "mpvae"
        found = find_parts(path)
        if found:
            return found[0]
        single = _single_data_file(path)
        if single:
            return detect_format(single)
        raise ValueError(
            f"{path}: unknown data format: the directory holds no NAME_data.npy, no "
            f"NAME-train/NAME-test pair and not exactly one data file. {_SUPPORTED_TEXT}."
        )
    lower = path.lower()
    for ext, fmt in _EXTENSIONS.items():
        if lower.endswith(ext):
            return fmt
    if lower.endswith(_ARCHIVE_EXTENSIONS):
        raise ValueError(
            f"{path}: unknown data format: this is a compressed archive. Fix: unpack it first "
            "(cgmvae_jax.data.fetch unpacks what it downloads)."
        )
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
        and (_HEADER_RE.match(data_lines[0]) or _LIBSVM_ROW_RE.match(data_lines[0]))
        and all(_LIBSVM_ROW_RE.match(ln) for ln in data_lines[1:])
    ):
        return "libsvm"
    raise ValueError(
        f"{path}: unknown data format (extension {os.path.splitext(path)[1] or 'none'}, "
        f"content not recognised). {_SUPPORTED_TEXT}. Fix: pass format=... (config: "
        "--config.data_format=...) or convert the file with python launch/prepare_data.py."
    )


# ----------------------------------------------------------------------------------------------
# npz.


def read_npz(path: str, *, num_labels: int = 0) -> dataset_lib.Dataset:
    """Reads the project's npz (X, Y, optional label_names, feature_names, split)."""
    wanted = ("X", "Y", "label_names", "feature_names", "split")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            arrays = {k: z[k] for k in wanted if k in names}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
        hint = ""
        if "allow_pickle" in str(e):
            hint = " It holds object arrays; save names as str arrays (np.asarray(n, dtype=str))."
        raise ValueError(
            f"{path}: cannot read the npz file ({type(e).__name__}: {e}).{hint} The file is "
            "truncated, corrupt or not an npz. Fix: copy or convert it again "
            "(python launch/prepare_data.py --input=... --output=...)."
        ) from None
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
    if num_labels and num_labels != y.shape[1]:
        raise ValueError(
            f"{path}: num_labels={num_labels} was given but Y has {y.shape[1]} label columns. "
            "Fix: drop num_labels (an npz knows its labels) or use the matching file."
        )
    y = validation.check_labels(y, source=path, label_names=arrays.get("label_names"))
    x = validation.check_features(x, source=path, feature_names=arrays.get("feature_names"))
    label_names = validation.check_names(
        arrays.get("label_names", default_names("label", y.shape[1])),
        expected=y.shape[1],
        kind="label",
        source=path,
    )
    feature_names = validation.check_names(
        arrays.get("feature_names", default_names("feature", x.shape[1])),
        expected=x.shape[1],
        kind="feature",
        source=path,
    )
    split = arrays.get("split")
    if split is not None:
        split = validation.check_split(split, x.shape[0], source=path)
    return dataset_lib.Dataset(
        x=x,
        y=y,
        label_names=label_names,
        feature_names=feature_names,
        split=split,
        name=_stem(path),
        source=path,
    )


# ----------------------------------------------------------------------------------------------
# MPVAE .npy layout.


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(
            f"{path}: cannot read the .npy file ({type(e).__name__}: {e}). The file is truncated "
            "or corrupt (or holds Python objects). Fix: download or unpack it again."
        ) from None


def _read_names_file(path: str) -> tuple[str, ...]:
    with open(path, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())


def read_mpvae(
    path: str, *, num_labels: int = 0, meta_offset: int = 0, name: str | None = None
) -> dataset_lib.Dataset:
    """Reads the MPVAE/C-GMVAE layout (see the module docstring for how L is determined).

    Args:
      path: the directory, or its `NAME_data.npy`.
      num_labels: L; 0 = from a label-names file or `KNOWN_LABEL_COUNTS`.
      meta_offset: leading non-label, non-feature columns of each row.
      name: NAME when the directory holds several data files.
    """
    if os.path.isdir(path):
        directory = path
        candidates = sorted(
            e[: -len("_data.npy")] for e in os.listdir(path) if e.endswith("_data.npy")
        )
        base = os.path.basename(os.path.normpath(path))
        if name and name in candidates:
            stem = name
        elif len(candidates) == 1:
            stem = candidates[0]
        elif base in candidates:
            stem = base
        elif not candidates:
            raise ValueError(
                f"{path}: no NAME_data.npy in this directory, so it is not in the MPVAE layout. "
                f"{_SUPPORTED_TEXT}."
            )
        else:
            listing = ", ".join(c + "_data.npy" for c in candidates)
            raise ValueError(
                f"{path}: several MPVAE data files ({listing}); pass the one to load as the path."
            )
    else:
        directory = os.path.dirname(path) or "."
        base = os.path.basename(path)
        if not base.endswith("_data.npy"):
            raise ValueError(
                f"{path}: an MPVAE data file must be named NAME_data.npy (with "
                "NAME_train_idx.npy, NAME_test_idx.npy beside it)."
            )
        stem = base[: -len("_data.npy")]
    data_path = os.path.join(directory, f"{stem}_data.npy")
    if meta_offset < 0:
        raise ValueError(f"{data_path}: meta_offset={meta_offset} must be >= 0.")

    index_paths = {
        dataset_lib.TRAIN: os.path.join(directory, f"{stem}_train_idx.npy"),
        dataset_lib.VALIDATION: os.path.join(directory, f"{stem}_val_idx.npy"),
        dataset_lib.TEST: os.path.join(directory, f"{stem}_test_idx.npy"),
    }
    missing = [
        p for c, p in index_paths.items() if c != dataset_lib.VALIDATION and not os.path.exists(p)
    ]
    if missing:
        raise ValueError(
            f"{data_path}: missing index file(s) {', '.join(missing)}. Fix: the MPVAE layout needs "
            f"{stem}_train_idx.npy and {stem}_test_idx.npy ({stem}_val_idx.npy is optional: "
            "without it validation is carved from train); or convert the data with "
            "python launch/prepare_data.py."
        )

    data = _load_npy(data_path)
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
        raise ValueError(
            f"{data_path}: expected a 2-D numeric array [n, meta_offset + L + F], got "
            f"{data.dtype} of shape {data.shape}."
        )
    n, width = data.shape

    label_names = None
    names_file = None
    for candidate in (f"{stem}_labels.txt", "label_names.txt"):
        p = os.path.join(directory, candidate)
        if os.path.exists(p):
            names_file = p
            label_names = _read_names_file(p)
            break
    if num_labels and label_names is not None and num_labels != len(label_names):
        raise ValueError(
            f"{names_file} lists {len(label_names)} labels but num_labels={num_labels}. Fix: "
            "make them agree (or drop num_labels / the names file)."
        )
    if num_labels:
        count = int(num_labels)
    elif label_names is not None:
        count = len(label_names)
    elif stem in KNOWN_LABEL_COUNTS:
        count = KNOWN_LABEL_COUNTS[stem]
    else:
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
    label_cols = np.arange(meta_offset, meta_offset + count)
    y = validation.check_labels(
        data[:, meta_offset : meta_offset + count],
        source=data_path,
        label_names=label_names,
        file_columns=label_cols,
    )
    x = validation.check_features(
        data[:, meta_offset + count :],
        source=data_path,
        file_columns=np.arange(meta_offset + count, width),
    )
    del data
    label_names = validation.check_names(
        label_names or default_names("label", count),
        expected=count,
        kind="label",
        source=names_file or data_path,
    )

    index_arrays = [(code, p, _load_npy(p)) for code, p in index_paths.items() if os.path.exists(p)]
    split = validation.split_from_index_files(index_arrays, n, data_source=data_path)
    return dataset_lib.Dataset(
        x=x,
        y=y,
        label_names=label_names,
        feature_names=default_names("feature", x.shape[1]),
        split=split,
        name=stem,
        source=directory,
    )


# ----------------------------------------------------------------------------------------------
# ARFF.


def _require_liac_arff():
    try:
        import arff  # liac-arff
    except ImportError:
        arff = None
    if arff is None or not hasattr(arff, "ArffDecoder"):
        raise ImportError(
            "Reading ARFF files needs the liac-arff package: pip install liac-arff "
            '(or pip install -e ".[arff]").'
        )
    return arff


def read_mulan_xml(path: str) -> tuple[str, ...]:
    """Label names from a Mulan XML label header (`<labels><label name="..."/>...`)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as e:
        raise ValueError(
            f"{path}: not a readable Mulan XML label header ({e}). The file may be truncated. "
            "Fix: download it again, or pass num_labels=L instead."
        ) from None
    names = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "label":
            label = element.get("name")
            if not label:
                raise ValueError(f"{path}: a <label> element has no name attribute.")
            names.append(label)
    if not names:
        raise ValueError(f"{path}: the XML label header lists no <label name=...> element.")
    return validation.check_names(names, expected=len(names), kind="label", source=path)


def xml_candidates(arff_path: str) -> list[str]:
    """Where a Mulan XML header for `arff_path` is looked for."""
    directory = os.path.dirname(arff_path)
    stem = _stem(arff_path)
    candidates = [os.path.join(directory, stem + ".xml")]
    m = re.match(r"^(.*?)[-_]?(train|test|val|valid|validation)(?:[-_]sparse)?$", stem, re.I)
    if m and m.group(1):
        candidates.append(os.path.join(directory, m.group(1) + ".xml"))
    return candidates


def _value_map(values, attr: str, column: int, source: str) -> dict:
    """Nominal value -> number, or ValueError when the values are not numbers or booleans."""
    mapping = {}
    try:
        for v in values:
            mapping[v] = float(v)
        return mapping
    except ValueError:
        pass
    lowered = {v: str(v).strip().lower() for v in values}
    if all(low in _TRUE | _FALSE for low in lowered.values()):
        return {v: (1.0 if low in _TRUE else 0.0) for v, low in lowered.items()}
    raise ValueError(
        f"{source}: attribute {attr!r} (column {column}) is nominal with values "
        f"{{{', '.join(map(str, values))}}}; only numeric, 0/1 and true/false or yes/no nominal "
        "attributes can be read. Fix: one-hot encode or drop it before loading."
    )


def _bad_cell(name: str, j: int, kind, value: str) -> str | None:
    """Why `value` does not fit attribute `name` (column j), or None when it fits."""
    if value in ("?", ""):
        return None
    if isinstance(kind, (list, tuple)):
        if value not in kind:
            return (
                f"column {j} (attribute {name!r}) has value {value!r}, not one of "
                f"{{{', '.join(map(str, kind))}}}"
            )
        return None
    try:
        float(value)
    except ValueError:
        return f"column {j} (attribute {name!r}) has value {value!r}, not a number"
    return None


def _row_detail(lines, line: int, attributes) -> str:
    """Best-effort description of what is wrong with data line `line` (1-based)."""
    if not attributes or not 1 <= line <= len(lines):
        return ""
    raw = lines[line - 1].strip()
    cells = []
    if raw.startswith("{"):
        for pair in raw.strip("{} ").split(","):
            index, _, value = pair.strip().partition(" ")
            if not index.isdigit():
                continue
            if int(index) >= len(attributes):
                return f"column index {index} but the header declares {len(attributes)} attributes"
            cells.append((int(index), value.strip().strip("'\"")))
    else:
        cells = [(j, v.strip().strip("'\"")) for j, v in enumerate(raw.split(","))]
    for j, value in cells:
        if j < len(attributes):
            problem = _bad_cell(attributes[j][0], j, attributes[j][1], value)
            if problem:
                return problem
    if not raw.startswith("{") and len(cells) != len(attributes):
        return f"the row has {len(cells)} values but the header declares {len(attributes)}"
    return ""


def _arff_error(path: str, error, decoder, row: int, lines=(), attributes=()) -> ValueError:
    line = getattr(error, "line", -1)
    if line is None or line < 0:
        line = getattr(decoder, "_current_line", -1)
        error.line = line
    where = f"line {line}" + (f" (data row {row})" if row >= 0 else "")
    try:
        text = str(error).rstrip(".")
    except TypeError:  # a message without a line placeholder
        text = type(error).__name__
    detail = _row_detail(lines, line, attributes) if row >= 0 else ""
    if detail:
        text = f"{detail} ({text})"
    return ValueError(
        f"{path}: {where}: {text}. The ARFF file is malformed or truncated (a row with "
        "missing values, an undeclared nominal value, or a cut-off last line). Fix: repair or "
        "download the file again."
    )


def _read_arff_table(path: str):
    """Returns (relation, attributes, matrix [n, A] float64 or float32) of an ARFF file."""
    arff = _require_liac_arff()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); is this an ARFF file?") from None
    sparse = False
    in_data = False
    for line in text.split("\n"):
        s = line.strip()
        if not s or s.startswith("%"):
            continue
        if in_data:
            sparse = s.startswith("{")
            break
        if s.upper().startswith("@DATA"):
            in_data = True
    attempt = [arff.LOD_GEN, arff.DENSE_GEN] if sparse else [arff.DENSE_GEN]
    attributes = []
    for k, return_type in enumerate(attempt):
        decoder = arff.ArffDecoder()
        row = -1
        try:
            obj = decoder.decode(text, return_type=return_type)
            attributes = list(obj["attributes"])
            relation = obj.get("relation", "")
            converters = _arff_converters(attributes, path)
            if return_type == arff.LOD_GEN:
                matrix = _sparse_rows(obj["data"], attributes, converters, path)
            else:
                matrix = _dense_rows(obj["data"], attributes, converters, path)
            return relation, attributes, matrix
        except arff.ArffException as e:
            raise _arff_error(path, e, decoder, row) from None
        except _RowError as e:
            if isinstance(e.error, arff.BadLayout) and k + 1 < len(attempt):
                continue  # a dense row among sparse rows: read again with the dense reader
            lines = text.strip("\r\n ").replace("\r\n", "\n").split("\n")  # as liac-arff counts
            raise _arff_error(path, e.error, decoder, e.row, lines, attributes) from None
    raise AssertionError("unreachable")


class _RowError(Exception):
    def __init__(self, error, row):
        super().__init__(str(error))
        self.error = error
        self.row = row


def _arff_converters(attributes, path):
    converters = []
    for j, (attr, kind) in enumerate(attributes):
        if isinstance(kind, (list, tuple)):
            converters.append(_value_map(kind, attr, j, path))
        elif str(kind).upper() in ("NUMERIC", "REAL", "INTEGER"):
            converters.append(None)
        else:
            raise ValueError(
                f"{path}: attribute {attr!r} (column {j}) has type {kind}; only numeric and "
                "nominal attributes can be read. Fix: drop or encode it before loading."
            )
    return converters


def _dense_rows(rows, attributes, converters, path):
    nominal = [(j, m) for j, m in enumerate(converters) if m is not None]
    out = []
    try:
        for values in rows:
            values = list(values)
            for j, mapping in nominal:
                v = values[j]
                if v is not None:
                    values[j] = mapping[v]
            if None in values:
                values = [np.nan if v is None else v for v in values]
            out.append(np.asarray(values, dtype=np.float64))
    except Exception as e:
        if type(e).__module__ == "arff":
            raise _RowError(e, len(out)) from None
        raise
    if not out:
        return np.zeros((0, len(attributes)), np.float64)
    return np.stack(out)


def _sparse_rows(rows, attributes, converters, path):
    num_attr = len(attributes)
    default = np.zeros(num_attr, np.float64)
    for j, (_, kind) in enumerate(attributes):
        if converters[j] is not None:
            default[j] = converters[j][kind[0]]
    rr, cc, vv = [], [], []
    n = 0
    try:
        for values in rows:
            for j, v in values.items():
                m = converters[j]
                rr.append(n)
                cc.append(j)
                vv.append(np.nan if v is None else (m[v] if m is not None else v))
            n += 1
    except Exception as e:
        if type(e).__module__ == "arff":
            raise _RowError(e, n) from None
        raise
    vals = np.asarray(vv, np.float64)
    rows_a = np.asarray(rr, np.int64)
    cols_a = np.asarray(cc, np.int64)
    big = ~np.isfinite(vals) | (np.abs(np.nan_to_num(vals)) > np.finfo(np.float32).max)
    if np.any(big):
        k = int(np.nonzero(big)[0][0])
        r, j = int(rows_a[k]), int(cols_a[k])
        raise ValueError(
            f"{path}: value {validation.scalar_text(vals[k])} at row {r}, column {j} (attribute "
            f"{attributes[j][0]!r}) is missing, NaN, infinite or outside the float32 range. "
            "Fix: impute or drop it before loading (nothing is repaired automatically)."
        )
    matrix = np.empty((n, num_attr), np.float32)
    matrix[:] = default.astype(np.float32)
    matrix[rows_a, cols_a] = vals
    return matrix


def _arff_label_columns(path, attributes, relation, num_labels, label_location, xml_path):
    names = [a for a, _ in attributes]
    num_attr = len(names)
    if label_location not in LABEL_LOCATIONS:
        raise ValueError(f"label_location={label_location!r}; use 'end' or 'start'.")
    xml_file = xml_path
    if xml_file is None:
        xml_file = next((p for p in xml_candidates(path) if os.path.exists(p)), None)
    elif not os.path.exists(xml_file):
        raise ValueError(f"{xml_file}: the XML label header given for {path} does not exist.")
    meka = _MEKA_RE.search(relation or "")
    meka_count = int(meka.group(1)) if meka else None

    if xml_file is not None:
        xml_labels = read_mulan_xml(xml_file)
        position = {a: j for j, a in enumerate(names)}
        missing = [lab for lab in xml_labels if lab not in position]
        if missing:
            raise ValueError(
                f"{xml_file} names {len(xml_labels)} labels but {path} has no attribute "
                f"{missing[0]!r} ({len(missing)} missing; the ARFF has {num_attr} attributes). "
                "Fix: use the XML that belongs to this ARFF file."
            )
        if num_labels and num_labels != len(xml_labels):
            raise ValueError(
                f"{xml_file} names {len(xml_labels)} labels but num_labels={num_labels}. Fix: "
                "drop num_labels (the XML header decides) or make them agree."
            )
        cols = sorted(position[lab] for lab in xml_labels)
        origin = f"XML header {xml_file}"
    elif num_labels:
        if meka_count is not None and abs(meka_count) != num_labels:
            raise ValueError(
                f"{path}: the @relation header says -C {meka_count} (|C| labels) but "
                f"num_labels={num_labels}. Fix: make them agree."
            )
        if num_labels >= num_attr:
            raise ValueError(
                f"{path}: num_labels={num_labels} but the file has only {num_attr} attributes "
                "(at least one must be a feature)."
            )
        cols = (
            list(range(num_attr - num_labels, num_attr))
            if label_location == "end"
            else list(range(num_labels))
        )
        origin = f"num_labels={num_labels}, label_location={label_location!r}"
    elif meka_count is not None and meka_count != 0:
        count = abs(meka_count)
        if count >= num_attr:
            raise ValueError(
                f"{path}: @relation says -C {meka_count} but the file has only {num_attr} "
                "attributes."
            )
        cols = list(range(count)) if meka_count > 0 else list(range(num_attr - count, num_attr))
        origin = f"MEKA header -C {meka_count}"
    else:
        looked = ", ".join(xml_candidates(path))
        raise ValueError(
            f"{path}: cannot tell which attributes are labels: no Mulan XML header ({looked}) "
            "and no MEKA '-C L' in @relation. Fix: pass num_labels=L (config: "
            "--config.num_labels_arff=L) with label_location='end' (default, last L "
            "attributes) or 'start' (first L), or put the Mulan XML beside the file."
        )
    if not cols or len(cols) >= num_attr:
        raise ValueError(f"{path}: {origin} leaves no feature attributes.")
    return np.asarray(cols, np.int64), origin


def read_arff(
    path: str,
    *,
    num_labels: int = 0,
    label_location: str = "end",
    xml_path: str | None = None,
) -> dataset_lib.Dataset:
    """Reads a Mulan/MEKA ARFF file, dense or sparse (see the module docstring for labels)."""
    relation, attributes, matrix = _read_arff_table(path)
    label_cols, _ = _arff_label_columns(
        path, attributes, relation, num_labels, label_location, xml_path
    )
    is_label = np.zeros(len(attributes), bool)
    is_label[label_cols] = True
    feature_cols = np.nonzero(~is_label)[0]
    names = [a for a, _ in attributes]
    label_names = validation.check_names(
        [names[j] for j in label_cols], expected=len(label_cols), kind="label", source=path
    )
    feature_names = tuple(names[j] for j in feature_cols)
    y = validation.check_labels(
        matrix[:, label_cols], source=path, label_names=label_names, file_columns=label_cols
    )
    x = validation.check_features(
        matrix[:, feature_cols],
        source=path,
        feature_names=feature_names,
        file_columns=feature_cols,
    )
    return dataset_lib.Dataset(
        x=x,
        y=y,
        label_names=label_names,
        feature_names=feature_names,
        split=None,
        name=_part_stem(path),
        source=path,
    )


def _part_stem(path: str) -> str:
    stem = _stem(path)
    m = re.match(r"^(.*?)[-_]?(train|test|val|valid|validation)(?:[-_]sparse)?$", stem, re.I)
    return m.group(1) if m and m.group(1) else stem


# ----------------------------------------------------------------------------------------------
# libsvm / Extreme Classification text.


class _LibsvmPart:
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
        if lines and _HEADER_RE.match(lines[0]):
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


def _read_libsvm_parts(paths, *, num_labels=0, num_features=0, index_base=None):
    parts = [_LibsvmPart(p) for p in paths]
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
    for p in headers[1:]:
        ref = headers[0]
        for k, what in ((1, "features"), (2, "labels")):
            if p.header[k] != ref.header[k]:
                raise ValueError(
                    f"{p.path} has {p.header[k]} {what} (header) but {ref.path} has "
                    f"{ref.header[k]}. Fix: all parts of a data set must have the same "
                    "features and labels."
                )
    header_f = headers[0].header[1] if headers else None
    header_l = headers[0].header[2] if headers else None

    # Labels.
    if num_labels and header_l is not None and num_labels != header_l:
        raise ValueError(
            f"{headers[0].path}: the header says {header_l} labels but num_labels={num_labels}."
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

    # Features.
    all_cols = [p.cols for p in parts if p.cols.size]
    has_zero = any(bool(np.any(c == 0)) for c in all_cols)
    if any(bool(np.any(c < 0)) for c in all_cols):
        p = next(p for p in parts if p.cols.size and np.any(p.cols < 0))
        k = int(np.nonzero(p.cols < 0)[0][0])
        raise p.error(int(p.rows[k]), f"negative feature index {int(p.cols[k])}")
    max_index = max((int(c.max()) for c in all_cols), default=-1)
    f_known = header_f or num_features or None
    if header_f and num_features and header_f != num_features:
        raise ValueError(
            f"{headers[0].path}: the header says {header_f} features but "
            f"num_features={num_features}."
        )
    if index_base is None:
        if has_zero:
            base = 0
        elif f_known is not None and max_index == f_known:
            base = 1
        else:
            base = 0 if headers else 1
    elif index_base in (0, 1):
        base = int(index_base)
    else:
        raise ValueError(f"index_base={index_base!r}; use 0, 1 or None (detect).")
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

    datasets = []
    for p in parts:
        x = np.zeros((p.n, num_f), np.float32)
        x[p.rows, p.cols - base] = p.vals
        y = np.zeros((p.n, num_l), np.uint8)
        y[p.label_rows, p.label_cols] = 1
        datasets.append(
            dataset_lib.Dataset(
                x=x,
                y=y,
                label_names=default_names("label", num_l),
                feature_names=default_names("feature", num_f),
                split=None,
                name=_part_stem(p.path),
                source=p.path,
            )
        )
    return datasets


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


def read_libsvm(
    path: str, *, num_labels: int = 0, num_features: int = 0, index_base: int | None = None
) -> dataset_lib.Dataset:
    """Reads a libsvm / Extreme Classification file (see the module docstring)."""
    (ds,) = _read_libsvm_parts(
        [path], num_labels=num_labels, num_features=num_features, index_base=index_base
    )
    return ds


# ----------------------------------------------------------------------------------------------
# Train/test directories and dispatch.


def read_parts(
    directory: str, fmt: str, parts, *, name: str | None = None, **kwargs
) -> dataset_lib.Dataset:
    """Reads train/(val/)test files of one format and concatenates them with a split."""
    paths = [p for _, p in parts]
    if fmt == "arff":
        arff_kwargs = {
            k: kwargs[k] for k in ("num_labels", "label_location", "xml_path") if k in kwargs
        }
        datasets = [read_arff(p, **arff_kwargs) for p in paths]
    elif fmt == "libsvm":
        lib_kwargs = {
            k: kwargs[k] for k in ("num_labels", "num_features", "index_base") if k in kwargs
        }
        datasets = _read_libsvm_parts(paths, **lib_kwargs)
    else:
        raise ValueError(f"{directory}: train/test parts are read for arff and libsvm only.")
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
    split = np.concatenate(
        [
            np.full(ds.num_examples, code, np.int8)
            for (code, _), ds in zip(parts, datasets, strict=True)
        ]
    )
    for (code, path), ds in zip(parts, datasets, strict=True):
        if ds.num_examples == 0:
            raise ValueError(
                f"{path}: the {dataset_lib.SPLIT_NAMES[code]} split is empty (no rows). Fix: "
                "the file must hold at least one example."
            )
    return dataset_lib.Dataset(
        x=np.concatenate([ds.x for ds in datasets]),
        y=np.concatenate([ds.y for ds in datasets]),
        label_names=ref.label_names,
        feature_names=ref.feature_names,
        split=split,
        name=name or ref.name or os.path.basename(os.path.normpath(directory)),
        source=directory,
    )


def read_path(
    path: str,
    *,
    format: str = "auto",  # noqa: A002 - the public keyword of load_dataset
    name: str | None = None,
    num_labels: int = 0,
    meta_offset: int = 0,
    label_location: str = "end",
    xml_path: str | None = None,
    num_features: int = 0,
    index_base: int | None = None,
) -> dataset_lib.Dataset:
    """Reads an existing file or directory in `format` ("auto" detects it)."""
    fmt = normalize_format(format, path)
    if num_labels < 0:
        raise ValueError(f"{path}: num_labels={num_labels} must be >= 0 (0 = from the file).")
    if label_location not in LABEL_LOCATIONS:
        raise ValueError(f"{path}: label_location={label_location!r}; use 'end' or 'start'.")
    common = dict(num_labels=num_labels)
    if os.path.isdir(path):
        if fmt == "auto":
            fmt = detect_format(path)
        if fmt == "mpvae":
            return read_mpvae(path, num_labels=num_labels, meta_offset=meta_offset, name=name)
        found = find_parts(path, fmt, name) if fmt in ("arff", "libsvm") else None
        if found:
            part_fmt, parts = found
            return read_parts(
                path,
                part_fmt,
                parts,
                name=name,
                label_location=label_location,
                xml_path=xml_path,
                num_features=num_features,
                index_base=index_base,
                **common,
            )
        single = _single_data_file(path)
        if single is None:
            raise ValueError(f"{path}: no {fmt} data found in this directory. {_SUPPORTED_TEXT}.")
        path = single
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "npz":
        return read_npz(path, **common)
    if fmt == "mpvae":
        return read_mpvae(path, num_labels=num_labels, meta_offset=meta_offset, name=name)
    if fmt == "arff":
        return read_arff(path, label_location=label_location, xml_path=xml_path, **common)
    return read_libsvm(path, num_features=num_features, index_base=index_base, **common)
