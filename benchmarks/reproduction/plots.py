"""The figure of the `fraction` grid: macro-F1 against the fraction of training rows."""

import collections
import os

import numpy as np

from benchmarks.reproduction import grids


def plot_fraction(rows: list[dict], path: str, *, protocol: str = "val_tuned") -> str:
    """Macro-F1 against the train fraction: one panel per data set, one line per variant."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone
    except ImportError as e:
        raise ImportError('The fraction plot needs matplotlib: pip install -e ".[plot]".') from e

    grid = grids.GRIDS["fraction"]
    points = collections.defaultdict(list)  # (dataset, variant) -> [(fraction, mean, std)]
    for r in rows:
        base, fraction = grids.parse_variant(r["variant"])
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
    fig = Figure(figsize=(5.5 * len(datasets), 4.2), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for variant in grid.variants:
            series = sorted(points.get((dataset, variant), []))
            if not series:
                continue
            x, mean, std = (np.array(v) for v in zip(*series, strict=True))
            title = grids.VARIANT_TITLES.get(variant, variant)
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=title)
        ax.set_xscale("log")
        ax.set_xticks(list(grid.fractions), [f"{f:g}" for f in grid.fractions])
        ax.set_xlabel("fraction of the training split used")
        ax.set_ylabel(f"test macro-F1 ({protocol} threshold)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
