"""`run_grid`: runs the missing cells of a grid, then writes its JSON rows, Markdown and plots."""

import dataclasses
import datetime
import os
import time
import traceback

from absl import logging

from benchmarks.reproduction import cells, grids, plots, rows, tables
from cgmvae_jax import config_lib

RESULTS_DIR = os.path.join(cells.REPO, "benchmarks", "results")


def default_out(grid_name: str, workdir: str) -> str:
    """benchmarks/results, or WORKDIR/smoke_results for the smoke grid (not a result)."""
    return os.path.join(workdir, "smoke_results") if grid_name == "smoke" else RESULTS_DIR


@dataclasses.dataclass
class _Progress:
    """What the cells of one invocation left: results by cell, failures, cells run."""

    collected: dict = dataclasses.field(default_factory=dict)  # Cell -> (results, path)
    failures: list = dataclasses.field(default_factory=list)  # [(cell label, message)]
    ran: list = dataclasses.field(default_factory=list)  # [cell label]
    interrupted: bool = False


def run_grid(
    grid_name: str,
    *,
    workdir: str,
    out: str | None = None,
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
    tuned: bool = False,
    configs_dir: str | None = None,
) -> dict:
    """Runs the missing cells of a grid, then writes its JSON (`grids.json_name`), the Markdown
    and plots.

    Args:
      grid_name: A key of `grids.GRIDS`.
      workdir: Root of the run directories.
      out: Output directory (reproduce.json or reproduce_<grid>.json, reproduce_<grid>.md,
        figures/); None: `default_out`.
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
      tuned: Cells of a data set with a `<dataset>_tuned.py` config file use it (run
        directories `<variant>-tuned…`); the others use `<dataset>.py`.
      configs_dir: Directory of the config files (default: the repository's configs/).

    Returns:
      {"rows": the grid's rows, "failures": [(cell, message)], "markdown": path,
      "json": path, "figure": path or None, "ran": [cell names], "interrupted": bool}.
    """
    grid = grids.GRIDS[grid_name]
    out = out or default_out(grid_name, workdir)
    options = dict(
        seeds=seeds,
        num_epochs=num_epochs or grid.num_epochs,
        data_dir=data_dir,
        configs_dir=configs_dir,
    )
    every = grids.grid_cells(grid)
    chosen = grids.grid_cells(grid, datasets, variants, fractions, split_seeds)
    if tuned:
        every, chosen = cells.use_tuned(every, configs_dir), cells.use_tuned(chosen, configs_dir)
    progress = _run_cells(
        every, set(chosen), workdir, options, br_cs=br_cs, collect_only=collect_only
    )
    new_rows = []
    for cell, (results, _) in progress.collected.items():
        config_file = cells.config_file(cell, configs_dir)
        new_rows += rows.rows_from_results(cell.dataset, cell.name, results, config_file)
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, grids.json_name(grid_name))
    merged, means = _update_json(grid, json_path, new_rows)
    table_rows, carried = _table_rows(grid, merged, progress.collected, means)
    progress.failures += _not_run(chosen, progress, carried, workdir, options)
    md_path, figure = _write_tables(
        grid_name, out, table_rows, progress, carried, command or f"run_grid({grid_name!r})"
    )
    return {
        "rows": new_rows,
        "failures": progress.failures,
        "markdown": md_path,
        "json": json_path,
        "figure": figure,
        "ran": progress.ran,
        "interrupted": progress.interrupted,
    }


def _write_tables(
    grid_name: str, out: str, table_rows: list, progress: _Progress, carried: set, command: str
) -> tuple[str, str | None]:
    """Writes reproduce_<grid>.md (and the fraction figure). Returns their paths."""
    markdown = tables.render_markdown(
        grid_name,
        table_rows,
        command=command,
        machine=tables.machine_description(),
        runs=_runs_summary(progress.collected),
        failures=progress.failures,
        carried=[f"{d}/{v}" for d, v in sorted(carried)],
    )
    md_path = os.path.join(out, f"reproduce_{grid_name}.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(markdown)
    figure = None
    if grid_name == "fraction" and table_rows:
        figure = plots.plot_fraction(
            table_rows, os.path.join(out, "figures", "fraction_macro_f1.png")
        )
    return md_path, figure


def _run_cells(
    every: list, chosen: set, workdir: str, options: dict, *, br_cs, collect_only: bool
) -> _Progress:
    """Collects the finished cells of `every` (the grid's) and runs the chosen missing ones
    (none when `collect_only`, none after an interrupt)."""
    progress = _Progress()
    stop_errors = (KeyboardInterrupt,)
    if not collect_only:
        from cgmvae_jax import train  # jax and flax only when something may be trained

        stop_errors += (train.TrainingInterrupted,)
    for index, cell in enumerate(every):
        try:
            config = cells.cell_config(cell, **options)
        except Exception as e:  # a bad cell must not stop the grid
            progress.failures.append((cell.label, f"config: {e}"))
            continue
        cell_dir = cells.cell_workdir(workdir, cell, config)
        results_path = os.path.join(cell_dir, "results.json")
        if os.path.exists(results_path):
            results = rows.read_json(results_path)
            stale = _stale_field(results.get("config") or {}, config)
            if stale:
                progress.failures.append((cell.label, f"stale run in {cell_dir}: {stale}"))
            else:
                progress.collected[cell] = (results, results_path)
        elif not (collect_only or cell not in chosen or progress.interrupted):
            logging.info("[%d] %s: running in %s", index + 1, cell.label, cell_dir)
            _run_one(cell, config, cell_dir, progress, br_cs=br_cs, stop_errors=stop_errors)
    return progress


def _stale_field(recorded: dict, config) -> str | None:
    """Why a finished run no longer matches its cell's config (e.g. a tuned config file changed
    since, with the same epoch count and so the same directory), or None. Fields missing on
    either side and runtime fields (data_dir, ...) are not compared."""
    current = config_lib.config_dict(config)
    for key in sorted(set(recorded) & set(current) - set(config_lib.RUNTIME_FIELDS)):
        if recorded[key] != current[key]:
            return (
                f"it was trained with {key}={recorded[key]!r}, the cell's config now has "
                f"{current[key]!r}; delete that directory or use another --workdir"
            )
    return None


def _run_one(cell, config, cell_dir: str, progress: _Progress, *, br_cs, stop_errors) -> None:
    """Runs one cell and records its results, or its failure, in `progress`."""
    start = time.perf_counter()
    try:
        results, _ = cells.run_cell(cell, config, cell_dir, br_cs=br_cs)
    except stop_errors as e:
        logging.warning("%s interrupted (%s); writing tables of the finished cells.", cell.label, e)
        progress.failures.append((cell.label, "interrupted"))
        progress.interrupted = True
        return
    except Exception as e:  # report the cell and go on with the grid
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        logging.error("%s failed: %s\n%s", cell.label, message, traceback.format_exc())
        progress.failures.append((cell.label, f"{type(e).__name__}: {message}"))
        return
    logging.info("%s: done in %.0f s", cell.label, time.perf_counter() - start)
    progress.ran.append(cell.label)
    progress.collected[cell] = (results, os.path.join(cell_dir, "results.json"))


def _update_json(grid: grids.Grid, json_path: str, new_rows: list[dict]) -> tuple[list, list]:
    """Merges `new_rows` into the JSON on record and writes it. Means over splits are always
    derived from the per-split rows on record, never kept. Returns (merged rows, mean rows)."""
    existing = rows.read_json(json_path) if os.path.exists(json_path) else []
    merged = rows.merge_rows(existing, new_rows)
    merged = [r for r in merged if not grids.is_splits_mean(r["variant"])]
    means = rows.split_mean_rows(grid, merged)
    merged = rows.merge_rows(merged, means)
    rows.write_json(json_path, merged)
    return merged, means


def _table_rows(grid: grids.Grid, merged: list, collected: dict, means: list) -> tuple[list, set]:
    """The rows of the tables: every cell of the grid on record, i.e. cells finished in this
    workdir and cells whose run directories are elsewhere (another machine or workdir) but whose
    rows the JSON keeps. Returns (rows, carried (dataset, name) pairs: rows of the JSON only)."""
    names = {(c.dataset, n) for c in grids.grid_cells(grid) for n in (c.name, c.mean_name)}
    fresh = {(c.dataset, c.name) for c in collected} | {(r["dataset"], r["variant"]) for r in means}
    table_rows = [r for r in merged if (r["dataset"], r["variant"]) in names]
    carried = {(r["dataset"], r["variant"]) for r in table_rows} - fresh
    return table_rows, carried


def _not_run(
    chosen: list, progress: _Progress, carried: set, workdir: str, options: dict
) -> list[tuple[str, str]]:
    """Chosen cells neither finished here nor on record (a carried cell is no failure; a run
    that failed here was reported already)."""
    reported = {label for label, _ in progress.failures}
    out = []
    for cell in chosen:
        if (
            cell not in progress.collected
            and cell.label not in reported
            and (cell.dataset, cell.name) not in carried
        ):
            config = cells.cell_config(cell, **options)
            where = os.path.join(cells.cell_workdir(workdir, cell, config), "results.json")
            out.append((cell.label, f"not run: no {where}"))
    return out


def _selection_rule(config: dict) -> str:
    """How a run chose its best epoch, from its recorded config (fields added 2026-12-01)."""
    window = int(config.get("selection_window", 1))
    names = str(config.get("selection_metrics", "macro_f1")).replace(",", " + ")
    if window <= 1:
        return f"the epoch with the best validation {names}"
    return f"the epoch ending the best {window}-epoch mean of validation {names}"


def _runs_summary(collected: dict) -> dict:
    """Epochs, seeds, the first and last results.json times and BR's chosen C of the cells."""
    trained = [r for c, (r, _) in collected.items() if c.variant != "br"]
    times = sorted(
        datetime.datetime.fromtimestamp(os.path.getmtime(p), datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
        for _, p in collected.values()
    )
    return {
        "epochs": {int(r["config"]["num_epochs"]) for r in trained if "config" in r},
        "seeds": {int(r["config"].get("num_seeds", 1)) for r in trained if "config" in r},
        "selection": {_selection_rule(r["config"]) for r in trained if "config" in r},
        "finished": (times[0], times[-1]) if times else None,
        "br_c": {
            c.label: r["C"] for c, (r, _) in collected.items() if c.variant == "br" and "C" in r
        },
    }
