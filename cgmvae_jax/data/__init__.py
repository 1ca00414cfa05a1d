"""Data layer: formats, validation, splits, the synthetic data set and downloads.

User documentation: docs/data.md (formats, splits, checks, converting, downloading).

Host-side numpy only (no jax import). Typical use:

    from cgmvae_jax import data

    ds = data.load_dataset("yeast", data_dir="../shared/datasets")
    splits = data.make_splits(ds, seed=1)          # validation carved from the Mulan train part
    ds, splits = data.load_from_config(config)     # what launch/train.py does (config.split_seed)
"""

from cgmvae_jax.data.dataset import (
    ConstantFeaturesWarning,
    Dataset,
    DatasetNotFoundError,
    DataWarning,
    DuplicateRowsWarning,
    NoLabelRowsWarning,
    UnassignedRowsWarning,
    save_npz,
    summarize,
    summary_table,
)
from cgmvae_jax.data.fetching import REGISTRY, ChecksumError, FetchError, fetch
from cgmvae_jax.data.formats import FORMATS, detect_format
from cgmvae_jax.data.loader import (
    default_data_dir,
    from_arrays,
    load_dataset,
    load_from_config,
    read_features,
)
from cgmvae_jax.data.splits import Splits, make_splits
from cgmvae_jax.data.synthetic import synthetic_dataset

__all__ = [
    "ChecksumError",
    "ConstantFeaturesWarning",
    "DataWarning",
    "Dataset",
    "DatasetNotFoundError",
    "DuplicateRowsWarning",
    "FORMATS",
    "FetchError",
    "NoLabelRowsWarning",
    "REGISTRY",
    "Splits",
    "UnassignedRowsWarning",
    "default_data_dir",
    "detect_format",
    "fetch",
    "from_arrays",
    "load_dataset",
    "load_from_config",
    "make_splits",
    "read_features",
    "save_npz",
    "summarize",
    "summary_table",
    "synthetic_dataset",
]
