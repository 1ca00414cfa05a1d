"""The main-table summary that docs/results.md quotes: two tables from reproduce.json rows.

`launch/reproduce.py --grid=main --doc=docs/results.md` rewrites the text between the marker
comments `BEGIN` and `END` of that file with `summary_tables`, so the numbers on the page are
the numbers in `benchmarks/results/reproduce.json`:

1. the honest protocol, `val_per_metric`, C-GMVAE (with its config file) against BR, for the
   data sets whose rows carry that protocol;
2. the paper's protocol, `official`, for every data set, with the `val_tuned` and `fixed`
   macro-F1 beside it and the paper's C-GMVAE numbers below ours.
"""

import os

from benchmarks.reproduction import grids, paper, rows, tables

BEGIN = "<!-- reproduce --doc: begin (generated from benchmarks/results/reproduce.json) -->"
END = "<!-- reproduce --doc: end -->"
_MODELS = (("cgmvae", "C-GMVAE"), ("br", "BR"))


def summary_tables(table_rows: list[dict]) -> str:
    """Markdown of the two summary tables for the main grid's data sets found in `table_rows`."""
    table = {rows.row_key(r): r for r in table_rows}
    present = [
        d
        for d in grids.GRIDS["main"].datasets
        if any(k[0] == d and k[1] == "cgmvae" for k in table)
    ]
    honest = [d for d in present if _row(table, d, "cgmvae", "val_per_metric", "example_f1")]
    names = [name for _, name in tables.TABLE_METRICS]
    lines = [
        "The honest protocol, `val_per_metric`, C-GMVAE against BR:",
        "",
        *_header(["data set", "config", "model", *names]),
    ]
    for dataset in honest:
        for variant, label in _MODELS:
            config = _config_name(table, dataset) if variant == "cgmvae" else ""
            values = _cells(table, dataset, variant, "val_per_metric")
            lines.append(f"| {dataset} | {config} | {label} | {values} |")
    lines += [
        "",
        "The paper's protocol, `official` (first five metric columns), beside the paper's numbers:",
        "",
        *_header(["data set", "model", *names, "ma-F1 `val_tuned`", "ma-F1 `fixed`"]),
    ]
    for dataset in present:
        for variant, label in _MODELS:
            extra = [
                _fmt(_row(table, dataset, variant, protocol, "macro_f1"))
                for protocol in ("val_tuned", "fixed")
            ]
            lines.append(
                f"| {dataset} | {label} | {_cells(table, dataset, variant, 'official')} | "
                + " | ".join(extra)
                + " |"
            )
        if dataset in paper.PAPER_CGMVAE:
            values = " | ".join(f"{v:.3f}" for v in paper.PAPER_CGMVAE[dataset])
            lines.append(f"| {dataset} | paper C-GMVAE | {values} | – | – |")
    return "\n".join(lines) + "\n"


def update_doc(path: str, table_rows: list[dict]) -> None:
    """Replaces the text between `BEGIN` and `END` in the Markdown file at `path`.

    Raises:
      ValueError: `path` is missing or lacks the two marker lines (naming the file and the
        lines to add).
    """
    if not os.path.isfile(path):
        raise ValueError(f"--doc: {path} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(
            f"--doc: {path} needs the marker lines\n{BEGIN}\n{END}\n(in this order) around the "
            "place of the summary tables"
        )
    new = text[: start + len(BEGIN)] + "\n" + summary_tables(table_rows) + text[end:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def _header(columns: list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def _row(table: dict, dataset: str, variant: str, protocol: str, metric: str) -> dict | None:
    return table.get((dataset, variant, protocol, metric))


def _fmt(row: dict | None) -> str:
    return "–" if row is None else tables.format_value(row["mean"], row["std"], row["seeds"])


def _cells(table: dict, dataset: str, variant: str, protocol: str) -> str:
    return " | ".join(
        _fmt(_row(table, dataset, variant, protocol, metric)) for metric, _ in tables.TABLE_METRICS
    )


def _config_name(table: dict, dataset: str) -> str:
    row = _row(table, dataset, "cgmvae", "val_per_metric", "example_f1") or {}
    config = row.get("config") or ""
    return f"`{os.path.basename(config)}`" if config else ""
