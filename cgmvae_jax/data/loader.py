"""Finding a data set by name or path, and loading it (with splits) from a config.

A name is looked up in `data_dir` (default `$CGMVAE_DATA`, else `./data`) as, in order,
`{data_dir}/{name}.npz`, the directory `{data_dir}/{name}/` (MPVAE layout or train/test
files), `{data_dir}/{name}.arff`, `{data_dir}/{name}.csv` and `{data_dir}/{name}.tsv`.
Anything with a path separator or a data-file extension is taken as a path.
"""

import dataclasses
import os

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import fetching as fetch_lib
from cgmvae_jax.data import formats, reading, synthetic, validation
from cgmvae_jax.data import splits as splits_lib

DEMO_COMMAND = "python launch/train.py --config=configs/demo.py"
_PATH_EXTENSIONS = (
    ".npz",
    ".npy",
    ".arff",
    ".txt",
    ".svm",
    ".libsvm",
    ".xc",
    ".csv",
    ".tsv",
    ".gz",
    ".zip",
)


def default_data_dir() -> str:
    """`$CGMVAE_DATA` when set, else `./data`."""
    return os.environ.get("CGMVAE_DATA") or "./data"


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or os.path.isabs(text)
        or text.lower().endswith(_PATH_EXTENSIONS)
    )


def resolve(name_or_path, data_dir=None) -> tuple[str | None, list[str]]:
    """Returns (existing path or None, the paths that were looked for)."""
    text = os.path.expanduser(os.fspath(name_or_path))
    if _looks_like_path(text) or fetch_lib.is_url(text):
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


def not_found_message(name: str, searched, data_dir=None) -> str:
    looked = "\n".join(f"  {p}" for p in searched)
    directory = data_dir or default_data_dir()
    return (
        f"Data set {name!r} not found. Looked for:\n{looked}\n"
        f"(data_dir = {directory}; a directory {name}/ may hold the MPVAE layout "
        f"{name}_data.npy + {name}_{{train,val,test}}_idx.npy, or {name}-train/{name}-test "
        "ARFF, libsvm or CSV files.)\n"
        f"Where to get it: {fetch_lib.where_to_get(name)}.\n"
        "Point --config.data_dir (or the CGMVAE_DATA environment variable) at the directory "
        "that holds it.\n"
        f"To try the code without any data: {DEMO_COMMAND}"
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
        raise dataset_lib.DatasetNotFoundError(
            not_found_message(name, searched, data_dir), searched
        )
    looked_up = None if _looks_like_path(name) else name
    ds = formats.read_path(path, format=format, name=looked_up, options=options)
    if ds.num_examples == 0:
        raise ValueError(f"{ds.source}: the data set has no rows (empty or truncated file).")
    if warn:
        validation.quality_warnings(ds)
    return ds


def load_from_config(config) -> tuple[dataset_lib.Dataset, splits_lib.Splits]:
    """Loads `config.dataset` and splits it as the config says.

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
    if name == "synthetic":
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
