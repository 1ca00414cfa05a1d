"""One cell of a grid: its config, its run directory, and running it (trainer or BR)."""

import dataclasses
import importlib.util
import json
import os

from absl import logging

from benchmarks import baselines
from benchmarks.reproduction import grids, rows
from cgmvae_jax import data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS_DIR = os.path.join(REPO, "configs")

# A train fraction keeps the config's batch size unless that leaves fewer batches per epoch.
MIN_BATCHES_PER_EPOCH = 4


def load_config(name: str, configs_dir: str | None = None):
    """`<configs_dir>/<name>.py`'s `get_config()` (default: the repository's configs/)."""
    path = os.path.join(configs_dir or CONFIGS_DIR, f"{name}.py")
    if not os.path.exists(path):
        raise ValueError(f"No config file {path}.")
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def use_tuned(chosen: list[grids.Cell], configs_dir: str | None = None) -> list[grids.Cell]:
    """`chosen` with `tuned=True` where `<configs_dir>/<dataset>_tuned.py` exists (for every
    variant, BR included, so that all cells of a data set share its split settings)."""
    directory = configs_dir or CONFIGS_DIR
    return [
        dataclasses.replace(c, tuned=True)
        if os.path.exists(os.path.join(directory, f"{c.dataset}_tuned.py"))
        else c
        for c in chosen
    ]


def config_file(cell: grids.Cell, configs_dir: str | None = None) -> str:
    """The cell's config file as the tables name it, e.g. configs/yeast.py."""
    directory = os.path.basename(os.path.normpath(configs_dir or CONFIGS_DIR))
    return f"{directory}/{cell.config_name}.py"


def cell_config(
    cell: grids.Cell,
    *,
    seeds: int,
    num_epochs: int | None = None,
    data_dir: str | None = None,
    configs_dir: str | None = None,
):
    """The config of a cell: its config file (`cell.config_name` in `configs_dir`, default the
    repository's configs/) plus the variant's overrides."""
    config = load_config(cell.config_name, configs_dir)
    for field, value in grids.VARIANT_OVERRIDES[cell.variant].items():
        config[field] = value
    config.train_fraction = float(cell.fraction)
    config.num_seeds = 1 if cell.variant == "br" else int(seeds)
    if cell.split_seed is not None:
        config.split = "random"
        config.split_seed = int(cell.split_seed)  # the split
        # and the models (k, k + 1, ...): the seeds of the runs on record in the JSON
        config.seed = int(cell.split_seed)
    if num_epochs:
        config.num_epochs = int(num_epochs)
    if data_dir:
        config.data_dir = data_dir
    config.progress = False  # one log line per epoch instead of a tqdm bar per run
    return config


def fraction_batch_size(config) -> int:
    """The config's batch size, or n_train // MIN_BATCHES_PER_EPOCH when the training split left
    by `config.train_fraction` holds fewer than MIN_BATCHES_PER_EPOCH batches (e.g. scene at
    0.1 has 109 training rows: batch 27 instead of 128, which would not fit once)."""
    _, splits = data.load_from_config(config)
    n = int(splits.train_x.shape[0])
    return int(min(int(config.batch_size), max(1, n // MIN_BATCHES_PER_EPOCH)))


def cell_workdir(root: str, cell: grids.Cell, config) -> str:
    """Run directory of a cell; seeds, epochs and a tuned config are part of the name (no
    mixing of runs)."""
    name = f"{cell.name}-tuned" if cell.tuned else cell.name
    if cell.variant == "br":
        return os.path.join(root, cell.dataset, name)
    leaf = f"{name}-s{int(config.num_seeds)}-e{int(config.num_epochs)}"
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
    rows.write_json(os.path.join(workdir, "results.json"), results)
    return results


def run_cell(cell: grids.Cell, config, workdir: str, *, br_cs=(1.0,)) -> tuple[dict, bool]:
    """Runs one cell unless its results.json exists. Returns (results, ran)."""
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
        return rows.read_json(path), False
    if cell.variant == "br":
        return run_binary_relevance(config, workdir, br_cs), True
    from cgmvae_jax import train  # jax, flax and the model only when a cell is trained

    if cell.fraction < 1.0:
        batch_size = fraction_batch_size(config)
        if batch_size != int(config.batch_size):
            logging.info(
                "%s: batch size %d (the training split has fewer than %d batches of %d)",
                cell.label,
                batch_size,
                MIN_BATCHES_PER_EPOCH,
                config.batch_size,
            )
            config = config.copy_and_resolve_references()
            config.batch_size = batch_size

    return train.train_and_evaluate(config, workdir), True
