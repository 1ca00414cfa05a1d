"""The experiment grids: data sets x variants x train fractions x split seeds, and their names.

A grid's cells are named after the variant: `cgmvae` (the data set's full training split),
`cgmvae@0.1` (a train fraction), `cgmvae-split4` (the seeded random split 4) and
`cgmvae-splits` (the rows averaging a variant over the random splits).
"""

import dataclasses

MAIN_DATASETS = (
    "yeast",
    "scene",
    "emotions",
    "sider",
    "reuters",
    "delicious",
    "bibtex",
    "enron",
    "medical",
)
VARIANT_OVERRIDES = {
    "cgmvae": {},
    "unimodal": {"prior": "unimodal"},
    "mixture_only": {"contrastive_weight": 0.0},
    "contrastive_only": {"kl_weight": 0.0},
    "br": {},
    "mlp_bce": {"model": "mlp", "loss": "bce"},
    "mlp_asl": {"model": "mlp", "loss": "asl"},
    "mlp_asl_kmcl": {"model": "mlp", "loss": "asl+kmcl"},
    "mlp_bce_clml": {"model": "mlp", "loss": "bce+clml"},
    "mlp_asl_clml": {"model": "mlp", "loss": "asl+clml"},
}
VARIANT_TITLES = {
    "cgmvae": "C-GMVAE",
    "unimodal": "uni-Gaussian prior",
    "mixture_only": "mixture only (no contrastive)",
    "contrastive_only": "contrastive only (no KL)",
    "br": "binary relevance",
    "mlp_bce": "MLP, binary cross-entropy",
    "mlp_asl": "MLP, asymmetric loss",
    "mlp_asl_kmcl": "MLP, ASL + KMCL",
    "mlp_bce_clml": "MLP, BCE + CLML",
    "mlp_asl_clml": "MLP, ASL + CLML",
}


@dataclasses.dataclass(frozen=True)
class Grid:
    """Data sets x variants x train fractions; `num_epochs` None keeps each config's value."""

    datasets: tuple[str, ...]
    variants: tuple[str, ...]
    fractions: tuple[float, ...] = (1.0,)
    num_epochs: int | None = None
    description: str = ""
    # Seeds of random 80/10/10 splits (config.split="random", config.split_seed=k and
    # config.seed=k); () keeps each data set's own split. A grid with split seeds writes
    # reproduce_<grid>.json.
    split_seeds: tuple[int, ...] = ()
    paper: bool = False  # the paper's numbers beside ours in the `official` table


GRIDS = {
    "main": Grid(
        MAIN_DATASETS,
        ("cgmvae", "br"),
        description="Main table (paper Tables 1-3): C-GMVAE and binary relevance.",
        paper=True,
    ),
    "ablation": Grid(
        ("yeast", "scene", "emotions", "sider"),
        ("unimodal", "mixture_only", "contrastive_only", "cgmvae"),
        description="Ablation (paper Table 4): prior and loss terms.",
    ),
    "fraction": Grid(
        ("yeast", "scene"),
        ("cgmvae", "unimodal", "br"),
        (0.1, 0.5, 1.0),
        description="Less training data (paper Table 5 / Fig. 2): train_fraction 0.1, 0.5, 1.0.",
    ),
    "losses": Grid(
        ("yeast", "scene", "emotions", "sider"),
        ("mlp_bce", "mlp_asl", "mlp_asl_kmcl", "mlp_bce_clml", "mlp_asl_clml", "cgmvae"),
        description=(
            "Loss library (issue 7): one feature MLP (feature_hidden, dropout, optimiser and "
            "schedule of the data set's config) trained with each loss, beside C-GMVAE."
        ),
    ),
    "paper_split": Grid(
        ("yeast", "scene", "sider"),
        ("cgmvae", "br"),
        split_seeds=(1, 4, 7),
        description=(
            "The paper's split protocol: C-GMVAE and binary relevance on three seeded random "
            "80/10/10 splits (split seeds 1, 4, 7) of all rows of each data set (predefined "
            "splits ignored), and the mean over the splits."
        ),
        paper=True,
    ),
    # configs/smoke.py (synthetic data, tiny model): exercises the whole pipeline in tests.
    "smoke": Grid(
        ("smoke",),
        ("cgmvae", "br"),
        num_epochs=2,
        description="Smoke test on synthetic data (not a result).",
    ),
}


SPLIT_TAG = "-split"


def variant_name(variant: str, fraction: float, split_seed: int | None = None) -> str:
    """`variant` for the full training split, else `variant@fraction` (e.g. cgmvae@0.1);
    `-split<k>` appended for the random split of seed k (e.g. cgmvae-split4)."""
    name = variant if float(fraction) == 1.0 else f"{variant}@{float(fraction):g}"
    return name if split_seed is None else f"{name}{SPLIT_TAG}{int(split_seed)}"


def splits_mean_name(variant: str, fraction: float = 1.0) -> str:
    """Name of the rows averaging a variant over the random splits, e.g. cgmvae-splits."""
    return f"{variant_name(variant, fraction)}{SPLIT_TAG}s"


def is_splits_mean(name: str) -> bool:
    """Whether `name` is a `splits_mean_name` (rows derived from the per-split rows)."""
    return name.endswith(f"{SPLIT_TAG}s")


def parse_variant(name: str) -> tuple[str, float]:
    """Base variant and fraction of a name: ("cgmvae", 0.1) for "cgmvae@0.1" (a `-split…`
    suffix is dropped: ("cgmvae", 1.0) for "cgmvae-split4" and "cgmvae-splits")."""
    name = name.partition(SPLIT_TAG)[0]
    base, _, fraction = name.partition("@")
    return base, float(fraction) if fraction else 1.0


def grid_rows(grid: Grid, variant: str) -> list[tuple[str, float, tuple]]:
    """The table rows of one base variant in order, as (name, fraction, splits): one per
    fraction (splits (None,): the data set's own split), or one per split seed k (splits (k,))
    followed by the mean over the splits (splits: every split seed)."""
    rows = []
    for fraction in grid.fractions:
        if grid.split_seeds:
            rows += [(variant_name(variant, fraction, k), fraction, (k,)) for k in grid.split_seeds]
            rows.append((splits_mean_name(variant, fraction), fraction, grid.split_seeds))
        else:
            rows.append((variant_name(variant, fraction), fraction, (None,)))
    return rows


def grid_names(grid: Grid, variant: str) -> list[str]:
    """The names of `grid_rows`."""
    return [name for name, _, _ in grid_rows(grid, variant)]


def json_name(grid_name: str) -> str:
    """reproduce.json, or reproduce_<grid>.json for a grid of random-split seeds (its rows
    are not the data sets' standard splits, so they are kept apart)."""
    return f"reproduce_{grid_name}.json" if GRIDS[grid_name].split_seeds else "reproduce.json"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One entry of a grid: a data set, a base variant, a train fraction, optionally the seed
    of a random split, and whether it uses the data set's tuned config file."""

    dataset: str
    variant: str
    fraction: float
    split_seed: int | None = None
    tuned: bool = False  # configs/<dataset>_tuned.py instead of configs/<dataset>.py

    @property
    def name(self) -> str:
        return variant_name(self.variant, self.fraction, self.split_seed)

    @property
    def config_name(self) -> str:
        """The name of the cell's config file: `<dataset>` or `<dataset>_tuned`."""
        return f"{self.dataset}_tuned" if self.tuned else self.dataset

    @property
    def label(self) -> str:
        """`dataset/name`, as cells are reported."""
        return f"{self.dataset}/{self.name}"

    @property
    def mean_name(self) -> str:
        """The name of the table row this cell feeds: its own, or its variant's mean over the
        random splits."""
        if self.split_seed is None:
            return self.name
        return splits_mean_name(self.variant, self.fraction)


def _check_choices(grid: Grid, **chosen) -> None:
    """ValueError naming the flag when a chosen value is not in the grid."""
    for flag, values in chosen.items():
        known = getattr(grid, flag)
        unknown = sorted(set(values or ()) - set(known))
        unknown = [f"{u:g}" if isinstance(u, float) else str(u) for u in unknown]
        known = [f"{k:g}" if isinstance(k, float) else str(k) for k in known]
        if unknown:
            raise ValueError(
                f"--{flag} {','.join(unknown)} not in this grid ({', '.join(known) or 'none'})."
            )


def grid_cells(
    grid: Grid,
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
    fractions: list[float] | None = None,
    split_seeds: list[int] | None = None,
) -> list[Cell]:
    """The grid's cells in table order (data set, variant, fraction, split seed), optionally
    only those of some data sets, base variants, train fractions and split seeds."""
    fractions = None if fractions is None else [float(f) for f in fractions]
    try:
        split_seeds = None if split_seeds is None else [int(k) for k in split_seeds]
    except ValueError as e:
        raise ValueError(f"--split_seeds takes integers (e.g. 1,4): {e}") from e
    _check_choices(
        grid, datasets=datasets, variants=variants, fractions=fractions, split_seeds=split_seeds
    )
    return [
        Cell(d, v, f, s)
        for d in grid.datasets
        if not datasets or d in datasets
        for v in grid.variants
        if not variants or v in variants
        for f in grid.fractions
        if not fractions or f in fractions
        for s in grid.split_seeds or (None,)
        if not split_seeds or s in split_seeds
    ]
