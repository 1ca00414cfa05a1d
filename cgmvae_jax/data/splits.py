"""Train / validation / test splits, training-fraction subsampling and standardisation.

Rules (`make_splits`):

* No predefined split: a seeded random split, test = round(test_fraction * n) rows,
  validation = round(val_fraction * n) rows, train = the rest (80/10/10 by default).
* A predefined split is used as is. A part it lacks is carved from its training rows:
  validation = round(val_fraction * n_train_part) rows (e.g. yeast: 10% of the 1500 Mulan
  training rows = 150) and, when there is no test part, test = round(test_fraction *
  n_train_part) rows. Rows marked -1 (in no split) are left out.
* `train_fraction` < 1 keeps round(train_fraction * n_train) training rows (at least 1),
  chosen with the seed; validation and test do not change with it, and for one seed a smaller
  fraction keeps a subset of the rows a larger one keeps.
* `standardize`: features are z-scored with the mean and standard deviation of the final
  training rows (float64 statistics; a standard deviation of 0 is replaced by 1).

Everything is a deterministic function of (dataset, seed, fractions); `load_from_config`
passes `config.split_seed` as the seed. Row indices inside each split are in ascending order.
"""

import dataclasses

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib

_CARVE_STREAM, _SUBSAMPLE_STREAM = 0, 1


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """Arrays of the three splits.

    Attributes:
      train_x, val_x, test_x: float32 [n_split, F] features (standardised when
        `feature_mean` is set).
      train_y, val_y, test_y: uint8 [n_split, L] labels.
      train_index, val_index, test_index: int64 [n_split] row numbers into the Dataset.
      description: how the splits were made, e.g. "predefined train/test; validation = 10% of
        the predefined train part (150 rows, seed 1); train 1350 / val 150 / test 917".
      feature_mean, feature_std: float32 [F] training statistics used for standardisation
        (x - mean) / std, or None when not standardised.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    train_index: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    val_index: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_index: np.ndarray
    description: str
    feature_mean: np.ndarray | None = None
    feature_std: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"Splits(train={len(self.train_index)}, val={len(self.val_index)}, "
            f"test={len(self.test_index)}, description={self.description!r})"
        )


def _count(fraction: float, n: int) -> int:
    return int(np.floor(fraction * n + 0.5))


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream])


def feature_statistics(x: np.ndarray, chunk_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation in float64, in row chunks (bounded memory).

    Returns:
      (mean, std) float32 [F]; std is 1 where a feature is constant.
    """
    n, f = x.shape
    total = np.zeros(f, np.float64)
    for start in range(0, n, chunk_rows):
        total += x[start : start + chunk_rows].sum(axis=0, dtype=np.float64)
    mean = total / max(n, 1)
    sq = np.zeros(f, np.float64)
    for start in range(0, n, chunk_rows):
        d = x[start : start + chunk_rows].astype(np.float64) - mean
        sq += np.einsum("ij,ij->j", d, d)
    std = np.sqrt(sq / max(n, 1))
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _check_fraction(name: str, value: float, low_open: bool, high_closed: bool) -> float:
    value = float(value)
    ok = (value > 0 if low_open else value >= 0) and (value <= 1 if high_closed else value < 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{']' if high_closed else ')'}"
        raise ValueError(f"{name}={value} must be in {interval} (config: --config.{name}=...).")
    return value


def _random_parts(n, rng, seed, val_fraction, test_fraction, where):
    """(train, val, test, description) of a seeded random split of all n rows."""
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"{where}: val_fraction={val_fraction} + test_fraction={test_fraction} leave no "
            "training rows. Fix: lower them (defaults 0.1 and 0.1)."
        )
    perm = rng.permutation(n)
    n_test, n_val = _count(test_fraction, n), _count(val_fraction, n)
    how = (
        f"random split of {n} rows (seed {seed}): validation {val_fraction:g}, test "
        f"{test_fraction:g}, train the rest"
    )
    return perm[n_test + n_val :], perm[n_test : n_test + n_val], perm[:n_test], how


def _predefined_parts(split, rng, seed, val_fraction, test_fraction):
    """(train, val, test, description) of a predefined split; a missing validation or test
    part is carved from the training part."""
    train = np.nonzero(split == dataset_lib.TRAIN)[0]
    val = np.nonzero(split == dataset_lib.VALIDATION)[0]
    test = np.nonzero(split == dataset_lib.TEST)[0]
    have = [name for name, p in (("train", train), ("validation", val), ("test", test)) if p.size]
    how = "predefined " + "/".join(have)
    carve_val, carve_test = val.size == 0, test.size == 0
    if carve_val or carve_test:
        n_part = train.size
        perm = train[rng.permutation(n_part)]
        n_val = _count(val_fraction, n_part) if carve_val else 0
        n_test = _count(test_fraction, n_part) if carve_test else 0
        if carve_val:
            val = perm[:n_val]
            how += (
                f"; validation = {val_fraction:.0%} of the predefined train part "
                f"({n_val} rows, seed {seed})"
            )
        if carve_test:
            test = perm[n_val : n_val + n_test]
            how += (
                f"; test = {test_fraction:.0%} of the predefined train part "
                f"({n_test} rows, seed {seed})"
            )
        train = perm[n_val + n_test :]
    unused = int(np.sum(split == dataset_lib.UNUSED))
    if unused:
        how += f"; {unused} rows in no split left out"
    return train, val, test, how


def _check_not_empty(train, val, test, how, n, where):
    for part_name, part, fix in (
        ("train", train, "lower val_fraction/test_fraction or use more data"),
        ("validation", val, "raise val_fraction (a predefined split needs train rows to carve)"),
        ("test", test, "raise test_fraction"),
    ):
        if part.size == 0:
            raise ValueError(
                f"{where}: the {part_name} split is empty ({how}; n = {n}). Fix: {fix}."
            )


def make_splits(
    dataset: dataset_lib.Dataset,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    train_fraction: float = 1.0,
    standardize: bool = True,
) -> Splits:
    """Splits `dataset` into train / validation / test (rules in the module docstring).

    Args:
      dataset: the data set.
      seed: seeds the random split, the carving of missing parts and the subsampling
        (`load_from_config` passes `config.split_seed`, not the model's `config.seed`).
      val_fraction: validation share of the whole data (random split) or of the predefined
        training part (carving).
      test_fraction: test share, used only when there is no predefined test part.
      train_fraction: fraction of the training rows kept (paper Table 5).
      standardize: z-score features with training statistics.

    Returns:
      Splits.

    Raises:
      ValueError: a fraction outside its range, or a split that would be empty.
    """
    train_fraction = _check_fraction("train_fraction", train_fraction, True, True)
    val_fraction = _check_fraction("val_fraction", val_fraction, False, False)
    test_fraction = _check_fraction("test_fraction", test_fraction, False, False)
    n = dataset.num_examples
    where = dataset.source or dataset.name
    rng = _rng(seed, _CARVE_STREAM)
    if dataset.split is None:
        parts = _random_parts(n, rng, seed, val_fraction, test_fraction, where)
    else:
        parts = _predefined_parts(dataset.split, rng, seed, val_fraction, test_fraction)
    train, val, test, how = parts
    _check_not_empty(train, val, test, how, n, where)

    train = np.sort(train)
    if train_fraction < 1.0:
        keep = max(1, _count(train_fraction, train.size))
        chosen = _rng(seed, _SUBSAMPLE_STREAM).permutation(train.size)[:keep]
        how += f"; train_fraction {train_fraction:g}: {keep} of {train.size} training rows"
        train = np.sort(train[chosen])
    val, test = np.sort(val), np.sort(test)
    how += f"; train {train.size} / val {val.size} / test {test.size}"

    train_x = dataset.x[train]
    val_x = dataset.x[val]
    test_x = dataset.x[test]
    mean = std = None
    if standardize:
        mean, std = feature_statistics(train_x)
        for part in (train_x, val_x, test_x):  # fresh copies from fancy indexing
            part -= mean
            part /= std
        how += "; features standardised with training statistics"
    return Splits(
        train_x=train_x,
        train_y=dataset.y[train],
        train_index=train.astype(np.int64),
        val_x=val_x,
        val_y=dataset.y[val],
        val_index=val.astype(np.int64),
        test_x=test_x,
        test_y=dataset.y[test],
        test_index=test.astype(np.int64),
        description=how,
        feature_mean=mean,
        feature_std=std,
    )
