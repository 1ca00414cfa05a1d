"""The rows of reproduce.json: one per data set x variant x protocol x metric of the test split.

A row is {"dataset", "variant", "protocol", "metric", "mean", "std", "seeds", "split",
"config"}; "std" is the population standard deviation over seeds (0 for one run), "split" the
split description of the run's results.json, "config" the config file of the run (e.g.
configs/yeast.py; rows written before it was recorded have no "config").
"""

import itertools
import json
import os

import numpy as np

from benchmarks.reproduction import grids
from cgmvae_jax import metrics

# The threshold protocols a row may carry, in table order. `val_per_metric` is newer than the
# others: results.json files (and rows) written before it existed do not have it.
PROTOCOLS = ("official", "val_per_metric", "val_tuned", "fixed")


def rows_from_results(
    dataset: str, variant: str, results: dict, config_file: str | None = None
) -> list[dict]:
    """reproduce.json rows of one run: every protocol it recorded x metric of the test split.

    With `per_seed` in results.json (num_seeds > 1) mean and std are over the seeds (std with
    ddof 0, as results.json's `test_std`); otherwise the single run, std 0. `config_file`, the
    run's config file, goes to the rows' "config" (none when None).
    """
    per_seed = results.get("per_seed")
    recorded = (per_seed[0] if per_seed else results)["test"]
    out = []
    for protocol in (p for p in PROTOCOLS if p in recorded):  # older runs lack val_per_metric
        for metric in metrics.METRIC_NAMES:
            if per_seed:
                values = np.array([s["test"][protocol][metric] for s in per_seed], np.float64)
            else:
                values = np.array([results["test"][protocol][metric]], np.float64)
            out.append(
                {
                    "dataset": dataset,
                    "variant": variant,
                    "protocol": protocol,
                    "metric": metric,
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "seeds": int(values.size),
                    "split": str(results.get("split", "")),
                    **({"config": config_file} if config_file else {}),
                }
            )
    return out


def row_key(row: dict) -> tuple:
    """(dataset, variant, protocol, metric): a row replaces the row of the same key."""
    return (row["dataset"], row["variant"], row["protocol"], row["metric"])


def merge_rows(existing: list[dict], new: list[dict]) -> list[dict]:
    """`existing` with every row of `new` added, replacing rows with the same key."""
    merged = {row_key(r): r for r in existing}
    merged.update({row_key(r): r for r in new})
    return [merged[k] for k in sorted(merged)]


def split_mean_rows(grid: grids.Grid, rows: list[dict]) -> list[dict]:
    """Rows `<variant>-splits`: for every data set, variant, fraction, protocol and metric
    with rows of at least two of the grid's splits, the mean and std (ddof 0) over the splits
    of the per-split means; "seeds" is the number of splits. [] for a grid without splits."""
    table = {row_key(r): r for r in rows}
    out = []
    for dataset, variant, fraction, protocol, metric in itertools.product(
        grid.datasets, grid.variants, grid.fractions, PROTOCOLS, metrics.METRIC_NAMES
    ):
        found = {}  # split seed -> row
        for k in grid.split_seeds:
            row = table.get((dataset, grids.variant_name(variant, fraction, k), protocol, metric))
            if row is not None:
                found[k] = row
        if len(found) < 2:
            continue
        out.append(_mean_over_splits(found, dataset, grids.splits_mean_name(variant, fraction)))
    return out


def _mean_over_splits(found: dict[int, dict], dataset: str, name: str) -> dict:
    """The row averaging `found` (split seed -> row of one protocol and metric)."""
    values = np.array([r["mean"] for r in found.values()], np.float64)
    model_seeds = "/".join(str(n) for n in sorted({r["seeds"] for r in found.values()}))
    first = next(iter(found.values()))
    config_files = sorted({r["config"] for r in found.values() if "config" in r})
    return {
        "dataset": dataset,
        "variant": name,
        "protocol": first["protocol"],
        "metric": first["metric"],
        "mean": float(values.mean()),
        "std": float(values.std()),
        "seeds": len(found),
        "split": (
            f"mean ± std over {len(found)} seeded random 80/10/10 splits (seeds "
            f"{', '.join(str(k) for k in found)}) of the per-split means over "
            f"{model_seeds} model seed(s)"
        ),
        **({"config": ", ".join(config_files)} if config_files else {}),
    }


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, obj) -> None:
    """Writes `obj` to `path` atomically (a temporary file, then a rename)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
