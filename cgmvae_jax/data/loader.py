"""Finding a data set by name or path, and loading it (with splits) from a config.

A name is looked up in `data_dir` (default `$CGMVAE_DATA`, else `./data`) as, in order,
`{data_dir}/{name}.npz`, the directory `{data_dir}/{name}/` (MPVAE layout or train/test
files), `{data_dir}/{name}.arff`, `{data_dir}/{name}.csv` and `{data_dir}/{name}.tsv`.
Anything with a path separator or a data-file extension is taken as a path.
"""

import dataclasses
import difflib
import os

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import delimited, formats, mpvae, reading, synthetic, validation
from cgmvae_jax.data import fetching as fetch_lib
from cgmvae_jax.data import splits as splits_lib

DEMO_COMMAND = "python launch/train.py --config=configs/demo.py"
DATA_DIR_ENV = "CGMVAE_DATA"
_PATH_EXTENSIONS = (*reading.DATA_EXTENSIONS, ".gz", ".zip")


def default_data_dir() -> str:
    """`$CGMVAE_DATA` when set and not empty, else `./data`.

    The one definition of the default (`config_lib` uses it for `config.data_dir`).
    """
    return os.environ.get(DATA_DIR_ENV) or "./data"


def looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or os.path.isabs(text)
        or text.lower().endswith(_PATH_EXTENSIONS)
    )


def resolve(name_or_path, data_dir=None) -> tuple[str | None, list[str]]:
    """Returns (existing path or None, the paths that were looked for)."""
    text = os.path.expanduser(os.fspath(name_or_path))
    if looks_like_path(text) or fetch_lib.is_url(text):
        return (text if os.path.exists(text) else None), [text]
    directory = os.path.expanduser(os.fspath(data_dir or default_data_dir()))
    candidates = [
        os.path.join(directory, f"{text}.npz"),
        os.path.join(directory, text) + os.sep,
        os.path.join(directory, f"{text}.arff"),
        os.path.join(directory, f"{text}.csv"),
        os.path.join(directory, f"{text}.tsv"),
    ]
    for candidate in candidates:
        if candidate.endswith(os.sep):
            if os.path.isdir(candidate):
                return candidate.rstrip(os.sep), candidates
        elif os.path.isfile(candidate):
            return candidate, candidates
    if os.path.exists(text):  # a bare relative path in the working directory
        return text, candidates + [text]
    return None, candidates


def _names_in(directory: str) -> dict[str, str]:
    """Data set name (lower case) -> how to write it, for the data files and folders present."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return {}
    names = {}
    for entry in entries:
        if entry.startswith("."):
            continue
        if os.path.isdir(os.path.join(directory, entry)):
            names[entry.lower()] = entry
        elif entry.lower().endswith(_PATH_EXTENSIONS):
            names[reading.file_stem(entry).lower()] = reading.file_stem(entry)
    return names


def did_you_mean(name: str, data_dir=None) -> list[str]:
    """Close spellings of `name`: data sets in `data_dir` first, then the names the project knows
    (the fetch registry and the paper's data sets)."""
    present = _names_in(os.path.expanduser(os.fspath(data_dir or default_data_dir())))
    known = {n.lower(): n for n in (*fetch_lib.REGISTRY, *mpvae.KNOWN_LABEL_COUNTS)}
    candidates = {k: v for k, v in {**known, **present}.items() if v != name}
    matches = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.6)
    return sorted((candidates[m] for m in matches), key=lambda n: n.lower() not in present)


def _not_found(name: str, searched, data_dir=None) -> dataset_lib.DatasetNotFoundError:
    """The error for a name or path that is not there, with what to do about it."""
    directory = os.fspath(data_dir or default_data_dir())
    tail = (
        f"Where to get it: {fetch_lib.where_to_get(reading.file_stem(name))}.\n"
        f"To try the code without any data: {DEMO_COMMAND}"
    )
    if looks_like_path(name) or fetch_lib.is_url(name):
        folder = os.path.dirname(os.path.expanduser(name)) or "."
        if fetch_lib.is_url(name):
            hint = " A URL is downloaded by cgmvae_jax.data.fetch (or --config.fetch=True)."
        elif not os.path.isdir(folder):
            hint = f" The directory {folder} does not exist."
        else:
            close = difflib.get_close_matches(os.path.basename(name), sorted(os.listdir(folder)))
            hint = f" Did you mean {os.path.join(folder, close[0])!r}?" if close else ""
        return dataset_lib.DatasetNotFoundError(
            f"Data set {name!r} not found.{hint} Looked for:\n  {name}\n{tail}", searched
        )
    close = did_you_mean(name, data_dir)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if not os.path.isdir(os.path.expanduser(directory)):
        origin = "" if data_dir else f" (the default: ${DATA_DIR_ENV} is not set)"
        if not data_dir and os.environ.get(DATA_DIR_ENV):
            origin = f" (from ${DATA_DIR_ENV})"
        return dataset_lib.DatasetNotFoundError(
            f"data_dir {directory}{origin} does not exist; set --config.data_dir or "
            f"{DATA_DIR_ENV} to the directory that holds {name}.npz (for the shared data sets: "
            f"../shared/datasets), or pass a path.{hint}\n{tail}",
            searched,
        )
    looked = "\n".join(f"  {p}" for p in searched)
    return dataset_lib.DatasetNotFoundError(
        f"Data set {name!r} not found in data_dir {directory}.{hint} Looked for:\n{looked}\n"
        f"(A directory {name}/ may hold the MPVAE layout {name}_data.npy + "
        f"{name}_{{train,val,test}}_idx.npy, or {name}-train/{name}-test ARFF, libsvm or CSV "
        "files.)\nPoint --config.data_dir (or the CGMVAE_DATA environment variable) at the "
        f"directory that holds it.\n{tail}",
        searched,
    )


def load_dataset(
    name_or_path,
    data_dir=None,
    *,
    format="auto",  # noqa: A002 - the documented keyword
    meta_offset: int = 0,
    num_labels: int = 0,
    label_location: str = "end",
    label_prefix: str = "",
    xml_path: str | None = None,
    num_features: int = 0,
    index_base: int | None = None,
    warn: bool = True,
) -> dataset_lib.Dataset:
    """Loads a data set by name (looked up in `data_dir`) or by path.

    Args:
      name_or_path: a name such as "yeast", or a file / directory path.
      data_dir: where names are looked up; default `$CGMVAE_DATA`, else `./data`.
      format: "auto" (detect), "npz", "mpvae", "arff", "libsvm" or "csv" (also TSV).
      meta_offset: MPVAE layout: leading non-label columns of each row.
      num_labels: label count L for files that do not carry it (MPVAE, ARFF without XML,
        libsvm without header, CSV without `label_prefix`); 0 = from the file. Where the file
        also gives L, both must agree.
      label_location: ARFF / CSV with `num_labels`: "end" (last L attributes or columns) or
        "start" (first L).
      label_prefix: CSV/TSV: the columns whose header starts with this are the labels.
      xml_path: ARFF: Mulan XML label header (default: `STEM.xml` beside the file).
      num_features: libsvm without header: F (default: largest index + 1 - base).
      index_base: libsvm feature indices: 0, 1 or None (detect; see `formats`).
      warn: emit `DataWarning`s (rows without labels, constant features, duplicate rows, rows
        in no split).

    Returns:
      A validated Dataset (float32 x, uint8 y in {0, 1}).

    Raises:
      DatasetNotFoundError: nothing at the path / under the name.
      ValueError: unknown format or bad content (the message names file, row/column and fix).
    """
    options = reading.ReadOptions(
        num_labels=int(num_labels),
        label_location=label_location,
        label_prefix=str(label_prefix or ""),
        meta_offset=int(meta_offset),
        xml_path=xml_path,
        num_features=int(num_features),
        index_base=index_base,
    )
    path, searched = resolve(name_or_path, data_dir)
    name = os.fspath(name_or_path)
    if path is None:
        raise _not_found(name, searched, data_dir)
    looked_up = None if looks_like_path(name) else name
    ds = formats.read_path(path, format=format, name=looked_up, options=options)
    if ds.num_examples == 0:
        raise ValueError(f"{ds.source}: the data set has no rows (empty or truncated file).")
    if warn:
        validation.quality_warnings(ds)
    return ds


def dense_rows(x, name: str) -> np.ndarray:
    """`x` as a 2-D float32 array: numpy-like, or a scipy.sparse matrix (densified)."""
    if hasattr(x, "toarray") and hasattr(x, "tocsr"):  # scipy.sparse, without importing scipy
        x = x.toarray()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [n, F] array; got shape {x.shape}.")
    return x


def read_features(path: str, num_features: int) -> np.ndarray:
    """Features [N, F] of new rows from .npy, .npz (array X), or .csv/.tsv (optional header).

    Raises:
      ValueError: an unknown extension, a cell that is not a number, a row of the wrong
        length, NaN/inf, or F other than `num_features`, naming the file and its line or row.
      FileNotFoundError: no such file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such features file.")
    lower = path.lower()
    if lower.endswith(".npy"):
        x = np.load(path, allow_pickle=False)
    elif lower.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            if "X" not in f.files:
                raise ValueError(f"{path}: an .npz features file needs an array named X.")
            x = f["X"]
    elif lower.endswith((".csv", ".tsv")):
        x = delimited.read_numbers(path)
    else:
        raise ValueError(f"{path}: unknown features format; use .npy, .npz (X), .csv or .tsv.")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != num_features:
        raise ValueError(
            f"{path}: features have shape {x.shape}; the model expects [N, {num_features}]."
        )
    return validation.check_features(x, source=path)


def from_arrays(
    x, y, *, x_val=None, y_val=None, label_names=None, name: str = "arrays"
) -> dataset_lib.Dataset:
    """A Dataset of in-memory arrays, with `x_val`/`y_val` as its predefined validation split.

    Args:
      x: Features [n, F]: numpy-like, or a scipy.sparse matrix (densified).
      y: Labels [n, L], each 0 or 1.
      x_val, y_val: Optional validation rows (both or neither). Without them the data have no
        predefined split (`make_splits` draws train/validation/test); with them x, y are the
        training part (a test part, used only for the results, is carved from it).
      label_names: L names (default `label_j`).
      name: The data set's name.

    Raises:
      ValueError: bad shapes, a NaN/inf feature or a label that is not 0/1, naming the
        argument, the row and the column.
    """
    if (x_val is None) != (y_val is None):
        raise ValueError("Give both x_val and y_val, or neither.")
    parts = [("x", "y", x, y)]
    if x_val is not None:
        parts.append(("x_val", "y_val", x_val, y_val))
    xs, ys = [], []
    for x_name, y_name, xp, yp in parts:
        xp = validation.check_features(dense_rows(xp, x_name), source=x_name)
        yp = validation.check_labels(dense_rows(yp, y_name), source=y_name)
        if xp.shape[0] != yp.shape[0]:
            raise ValueError(
                f"{x_name} has {xp.shape[0]} rows but {y_name} has {yp.shape[0]}; they must "
                "have one row per example."
            )
        xs.append(xp)
        ys.append(yp)
    if len(xs) == 2 and (xs[1].shape[1], ys[1].shape[1]) != (xs[0].shape[1], ys[0].shape[1]):
        raise ValueError(
            f"x_val, y_val have {xs[1].shape[1]} features and {ys[1].shape[1]} labels; x, y "
            f"have {xs[0].shape[1]} and {ys[0].shape[1]}."
        )
    split = None
    if len(xs) == 2:
        split = np.concatenate(
            [np.full(len(xs[0]), dataset_lib.TRAIN), np.full(len(xs[1]), dataset_lib.VALIDATION)]
        ).astype(np.int8)
    return reading.checked_dataset(
        np.concatenate(xs),
        np.concatenate(ys),
        source=name,
        label_names=label_names,
        split=split,
        name=name,
    )


def load_from_config(
    config, dataset: dataset_lib.Dataset | None = None
) -> tuple[dataset_lib.Dataset, splits_lib.Splits]:
    """Loads `config.dataset` (or takes `dataset`) and splits it as the config says.

    Uses config.dataset, data_dir, data_format, meta_offset, num_labels_arff (the label count
    for ARFF without XML, MPVAE, libsvm and CSV files), label_location (optional, default
    "end"), label_prefix (CSV/TSV label columns),
    fetch, split ("random" ignores a predefined split), split_seed, val_fraction,
    test_fraction, train_fraction, standardize, and for dataset == "synthetic" the synthetic_*
    fields. With `config.fetch` a data set that is not found locally is downloaded into the
    cache (`fetch.fetch`).

    `config.split_seed` (default 1) seeds the split, the train_fraction subsample and the
    synthetic data; `config.seed` varies only the model, so runs with different model seeds
    see the same rows.
    """
    split_seed = int(config.get("split_seed", 1))
    name = str(config.dataset)
    if dataset is not None:
        ds = dataset
    elif name == "synthetic":
        ds = synthetic.synthetic_dataset(
            int(config.synthetic_examples),
            int(config.synthetic_features),
            int(config.synthetic_labels),
            seed=split_seed,
        )
    else:
        kwargs = dict(
            format=config.get("data_format", "auto"),
            meta_offset=int(config.get("meta_offset", 0)),
            num_labels=int(config.get("num_labels_arff", 0)),
            label_location=config.get("label_location", "end"),
            label_prefix=config.get("label_prefix", ""),
        )
        try:
            ds = load_dataset(name, config.get("data_dir") or None, **kwargs)
        except dataset_lib.DatasetNotFoundError as not_found:
            if not config.get("fetch", False):
                raise
            ds = _fetch_and_load(name, not_found, kwargs)
    if config.get("split", "predefined") == "random" and ds.split is not None:
        # The paper's protocol: a seeded random train/val/test split of all rows.
        ds = dataclasses.replace(ds, split=None)
    splits = splits_lib.make_splits(
        ds,
        seed=split_seed,
        val_fraction=float(config.val_fraction),
        test_fraction=float(config.test_fraction),
        train_fraction=float(config.train_fraction),
        standardize=bool(config.standardize),
    )
    return ds, splits


def _fetch_and_load(name: str, not_found, kwargs) -> dataset_lib.Dataset:
    """`config.fetch`: downloads `name` into the cache and loads it."""
    fetchable = name in fetch_lib.REGISTRY or fetch_lib.is_url(name) or name.startswith("openml:")
    if not fetchable:
        raise dataset_lib.DatasetNotFoundError(
            f"{not_found}\n--config.fetch=True cannot download {name!r}: it is not in the fetch "
            f"registry ({', '.join(sorted(fetch_lib.REGISTRY))}), an openml:ID or a URL.",
            not_found.searched,
        )
    try:
        path = fetch_lib.fetch(name)
    except (OSError, ValueError) as e:  # FetchError is an OSError
        raise dataset_lib.DatasetNotFoundError(
            f"{not_found}\nDownloading it (--config.fetch=True) failed: {e}", not_found.searched
        ) from None
    ds = load_dataset(path, **kwargs)
    expected = fetch_lib.REGISTRY.get(name)
    if expected is not None and ds.num_labels != expected.num_labels:
        raise ValueError(
            f"{ds.source}: fetched {name} has {ds.num_labels} labels, expected "
            f"{expected.num_labels}. The download is not the expected data set."
        )
    return ds
