r"""How the best epoch is chosen: candidate selection rules, measured on test, 3 seeds each.

  python benchmarks/selection_study.py --data_dir=../shared/datasets --workdir=runs/selection

Every candidate is a set of config overrides (`CANDIDATES`, e.g. a validation window or an
exponential moving average of the parameters) applied to each data set's config file; each
(data set, candidate) cell is one `train.train_and_evaluate` run with `--seeds` (3) vmapped
seeds in `WORKDIR/<dataset>/<candidate>/` (finished cells are read back, not run again). The
table reports, per cell, the test mean ± std over the seeds of example-F1 and macro-F1 under
the honest `val_per_metric` and `val_tuned` protocols and the optimistic `official` one, and
the best epochs; written to --out (default benchmarks/results/selection.md) and a JSON beside it.
"""

import datetime
import json
import os

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "The shared data sets (default: $CGMVAE_DATA).")
flags.DEFINE_string("workdir", "runs/selection", "Root of the runs.")
flags.DEFINE_list("datasets", ["yeast", "scene", "emotions", "sider", "medical"], "Data sets.")
flags.DEFINE_list("candidates", None, "Candidates to run (default: all of CANDIDATES).")
flags.DEFINE_integer("seeds", 3, "Seeds per cell (vmapped in one run).")
flags.DEFINE_string("out", "benchmarks/results/selection.md", "Markdown output.")

# name -> config overrides, every selection field given (so that a candidate does not change
# when the defaults do). "epoch" is the official code's rule (the single best validation epoch
# by macro-F1); the others smooth the choice, score by several metrics, or average parameters.
CANDIDATES = {
    name: {"selection_window": window, "selection_metrics": metrics, "ema_epochs": ema}
    for name, window, metrics, ema in (
        ("epoch", 1, "macro_f1", 0.0),  # the official code's rule
        ("window3", 3, "macro_f1", 0.0),
        ("window5", 5, "macro_f1", 0.0),
        ("window10", 10, "macro_f1", 0.0),
        ("ema5", 1, "macro_f1", 5.0),
        ("ema10", 1, "macro_f1", 10.0),
        ("ema10_window5", 5, "macro_f1", 10.0),
        ("ema10_exma", 1, "macro_f1,example_f1", 10.0),
        ("exma", 1, "macro_f1,example_f1", 0.0),
        ("exma_window10", 10, "macro_f1,example_f1", 0.0),  # the default since 2026-12-01
    )
}
METRICS = (("example_f1", "ex-F1"), ("macro_f1", "ma-F1"))
PROTOCOLS = ("val_per_metric", "val_tuned", "official")


def run_cell(dataset: str, candidate: str) -> dict:
    """results.json of one (data set, candidate) run, training it when not finished."""
    from benchmarks.reproduction import cells
    from cgmvae_jax import checkpoint, train

    workdir = os.path.join(FLAGS.workdir, dataset, candidate)
    results_path = os.path.join(workdir, "results.json")
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            return json.load(f)
    config = cells.load_config(dataset)
    config.num_seeds, config.progress = FLAGS.seeds, False
    if FLAGS.data_dir:
        config.data_dir = FLAGS.data_dir
    for field, value in CANDIDATES[candidate].items():
        config[field] = value
    logging.info("Training %s / %s", dataset, candidate)
    with checkpoint.quiet_orbax():
        return train.train_and_evaluate(config, workdir)


def cell_row(dataset: str, candidate: str, results: dict) -> dict:
    row = {"dataset": dataset, "candidate": candidate, "best_epochs": results["best_epochs"]}
    for protocol in PROTOCOLS:
        for metric, _ in METRICS:
            row[f"{protocol}/{metric}"] = (
                results["test"][protocol][metric],
                results.get("test_std", {}).get(protocol, {}).get(metric, 0.0),
            )
    return row


def markdown(rows: list[dict]) -> str:
    header = "| data set | candidate | " + " | ".join(
        f"{p} {name}" for p in PROTOCOLS for _, name in METRICS
    )
    lines = [
        f"# Choosing the best epoch: candidate rules on test ({FLAGS.seeds} seeds, mean ± std)",
        "",
        f"`python benchmarks/selection_study.py` — {datetime.date.today()}. "
        "Each cell: one run of the data set's config with the candidate's overrides, "
        f"{FLAGS.seeds} vmapped seeds; test metrics of the selected epoch.",
        "",
        header + " | best epochs |",
        "| --- | --- | " + " | ".join("---" for _ in PROTOCOLS for _ in METRICS) + " | --- |",
    ]
    for row in rows:
        cells = [
            f"{row[f'{p}/{m}'][0]:.4f} ± {row[f'{p}/{m}'][1]:.4f}"
            for p in PROTOCOLS
            for m, _ in METRICS
        ]
        epochs = "/".join(str(e) for e in row["best_epochs"])
        lines.append(f"| {row['dataset']} | {row['candidate']} | {' | '.join(cells)} | {epochs} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    candidates = FLAGS.candidates or list(CANDIDATES)
    rows = [
        cell_row(dataset, candidate, run_cell(dataset, candidate))
        for dataset in FLAGS.datasets
        for candidate in candidates
    ]
    text = markdown(rows)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.splitext(FLAGS.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
