r"""Reproduces the paper's tables: runs an experiment grid, collects the results, writes tables.

  # main table: C-GMVAE (3 seeds in one vmapped run per cell) and binary relevance (BR)
  python launch/reproduce.py --grid=main --workdir=runs/reproduce --seeds=3 \
      --data_dir=../shared/datasets
  # ablation (paper Table 4) and less training data (paper Table 5 / Fig. 2)
  python launch/reproduce.py --grid=ablation --workdir=runs/reproduce --data_dir=...
  python launch/reproduce.py --grid=fraction --workdir=runs/reproduce --data_dir=...
  # the paper's split protocol: random 80/10/10 splits with seeds 1, 4, 7 (yeast, scene, sider)
  python launch/reproduce.py --grid=paper_split --workdir=runs/reproduce --data_dir=...
  # the loss library on one MLP (BCE, ASL, ASL+KMCL, BCE+CLML, ASL+CLML) beside C-GMVAE
  python launch/reproduce.py --grid=losses --workdir=runs/reproduce --data_dir=...
  # a shorter grid on two data sets; rebuild the tables from finished runs only
  python launch/reproduce.py --grid=main --datasets=yeast,sider --num_epochs=20 ...
  python launch/reproduce.py --grid=fraction --fractions=0.1 --variants=cgmvae,unimodal ...
  python launch/reproduce.py --grid=paper_split --datasets=sider --split_seeds=4 ...
  python launch/reproduce.py --grid=main --collect_only ...

Every cell (data set x variant x train fraction x split seed) is one call of
`train.train_and_evaluate` in this process, in `WORKDIR/<dataset>/<variant>-s<seeds>-e<epochs>/`
(BR: `WORKDIR/<dataset>/<variant>/`); a cell whose `results.json` exists is not run again, and
a failing cell is reported and skipped. Outputs in `--out` (default benchmarks/results):

* `reproduce.json`: rows {"dataset", "variant", "protocol", "metric", "mean", "std", "seeds",
  "split"} of the test split, accumulated over the grids on the data sets' own splits (a new
  row replaces the row with the same dataset/variant/protocol/metric). "split" is the split
  description of the run's results.json; "std" is the population standard deviation over
  seeds (0 for one run).
* `reproduce_<grid>.md`: one table per threshold protocol, the paper's numbers beside ours,
  the splits, and a header with the command, date, machine and package versions.
* `figures/fraction_macro_f1.png` (grid `fraction`): macro-F1 against the train fraction.
* `reproduce_paper_split.json` (grid `paper_split`, instead of reproduce.json): rows of the
  same keys for each random split (`cgmvae-split4`: 80/10/10 split and model seeds drawn
  with `config.seed = 4`) and their mean over splits (`cgmvae-splits`: mean ± std of the
  per-split means over the splits on record, recomputed on every run; "seeds" counts the
  splits).

Variants: `cgmvae` (the config as is), `unimodal` (prior="unimodal"), `mixture_only`
(contrastive_weight=0), `contrastive_only` (kl_weight=0), `br` (one-vs-rest logistic
regression on the same splits and standardised features, `benchmarks/baselines.py`),
`mlp_<loss>` (model="mlp" trained with that loss: `mlp_bce`, `mlp_asl`, `mlp_asl_kmcl`,
`mlp_bce_clml`, `mlp_asl_clml`, as configs/mlp_*.py, with the data set's other settings);
`<variant>@<fraction>` trains on that fraction of the training split, with the config's
batch size unless that leaves fewer than 4 batches per epoch (then n_train // 4; the run's
config.json and results.json record it); `<variant>-split<k>` trains on the seeded random
80/10/10 split of all rows with `config.split = "random"`, `config.seed = k` (model seeds
k … k + seeds - 1).
"""

import collections
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import itertools
import json
import os
import shlex
import sys
import time
import traceback

import numpy as np
from absl import app, flags, logging

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)  # for `benchmarks.*` when run as `python launch/reproduce.py`

from benchmarks import baselines, hardware  # noqa: E402
from cgmvae_jax import data, metrics  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Grids and variants.

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
TABLE_METRICS = (
    ("example_f1", "ex-F1"),
    ("micro_f1", "mi-F1"),
    ("macro_f1", "ma-F1"),
    ("hamming_accuracy", "HA"),
    ("precision_at_1", "P@1"),
)
PROTOCOL_TEXT = {
    "official": (
        "Best threshold in 0.1…0.9 chosen per metric on the test split itself: how the paper's "
        "tables were produced; optimistic"
    ),
    "val_tuned": (
        "One threshold from 0.05…0.95 chosen on validation macro-F1, applied unchanged to test"
    ),
    "fixed": "Threshold 0.5 for every label and metric",
}
PROTOCOL_ORDER = ("official", "val_tuned", "fixed")


@dataclasses.dataclass(frozen=True)
class Grid:
    """Data sets x variants x train fractions; `num_epochs` None keeps each config's value."""

    datasets: tuple[str, ...]
    variants: tuple[str, ...]
    fractions: tuple[float, ...] = (1.0,)
    num_epochs: int | None = None
    description: str = ""
    # Seeds of random 80/10/10 splits (config.split="random", config.seed=k); () keeps each
    # data set's own split. A grid with split seeds writes reproduce_<grid>.json.
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
            "80/10/10 splits of all rows of each data set (predefined splits ignored), and the "
            "mean over the splits."
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


# ----------------------------------------------------------------------------------------------
# Paper numbers (spec/PAPER_RESULTS.md), test split, `official` protocol.

# C-GMVAE, paper Tables 1-3 (means over 3 seeds; std <= 0.003).
PAPER_CGMVAE = {
    "ebird": (0.576, 0.633, 0.538, 0.847, 0.825),
    "mirflickr": (0.534, 0.575, 0.440, 0.903, 0.732),
    "nus_vec": (0.481, 0.510, 0.226, 0.984, 0.595),
    "yeast": (0.656, 0.665, 0.487, 0.796, 0.751),
    "scene": (0.777, 0.762, 0.769, 0.915, 0.788),
    "sider": (0.771, 0.803, 0.691, 0.767, 0.962),
    "reuters": (0.917, 0.890, 0.582, 0.997, 0.939),
    "bookmarks": (0.392, 0.377, 0.291, 0.992, 0.465),
    "delicious": (0.381, 0.403, 0.197, 0.983, 0.707),
}  # (ex-F1, mi-F1, ma-F1, HA, P@1)
# Baselines from the same tables (ex-F1 / ma-F1 only): the strongest one and BR.
PAPER_BASELINES = {
    "yeast": {"MPVAE": (0.648, 0.482), "BR": (0.630, 0.373)},
    "scene": {"ASL": (0.770, 0.765), "MPVAE": (0.751, 0.750), "BR": (0.606, 0.704)},
    "reuters": {"LaMP": (0.906, 0.520)},
    "delicious": {"BR": (0.174, 0.066)},
}


def paper_rows(dataset: str) -> list[tuple[str, dict[str, float]]]:
    """[(label, {metric: value})] of the paper's numbers for `dataset` (may be empty)."""
    out = []
    if dataset in PAPER_CGMVAE:
        keys = [k for k, _ in TABLE_METRICS]
        out.append(("paper: C-GMVAE", dict(zip(keys, PAPER_CGMVAE[dataset], strict=True))))
    for name, (ex_f1, ma_f1) in PAPER_BASELINES.get(dataset, {}).items():
        out.append((f"paper: {name}", {"example_f1": ex_f1, "macro_f1": ma_f1}))
    return out


# ----------------------------------------------------------------------------------------------
# Running cells.


@dataclasses.dataclass(frozen=True)
class Cell:
    """One entry of a grid: a data set, a base variant, a train fraction and optionally the
    seed of a random split."""

    dataset: str
    variant: str
    fraction: float
    split_seed: int | None = None

    @property
    def name(self) -> str:
        return variant_name(self.variant, self.fraction, self.split_seed)


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
    for flag, chosen, known in (
        ("datasets", datasets, grid.datasets),
        ("variants", variants, grid.variants),
        ("fractions", fractions, grid.fractions),
        ("split_seeds", split_seeds, grid.split_seeds),
    ):
        unknown = sorted(set(chosen or ()) - set(known))
        unknown = [f"{u:g}" if isinstance(u, float) else str(u) for u in unknown]
        known = [f"{k:g}" if isinstance(k, float) else str(k) for k in known]
        if unknown:
            raise ValueError(
                f"--{flag} {','.join(unknown)} not in this grid ({', '.join(known) or 'none'})."
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


def load_config(dataset: str):
    """`configs/<dataset>.py`'s `get_config()`."""
    path = os.path.join(_REPO, "configs", f"{dataset}.py")
    if not os.path.exists(path):
        raise ValueError(f"No config file {path} for data set {dataset!r}.")
    spec = importlib.util.spec_from_file_location(f"configs_{dataset}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def cell_config(
    cell: Cell,
    *,
    seeds: int,
    num_epochs: int | None = None,
    data_dir: str | None = None,
):
    """The config of a cell: the data set's config file plus the variant's overrides."""
    config = load_config(cell.dataset)
    for field, value in VARIANT_OVERRIDES[cell.variant].items():
        config[field] = value
    config.train_fraction = float(cell.fraction)
    config.num_seeds = 1 if cell.variant == "br" else int(seeds)
    if cell.split_seed is not None:
        config.split = "random"  # seeds the split and the models (k, k + 1, ...)
        config.seed = int(cell.split_seed)
    if num_epochs:
        config.num_epochs = int(num_epochs)
    if data_dir:
        config.data_dir = data_dir
    config.progress = False  # one log line per epoch instead of a tqdm bar per run
    return config


# A train fraction keeps the config's batch size unless that leaves fewer batches per epoch.
MIN_BATCHES_PER_EPOCH = 4


def fraction_batch_size(config) -> int:
    """The config's batch size, or n_train // MIN_BATCHES_PER_EPOCH when the training split left
    by `config.train_fraction` holds fewer than MIN_BATCHES_PER_EPOCH batches (e.g. scene at
    0.1 has 109 training rows: batch 27 instead of 128, which would not fit once)."""
    _, splits = data.load_from_config(config)
    n = int(splits.train_x.shape[0])
    return int(min(int(config.batch_size), max(1, n // MIN_BATCHES_PER_EPOCH)))


def cell_workdir(root: str, cell: Cell, config) -> str:
    """Run directory of a cell; seeds and epochs are part of the name (no mixing of runs)."""
    if cell.variant == "br":
        return os.path.join(root, cell.dataset, cell.name)
    leaf = f"{cell.name}-s{int(config.num_seeds)}-e{int(config.num_epochs)}"
    return os.path.join(root, cell.dataset, leaf)


def run_binary_relevance(config, workdir: str, cs=(1.0,)) -> dict:
    """BR on the config's splits; writes and returns a results.json like the trainer's."""
    os.makedirs(workdir, exist_ok=True)
    dataset, splits = data.load_from_config(config)
    results = baselines.binary_relevance_results(
        splits, cs=tuple(cs), threshold=float(config.threshold)
    )
    results = {
        "dataset": dataset.name,
        "model": "binary_relevance",
        "config": json.loads(config.to_json_best_effort()),
        **results,
    }
    _write_json(os.path.join(workdir, "results.json"), results)
    return results


def run_cell(cell: Cell, config, workdir: str, *, br_cs=(1.0,)) -> tuple[dict, bool]:
    """Runs one cell unless its results.json exists. Returns (results, ran)."""
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
        return _read_json(path), False
    if cell.variant == "br":
        return run_binary_relevance(config, workdir, br_cs), True
    from cgmvae_jax import train  # jax, flax and the model only when a cell is trained

    if cell.fraction < 1.0:
        batch_size = fraction_batch_size(config)
        if batch_size != int(config.batch_size):
            logging.info(
                "%s/%s: batch size %d (the training split has fewer than %d batches of %d)",
                cell.dataset,
                cell.name,
                batch_size,
                MIN_BATCHES_PER_EPOCH,
                config.batch_size,
            )
            config = config.copy_and_resolve_references()
            config.batch_size = batch_size

    return train.train_and_evaluate(config, workdir), True


# ----------------------------------------------------------------------------------------------
# Rows.


def rows_from_results(dataset: str, variant: str, results: dict) -> list[dict]:
    """reproduce.json rows of one run: every protocol x metric of the test split.

    With `per_seed` in results.json (num_seeds > 1) mean and std are over the seeds (std with
    ddof 0, as results.json's `test_std`); otherwise the single run, std 0.
    """
    per_seed = results.get("per_seed")
    rows = []
    for protocol in metrics.PROTOCOLS:
        for metric in metrics.METRIC_NAMES:
            if per_seed:
                values = np.array([s["test"][protocol][metric] for s in per_seed], np.float64)
            else:
                values = np.array([results["test"][protocol][metric]], np.float64)
            rows.append(
                {
                    "dataset": dataset,
                    "variant": variant,
                    "protocol": protocol,
                    "metric": metric,
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "seeds": int(values.size),
                    "split": str(results.get("split", "")),
                }
            )
    return rows


def _row_key(row: dict) -> tuple:
    return (row["dataset"], row["variant"], row["protocol"], row["metric"])


def merge_rows(existing: list[dict], new: list[dict]) -> list[dict]:
    """`existing` with every row of `new` added, replacing rows with the same key."""
    merged = {_row_key(r): r for r in existing}
    merged.update({_row_key(r): r for r in new})
    return [merged[k] for k in sorted(merged)]


def _is_splits_mean(name: str) -> bool:
    return name.endswith(f"{SPLIT_TAG}s")


def _mean_name(cell: Cell) -> str:
    return cell.name if cell.split_seed is None else splits_mean_name(cell.variant, cell.fraction)


def split_mean_rows(grid: Grid, rows: list[dict]) -> list[dict]:
    """Rows `<variant>-splits`: for every data set, variant, fraction, protocol and metric
    with rows of at least two of the grid's splits, the mean and std (ddof 0) over the splits
    of the per-split means; "seeds" is the number of splits. [] for a grid without splits."""
    table = {_row_key(r): r for r in rows}
    out = []
    for dataset, variant, fraction, protocol, metric in itertools.product(
        grid.datasets, grid.variants, grid.fractions, metrics.PROTOCOLS, metrics.METRIC_NAMES
    ):
        found = {}  # split seed -> row
        for k in grid.split_seeds:
            row = table.get((dataset, variant_name(variant, fraction, k), protocol, metric))
            if row is not None:
                found[k] = row
        if len(found) < 2:
            continue
        values = np.array([r["mean"] for r in found.values()], np.float64)
        model_seeds = "/".join(str(n) for n in sorted({r["seeds"] for r in found.values()}))
        out.append(
            {
                "dataset": dataset,
                "variant": splits_mean_name(variant, fraction),
                "protocol": protocol,
                "metric": metric,
                "mean": float(values.mean()),
                "std": float(values.std()),
                "seeds": len(found),
                "split": (
                    f"mean ± std over {len(found)} seeded random 80/10/10 splits (seeds "
                    f"{', '.join(str(k) for k in found)}) of the per-split means over "
                    f"{model_seeds} model seed(s)"
                ),
            }
        )
    return out


# ----------------------------------------------------------------------------------------------
# Markdown.


def _fmt(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.3f} ± {std:.3f}" if seeds > 1 else f"{mean:.3f}"


def machine_description() -> dict:
    """CPU, cores and package versions for the table header."""
    info = hardware.machine_info()
    versions = {"python": info["python"]}
    for package in ("jax", "jaxlib", "flax", "optax", "numpy", "scikit-learn", "orbax-checkpoint"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_model": info["cpu_model"],
        "cpu_count": info["cpu_count"],
        "available_cores": info["available_cores"],
        "ram_gb": info["ram_gb"],
        "versions": versions,
        "date_utc": info["date_utc"],
    }


def render_markdown(
    grid_name: str,
    rows: list[dict],
    *,
    command: str,
    machine: dict,
    runs: dict | None = None,
    failures: list[tuple[str, str]] = (),
    carried: list[str] = (),
) -> str:
    """The `reproduce_<grid>.md` text for the grid's rows.

    Args:
      grid_name: A key of `GRIDS`.
      rows: Rows of the grid's JSON (`json_name`; rows of other grids are ignored).
      command: The command line that produced the tables.
      machine: `machine_description()`.
      runs: Optional {"epochs": set, "seeds": set, "finished": (first, last) ISO dates,
        "br_c": {cell: chosen C}}.
      failures: [(cell, message)] of cells without results.
      carried: Cells ("dataset/variant") whose rows come from the JSON, not from a run
        directory of this invocation's workdir.
    """
    grid = GRIDS[grid_name]
    variants = [name for v in grid.variants for name in grid_names(grid, v)]
    table = {_row_key(r): r for r in rows}
    present = [d for d in grid.datasets if any(k[0] == d and k[1] in variants for k in table)]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    runs = runs or {}
    lines = [
        f"# Reproduction: `{grid_name}` grid",
        "",
        grid.description,
        "",
        "Generated by `launch/reproduce.py`; do not edit by hand.",
        "",
        f"- Command: `{command}`",
        f"- Tables written (UTC): {machine['date_utc']}",
    ]
    if runs.get("finished"):
        first, last = runs["finished"]
        lines.append(f"- Runs finished (UTC, results.json times): {first} … {last}")
    lines += [
        f"- Machine: {machine['cpu_model']}, {machine['available_cores']} cores available "
        f"({machine['cpu_count']} logical CPUs), {machine['ram_gb']} GiB RAM",
        f"- Packages: {versions}",
    ]
    if runs.get("epochs"):
        lines.append(
            "- Epochs: " + ", ".join(str(e) for e in sorted(runs["epochs"])) + " (paper: 100)"
        )
    if runs.get("seeds"):
        lines.append(
            "- Seeds per C-GMVAE cell: "
            + ", ".join(str(s) for s in sorted(runs["seeds"]))
            + " (trained together, vmapped); mean ± std (ddof 0) over seeds. BR is "
            "deterministic: one run, no ± shown."
        )
    if grid.split_seeds:
        seeds_text = ", ".join(str(k) for k in grid.split_seeds)
        lines.append(
            f"- Splits: seeded random 80/10/10 splits of all rows, seeds {seeds_text} "
            "(`<variant>-split<k>`: `config.split=random`, `config.seed=k`, so the models of "
            "split k have seeds k, k + 1, …); `<variant>-splits`: mean ± std (ddof 0) over the "
            "splits of the per-split means (its `seeds` column counts the splits)."
        )
    if carried:
        lines.append(
            f"- Cells carried over from `{json_name(grid_name)}` (run earlier, their run "
            "directories are not in this workdir; epochs and seeds as recorded there): "
            + ", ".join(carried)
        )
    lines += [
        "- All numbers: test split, best-on-validation epoch (validation macro-F1 at the "
        "tuned threshold).",
        "",
    ]
    for protocol in PROTOCOL_ORDER:
        lines += [f"## Protocol `{protocol}`", "", f"{PROTOCOL_TEXT[protocol]}.", ""]
        if protocol == "official":
            lines += [
                "Rows `paper: …` are the published numbers (spec/PAPER_RESULTS.md; baselines "
                "give ex-F1 and ma-F1 only), made with this protocol on the paper's own "
                "random 80/10/10 splits.",
                "",
            ]
        header = "| data set | variant | seeds | " + " | ".join(t for _, t in TABLE_METRICS)
        lines += [header + " |", "|---|---|---|" + "---|" * len(TABLE_METRICS)]
        for dataset in present:
            for variant in variants:
                cells = [table.get((dataset, variant, protocol, m)) for m, _ in TABLE_METRICS]
                if all(c is None for c in cells):
                    continue
                seeds = max(c["seeds"] for c in cells if c)
                values = [_fmt(c["mean"], c["std"], c["seeds"]) if c else "–" for c in cells]
                lines.append(f"| {dataset} | {variant} | {seeds} | " + " | ".join(values) + " |")
            if protocol == "official" and grid.paper:
                for label, numbers in paper_rows(dataset):
                    values = [
                        f"{numbers[m]:.3f}" if m in numbers else "–" for m, _ in TABLE_METRICS
                    ]
                    seeds = "3" if label == "paper: C-GMVAE" else "–"
                    lines.append(f"| {dataset} | {label} | {seeds} | " + " | ".join(values) + " |")
        lines.append("")
    lines += _gain_over_br(grid, present, table)
    lines += _gap_to_cgmvae(grid, present, table)
    lines += ["## Variants", ""]
    for variant in grid.variants:
        overrides = VARIANT_OVERRIDES[variant]
        what = ", ".join(f"`{k}={v}`" for k, v in overrides.items()) or "the config as is"
        if variant == "br":
            what = (
                "one-vs-rest scikit-learn LogisticRegression per label on the same standardised "
                "features and splits, C chosen on validation macro-F1; a label constant in the "
                "training split predicts that constant"
            )
        lines.append(f"- `{variant}` ({VARIANT_TITLES[variant]}): {what}.")
        if variant == "br" and runs.get("br_c"):
            chosen = ", ".join(f"{k} {v:g}" for k, v in sorted(runs["br_c"].items()))
            lines.append(f"  C chosen: {chosen}.")
    if len(grid.fractions) > 1 or grid.fractions[0] != 1.0:
        lines.append(
            "- `<variant>@<f>`: trained on the fraction f of the training split "
            "(`train_fraction`; validation and test unchanged). The config's batch size is "
            f"kept unless the fraction leaves fewer than {MIN_BATCHES_PER_EPOCH} batches per "
            f"epoch; then it is n_train // {MIN_BATCHES_PER_EPOCH}."
        )
    lines += ["", "## Splits", ""]
    for dataset in present:
        runs_of = [k for k in table if k[0] == dataset and not _is_splits_mean(k[1])]
        descriptions = {table[k]["split"] for k in runs_of if parse_variant(k[1])[1] == 1.0} or {
            table[k]["split"] for k in runs_of
        }
        for description in sorted(descriptions):
            lines.append(f"- {dataset}: {description}")
    if grid_name == "fraction":
        lines += ["", "![macro-F1 vs train fraction](figures/fraction_macro_f1.png)"]
    if failures:
        lines += ["", "## Cells without results", ""]
        lines += [f"- {cell}: {message}" for cell, message in failures]
    return "\n".join(lines) + "\n"


def _gain_over_br(grid: Grid, datasets: list[str], table: dict) -> list[str]:
    """Macro-F1 of each trained variant minus BR's (same fraction and split), per protocol."""
    if "br" not in grid.variants:
        return []
    trained = [v for v in grid.variants if v != "br"]
    lines = [
        "## Macro-F1 gain over BR",
        "",
        "Macro-F1 of the variant minus that of BR trained on the same rows (same split and "
        "fraction"
        + (
            "; for `-splits` rows, the mean of the per-split differences over the splits where "
            "both ran"
            if grid.split_seeds
            else ""
        )
        + "); negative means BR is better.",
        "",
        "| data set | variant | " + " | ".join(PROTOCOL_ORDER) + " |",
        "|---|---|" + "---|" * len(PROTOCOL_ORDER),
    ]
    any_row = False
    for dataset in datasets:
        for variant in trained:
            for name, fraction, splits in grid_rows(grid, variant):
                gains = [
                    _macro_f1_gain(table, dataset, variant, fraction, splits, protocol)
                    for protocol in PROTOCOL_ORDER
                ]
                if any(g is not None for g in gains):
                    any_row = True
                    text = ["–" if g is None else f"{g:+.3f}" for g in gains]
                    lines.append(f"| {dataset} | {name} | " + " | ".join(text) + " |")
    return lines + [""] if any_row else []


def _macro_f1_gain(
    table: dict, dataset: str, variant: str, fraction: float, splits, protocol: str
) -> float | None:
    """Macro-F1 of `variant` minus BR's on the same rows, averaged over `splits` (split seeds,
    or [None] for the data set's own split) where both have a row; None when none has."""
    gains = []
    for k in splits:
        ours = table.get((dataset, variant_name(variant, fraction, k), protocol, "macro_f1"))
        base = table.get((dataset, variant_name("br", fraction, k), protocol, "macro_f1"))
        if ours and base:
            gains.append(ours["mean"] - base["mean"])
    return float(np.mean(gains)) if gains else None


def _gap_to_cgmvae(grid: Grid, datasets: list[str], table: dict) -> list[str]:
    """Macro-F1 of each MLP variant minus C-GMVAE's, per protocol, and its mean over data sets."""
    variants = [v for v in grid.variants if v.startswith("mlp_")]
    if "cgmvae" not in grid.variants or not variants:
        return []
    lines = [
        "## Macro-F1 relative to C-GMVAE",
        "",
        "Macro-F1 of the variant minus that of C-GMVAE on the same split (negative means "
        "C-GMVAE is better); `mean` averages over the data sets where both have results, "
        "and the variants are ranked by it (val_tuned protocol).",
        "",
        "| data set | variant | " + " | ".join(PROTOCOL_ORDER) + " |",
        "|---|---|" + "---|" * len(PROTOCOL_ORDER),
    ]
    gaps = collections.defaultdict(list)  # (variant, protocol) -> [gap per data set]
    for dataset in datasets:
        for variant in variants:
            cells = []
            for protocol in PROTOCOL_ORDER:
                ours = table.get((dataset, variant, protocol, "macro_f1"))
                base = table.get((dataset, "cgmvae", protocol, "macro_f1"))
                if ours and base:
                    gaps[(variant, protocol)].append(ours["mean"] - base["mean"])
                cells.append(f"{ours['mean'] - base['mean']:+.3f}" if ours and base else "–")
            if any(c != "–" for c in cells):
                lines.append(f"| {dataset} | {variant} | " + " | ".join(cells) + " |")
    if not gaps:
        return []

    def mean_gap(variant, protocol):
        values = gaps.get((variant, protocol))
        return float(np.mean(values)) if values else None

    ranked = sorted(
        (v for v in variants if mean_gap(v, "val_tuned") is not None),
        key=lambda v: -mean_gap(v, "val_tuned"),
    )
    for variant in ranked:
        cells = [mean_gap(variant, p) for p in PROTOCOL_ORDER]
        text = [f"{c:+.3f}" if c is not None else "–" for c in cells]
        lines.append(f"| mean | {variant} | " + " | ".join(text) + " |")
    return lines + [""]


# ----------------------------------------------------------------------------------------------
# The fraction plot.


def plot_fraction(rows: list[dict], path: str, *, protocol: str = "val_tuned") -> str:
    """Macro-F1 against the train fraction: one panel per data set, one line per variant."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError('The fraction plot needs matplotlib: pip install -e ".[plot]".') from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    grid = GRIDS["fraction"]
    points = collections.defaultdict(list)  # (dataset, variant) -> [(fraction, mean, std)]
    for r in rows:
        base, fraction = parse_variant(r["variant"])
        if (
            r["dataset"] in grid.datasets
            and base in grid.variants
            and fraction in grid.fractions
            and r["protocol"] == protocol
            and r["metric"] == "macro_f1"
        ):
            points[(r["dataset"], base)].append((fraction, r["mean"], r["std"]))
    datasets = [d for d in grid.datasets if any(k[0] == d for k in points)]
    if not datasets:
        raise ValueError("No macro-F1 rows of the fraction grid to plot.")
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False, constrained_layout=True
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for variant in grid.variants:
            series = sorted(points.get((dataset, variant), []))
            if not series:
                continue
            x, mean, std = (np.array(v) for v in zip(*series, strict=True))
            ax.errorbar(
                x, mean, yerr=std, marker="o", capsize=3, label=VARIANT_TITLES.get(variant, variant)
            )
        ax.set_xscale("log")
        ax.set_xticks(list(grid.fractions), [f"{f:g}" for f in grid.fractions])
        ax.set_xlabel("fraction of the training split used")
        ax.set_ylabel(f"test macro-F1 ({protocol} threshold)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# The whole grid.


def run_grid(
    grid_name: str,
    *,
    workdir: str,
    out: str,
    seeds: int = 3,
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
    fractions: list[float] | None = None,
    split_seeds: list[int] | None = None,
    num_epochs: int | None = None,
    data_dir: str | None = None,
    br_cs=(0.01, 0.1, 1.0),
    collect_only: bool = False,
    command: str = "",
) -> dict:
    """Runs the missing cells of a grid, then writes its JSON (`json_name`), the Markdown and
    plots.

    Args:
      grid_name: A key of `GRIDS`.
      workdir: Root of the run directories.
      out: Output directory (reproduce.json or reproduce_<grid>.json, reproduce_<grid>.md,
        figures/).
      seeds: `config.num_seeds` of every trained cell.
      datasets: Run only these data sets of the grid (tables still include every finished cell).
      variants: Run only these base variants of the grid (same).
      fractions: Run only these train fractions of the grid (same).
      split_seeds: Run only these split seeds of the grid (same).
      num_epochs: Override of `config.num_epochs` (default: the grid's, else each config's).
      data_dir: Override of `config.data_dir`.
      br_cs: Candidate C values of the BR baseline (chosen on validation).
      collect_only: Run nothing; build the tables from finished cells.
      command: The command line for the Markdown header.

    Returns:
      {"rows": the grid's rows, "failures": [(cell, message)], "markdown": path,
      "json": path, "figure": path or None, "ran": [cell names], "interrupted": bool}.
    """
    grid = GRIDS[grid_name]
    num_epochs = num_epochs or grid.num_epochs
    selected = set(grid_cells(grid, datasets, variants, fractions, split_seeds))
    failures, ran, collected = [], [], {}
    interrupted = False
    stop_errors = (KeyboardInterrupt,)
    if not collect_only:
        from cgmvae_jax import train  # jax and flax only when something may be trained

        stop_errors += (train.TrainingInterrupted,)
    for index, cell in enumerate(grid_cells(grid)):
        label = f"{cell.dataset}/{cell.name}"
        try:
            config = cell_config(cell, seeds=seeds, num_epochs=num_epochs, data_dir=data_dir)
        except Exception as e:  # a bad cell must not stop the grid
            failures.append((label, f"config: {e}"))
            continue
        cell_dir = cell_workdir(workdir, cell, config)
        results_path = os.path.join(cell_dir, "results.json")
        if os.path.exists(results_path):
            collected[cell] = (_read_json(results_path), results_path)
            continue
        if collect_only or cell not in selected or interrupted:
            continue
        logging.info("[%d] %s: running in %s", index + 1, label, cell_dir)
        start = time.perf_counter()
        try:
            results, _ = run_cell(cell, config, cell_dir, br_cs=br_cs)
        except stop_errors as e:
            logging.warning("%s interrupted (%s); writing tables of the finished cells.", label, e)
            failures.append((label, "interrupted"))
            interrupted = True
            continue
        except Exception as e:  # report the cell and go on with the grid
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            logging.error("%s failed: %s\n%s", label, message, traceback.format_exc())
            failures.append((label, f"{type(e).__name__}: {message}"))
            continue
        logging.info("%s: done in %.0f s", label, time.perf_counter() - start)
        ran.append(label)
        collected[cell] = (results, results_path)

    rows = []
    for cell, (results, _) in collected.items():
        rows += rows_from_results(cell.dataset, cell.name, results)
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, json_name(grid_name))
    existing = _read_json(json_path) if os.path.exists(json_path) else []
    # Means over splits are always derived from the per-split rows on record, never kept.
    merged = [r for r in merge_rows(existing, rows) if not _is_splits_mean(r["variant"])]
    means = split_mean_rows(grid, merged)
    merged = merge_rows(merged, means)
    _write_json(json_path, merged)
    # The tables show every cell of the grid on record: cells finished in this workdir, and
    # cells whose run directories are elsewhere (another machine or workdir) but whose rows
    # the JSON keeps. Means over splits are recomputed from the rows on record.
    names = {(c.dataset, n) for c in grid_cells(grid) for n in (c.name, _mean_name(c))}
    fresh = {(c.dataset, c.name) for c in collected} | {(r["dataset"], r["variant"]) for r in means}
    table_rows = [r for r in merged if (r["dataset"], r["variant"]) in names]
    carried = {(r["dataset"], r["variant"]) for r in table_rows} - fresh
    # Selected cells neither finished here nor on record (a carried cell is no failure; a run
    # that failed here was reported above).
    reported = {label for label, _ in failures}
    for cell in grid_cells(grid, datasets, variants, fractions, split_seeds):
        label = f"{cell.dataset}/{cell.name}"
        if (
            cell not in collected
            and label not in reported
            and (cell.dataset, cell.name) not in carried
        ):
            config = cell_config(cell, seeds=seeds, num_epochs=num_epochs, data_dir=data_dir)
            where = os.path.join(cell_workdir(workdir, cell, config), "results.json")
            failures.append((label, f"not run: no {where}"))

    trained = [r for c, (r, _) in collected.items() if c.variant != "br"]
    times = sorted(
        datetime.datetime.fromtimestamp(os.path.getmtime(p), datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
        for _, p in collected.values()
    )
    runs = {
        "epochs": {int(r["config"]["num_epochs"]) for r in trained if "config" in r},
        "seeds": {int(r["config"].get("num_seeds", 1)) for r in trained if "config" in r},
        "finished": (times[0], times[-1]) if times else None,
        "br_c": {
            f"{c.dataset}/{c.name}": r["C"]
            for c, (r, _) in collected.items()
            if c.variant == "br" and "C" in r
        },
    }
    markdown = render_markdown(
        grid_name,
        table_rows,
        command=command or f"run_grid({grid_name!r})",
        machine=machine_description(),
        runs=runs,
        failures=failures,
        carried=[f"{d}/{v}" for d, v in sorted(carried)],
    )
    md_path = os.path.join(out, f"reproduce_{grid_name}.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(markdown)
    figure = None
    if grid_name == "fraction" and table_rows:
        figure = plot_fraction(table_rows, os.path.join(out, "figures", "fraction_macro_f1.png"))
    return {
        "rows": rows,
        "failures": failures,
        "markdown": md_path,
        "json": json_path,
        "figure": figure,
        "ran": ran,
        "interrupted": interrupted,
    }


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Command line.

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Command-line flags (defined only when run as a script, so importing has no effect)."""
    flags.DEFINE_enum("grid", "main", list(GRIDS), "Experiment grid.")
    flags.DEFINE_string("workdir", "runs/reproduce", "Root directory of the runs (re-runnable).")
    flags.DEFINE_string(
        "out", None, "Output directory (default benchmarks/results; smoke: WORKDIR/smoke_results)."
    )
    flags.DEFINE_integer("seeds", 3, "config.num_seeds of every trained cell (one vmapped run).")
    flags.DEFINE_list("datasets", None, "Run only these data sets of the grid.")
    flags.DEFINE_list("variants", None, "Run only these variants of the grid (e.g. mlp_bce).")
    flags.DEFINE_list("fractions", None, "Run only these train fractions of the grid (e.g. 0.1).")
    flags.DEFINE_list("split_seeds", None, "Run only these split seeds of the grid (e.g. 4).")
    flags.DEFINE_integer("num_epochs", None, "Override config.num_epochs (shorter grids).")
    flags.DEFINE_string("data_dir", None, "Override config.data_dir (default: $CGMVAE_DATA).")
    flags.DEFINE_list("br_c", ["0.01", "0.1", "1"], "BR: C values, chosen on validation macro-F1.")
    flags.DEFINE_bool("collect_only", False, "Train nothing; tables from finished runs only.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    out = FLAGS.out
    if out is None:
        out = (
            os.path.join(FLAGS.workdir, "smoke_results")
            if FLAGS.grid == "smoke"
            else os.path.join(_REPO, "benchmarks", "results")
        )
    command = "python " + shlex.join(
        [os.path.relpath(sys.argv[0]) if os.path.exists(sys.argv[0]) else sys.argv[0]]
        + sys.argv[1:]
    )
    try:
        summary = run_grid(
            FLAGS.grid,
            workdir=FLAGS.workdir,
            out=out,
            seeds=FLAGS.seeds,
            datasets=FLAGS.datasets,
            variants=FLAGS.variants,
            fractions=FLAGS.fractions,
            split_seeds=FLAGS.split_seeds,
            num_epochs=FLAGS.num_epochs,
            data_dir=FLAGS.data_dir,
            br_cs=tuple(float(c) for c in FLAGS.br_c),
            collect_only=FLAGS.collect_only,
            command=command,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Ran {len(summary['ran'])} cell(s); {len(summary['rows'])} rows.")
    print(f"Wrote {summary['markdown']} and {summary['json']}")
    if summary["figure"]:
        print(f"Wrote {summary['figure']}")
    for cell, message in summary["failures"]:
        print(f"no results: {cell}: {message}", file=sys.stderr)
    return 2 if summary["failures"] else 0


if __name__ == "__main__":
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
