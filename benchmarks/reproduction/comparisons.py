"""Difference tables of the Markdown: macro-F1 gain over BR, and the MLP losses against C-GMVAE.

Each function returns Markdown lines (ending in a blank line) or [] when the grid has no such
comparison; `table` maps `rows.row_key` to rows and `protocols` are the table's columns.
"""

import collections

import numpy as np

from benchmarks.reproduction import grids


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def gain_over_br(
    grid: grids.Grid, datasets: list[str], table: dict, protocols: tuple[str, ...]
) -> list[str]:
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
        "| data set | variant | " + " | ".join(protocols) + " |",
        "|---|---|" + "---|" * len(protocols),
    ]
    any_row = False
    for dataset in datasets:
        for variant in trained:
            for name, fraction, splits in grids.grid_rows(grid, variant):
                gains = [
                    _macro_f1_gain(table, dataset, variant, fraction, splits, protocol)
                    for protocol in protocols
                ]
                if any(g is not None for g in gains):
                    any_row = True
                    lines.append(
                        f"| {dataset} | {name} | " + " | ".join(_cell(g) for g in gains) + " |"
                    )
    return lines + [""] if any_row else []


def _macro_f1_gain(
    table: dict, dataset: str, variant: str, fraction: float, splits, protocol: str
) -> float | None:
    """Macro-F1 of `variant` minus BR's on the same rows, averaged over `splits` (split seeds,
    or [None] for the data set's own split) where both have a row; None when none has."""
    gains = []
    for k in splits:
        ours = table.get((dataset, grids.variant_name(variant, fraction, k), protocol, "macro_f1"))
        base = table.get((dataset, grids.variant_name("br", fraction, k), protocol, "macro_f1"))
        if ours and base:
            gains.append(ours["mean"] - base["mean"])
    return float(np.mean(gains)) if gains else None


def gap_to_cgmvae(
    grid: grids.Grid, datasets: list[str], table: dict, protocols: tuple[str, ...]
) -> list[str]:
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
        "| data set | variant | " + " | ".join(protocols) + " |",
        "|---|---|" + "---|" * len(protocols),
    ]
    gaps = collections.defaultdict(list)  # (variant, protocol) -> [gap per data set]
    for dataset in datasets:
        for variant in variants:
            cells = []
            for protocol in protocols:
                ours = table.get((dataset, variant, protocol, "macro_f1"))
                base = table.get((dataset, "cgmvae", protocol, "macro_f1"))
                gap = ours["mean"] - base["mean"] if ours and base else None
                if gap is not None:
                    gaps[(variant, protocol)].append(gap)
                cells.append(_cell(gap))
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
        cells = [_cell(mean_gap(variant, p)) for p in protocols]
        lines.append(f"| mean | {variant} | " + " | ".join(cells) + " |")
    return lines + [""]
