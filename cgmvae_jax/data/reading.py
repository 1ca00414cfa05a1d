"""What the format readers share: their options, names taken from paths, the checked Dataset.

Every reader (`npz`, `mpvae`, `arff`, `libsvm`, `delimited`) takes a path and a `ReadOptions`
and returns a `Dataset` built by `checked_dataset`, so labels, features, names and a split are
checked the same way whatever the format.
"""

import dataclasses
import os
import re

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import validation

LABEL_LOCATIONS = ("end", "start")
# The extensions of data files, longest first so that "x.csv.gz" loses ".csv.gz", not ".gz".
DATA_EXTENSIONS = (
    ".csv.gz",
    ".tsv.gz",
    ".libsvm",
    ".arff",
    ".npz",
    ".npy",
    ".txt",
    ".svm",
    ".csv",
    ".tsv",
    ".xc",
)
PART_NAMES = {
    "train": dataset_lib.TRAIN,
    "test": dataset_lib.TEST,
    "val": dataset_lib.VALIDATION,
    "valid": dataset_lib.VALIDATION,
    "validation": dataset_lib.VALIDATION,
}
_PART_STEM_RE = re.compile(r"^(.*?)[-_]?(train|test|val|valid|validation)(?:[-_]sparse)?$", re.I)


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """What a reader needs to know about files that do not describe themselves fully.

    Attributes:
      num_labels: L for files that do not carry it (MPVAE, ARFF without XML, libsvm without
        header, CSV without `label_prefix`); 0 = from the file. Where the file also gives L,
        both must agree.
      label_location: with `num_labels`, the labels are the "end" (last L) or "start" (first L)
        columns (ARFF attributes, CSV columns).
      label_prefix: CSV/TSV: the columns whose header starts with this are the labels.
      meta_offset: MPVAE layout: leading non-label, non-feature columns of each row.
      xml_path: ARFF: the Mulan XML label header (default: `STEM.xml` beside the file).
      num_features: libsvm without header: F (0 = largest index + 1 - base).
      index_base: libsvm feature indices: 0, 1 or None (detect).
    """

    num_labels: int = 0
    label_location: str = "end"
    label_prefix: str = ""
    meta_offset: int = 0
    xml_path: str | None = None
    num_features: int = 0
    index_base: int | None = None

    def __post_init__(self):
        for field in ("num_labels", "meta_offset", "num_features"):
            value = getattr(self, field)
            if int(value) < 0:
                raise ValueError(f"{field}={value} must be >= 0 (0 = from the file).")
        if self.label_location not in LABEL_LOCATIONS:
            raise ValueError(f"label_location={self.label_location!r}; use 'end' or 'start'.")
        if self.index_base not in (None, 0, 1):
            raise ValueError(f"index_base={self.index_base!r}; use 0, 1 or None (detect).")


def default_names(prefix: str, count: int) -> tuple[str, ...]:
    """('label_0', 'label_1', ...) style names."""
    return tuple(f"{prefix}_{j}" for j in range(count))


def file_stem(path: str) -> str:
    """The file name without its data-file extension ("data/yeast.npz" -> "yeast")."""
    base = os.path.basename(os.path.normpath(path))
    for ext in (*DATA_EXTENSIONS, ".xml"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def part_stem(path: str) -> str:
    """`file_stem` without a train/test/val suffix ("yeast-train.arff" -> "yeast")."""
    stem = file_stem(path)
    m = _PART_STEM_RE.match(stem)
    return m.group(1) if m and m.group(1) else stem


def checked_dataset(
    x,
    y,
    *,
    source: str,
    label_names=None,
    feature_names=None,
    split=None,
    name: str | None = None,
    label_columns=None,
    feature_columns=None,
) -> dataset_lib.Dataset:
    """Checks the arrays read from `source` and builds the Dataset.

    Args:
      x: [n, F] numeric features.
      y: [n, L] labels, each 0 or 1.
      source: the file or directory, named in messages and kept as `Dataset.source`.
      label_names, feature_names: names (default `label_j`, `feature_j`).
      split: optional [n] predefined split codes.
      name: the data set's name (default: `file_stem(source)`).
      label_columns, feature_columns: optional position of each label / feature in the file,
        quoted in messages.

    Raises:
      ValueError: a label that is not 0/1, a non-finite feature, wrong or duplicate names, a bad
        split (see `validation`).
    """
    y = validation.check_labels(
        y, source=source, label_names=label_names, file_columns=label_columns
    )
    x = validation.check_features(
        x, source=source, feature_names=feature_names, file_columns=feature_columns
    )
    if label_names is None:
        label_names = default_names("label", y.shape[1])
    if feature_names is None:
        feature_names = default_names("feature", x.shape[1])
    label_names = validation.check_names(
        label_names, expected=y.shape[1], kind="label", source=source
    )
    feature_names = validation.check_names(
        feature_names, expected=x.shape[1], kind="feature", source=source
    )
    if split is not None:
        split = validation.check_split(split, x.shape[0], source=source)
    return dataset_lib.Dataset(
        x=x,
        y=y,
        label_names=label_names,
        feature_names=feature_names,
        split=split,
        name=file_stem(source) if name is None else name,
        source=source,
    )
