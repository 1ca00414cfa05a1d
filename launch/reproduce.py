r"""Reproduces the paper's tables: runs an experiment grid, collects the results, writes tables.

  # main table: C-GMVAE (3 seeds in one vmapped run per cell) and binary relevance (BR)
  python launch/reproduce.py --grid=main --workdir=runs/reproduce --seeds=3 \
      --data_dir=../shared/datasets
  # ablation (paper Table 4) and less training data (paper Table 5 / Fig. 2)
  python launch/reproduce.py --grid=ablation --workdir=runs/reproduce --data_dir=...
  python launch/reproduce.py --grid=fraction --workdir=runs/reproduce --data_dir=...
  # the paper's split protocol: random 80/10/10 splits, split seeds 1, 4, 7 (yeast, scene, sider)
  python launch/reproduce.py --grid=paper_split --workdir=runs/reproduce --data_dir=...
  # the loss library on one MLP (BCE, ASL, ASL+KMCL, BCE+CLML, ASL+CLML) beside C-GMVAE
  python launch/reproduce.py --grid=losses --workdir=runs/reproduce --data_dir=...
  # a shorter grid on two data sets; rebuild the tables from finished runs only
  python launch/reproduce.py --grid=main --datasets=yeast,sider --num_epochs=20 ...
  python launch/reproduce.py --grid=fraction --fractions=0.1 --variants=cgmvae,unimodal ...
  python launch/reproduce.py --grid=paper_split --datasets=sider --split_seeds=4 ...
  python launch/reproduce.py --grid=main --collect_only ...
  # cells of data sets with a tuned config file (configs/<dataset>_tuned.py) use it
  python launch/reproduce.py --grid=main --tuned --datasets=medical ...
  # also rewrite the summary tables that docs/results.md quotes (between its marker lines)
  python launch/reproduce.py --grid=main --collect_only --doc=docs/results.md ...

This script parses flags and calls `benchmarks.reproduction.run_grid`, where the grids, the
paper's numbers, the rows, the Markdown and the plots live (docs/results.md describes the
tables). Every cell (data set x variant x train fraction x split seed) is one call of
`train.train_and_evaluate` in this process, in `WORKDIR/<dataset>/<variant>-s<seeds>-e<epochs>/`
(BR: `WORKDIR/<dataset>/<variant>/`; `<variant>-tuned…` with a tuned config); a cell whose
`results.json` exists is not run again (unless its recorded config differs from the cell's in
a field that changes the computation, e.g. after a tuned config file changed: then it is
reported as stale and left out, and the directory must be deleted or another --workdir used),
and a failing cell is reported and skipped. Outputs
in `--out` (default benchmarks/results):

* `reproduce.json`: rows {"dataset", "variant", "protocol", "metric", "mean", "std", "seeds",
  "split", "config"} of the test split, accumulated over the grids on the data sets' own
  splits (a new row replaces the row with the same dataset/variant/protocol/metric). "split"
  is the split description of the run's results.json; "std" is the population standard
  deviation over seeds (0 for one run); "config" the config file (e.g. configs/yeast.py).
* `reproduce_<grid>.md`: one table per threshold protocol, the paper's numbers beside ours,
  the splits and config files, and a header with the command, date, machine and package
  versions.
* `figures/fraction_macro_f1.png` (grid `fraction`): macro-F1 against the train fraction.
* `reproduce_paper_split.json` (grid `paper_split`, instead of reproduce.json): rows of the
  same keys for each random split (`cgmvae-split4`: the 80/10/10 split drawn with
  `config.split_seed = 4`, model seeds from `config.seed = 4`) and their mean over splits
  (`cgmvae-splits`: mean ± std of the per-split means over the splits on record, recomputed
  on every run; "seeds" counts the splits).
* with `--doc=FILE` (grid `main`): the two summary tables of `reproduction.summary` written
  between the marker lines of FILE (docs/results.md), from all rows of reproduce.json.

Variants: `cgmvae` (the config as is), `unimodal` (prior="unimodal"), `mixture_only`
(contrastive_weight=0), `contrastive_only` (kl_weight=0), `br` (one-vs-rest logistic
regression on the same splits and standardised features, `benchmarks/baselines.py`),
`mlp_<loss>` (model="mlp" trained with that loss: `mlp_bce`, `mlp_asl`, `mlp_asl_kmcl`,
`mlp_bce_clml`, `mlp_asl_clml`, as configs/mlp_*.py, with the data set's other settings);
`<variant>@<fraction>` trains on that fraction of the training split, with the config's
batch size unless that leaves fewer than 4 batches per epoch (then n_train // 4; the run's
config.json and results.json record it); `<variant>-split<k>` trains on the seeded random
80/10/10 split of all rows with `config.split = "random"`, `config.split_seed = k` and
`config.seed = k` (model seeds k … k + seeds - 1, as in the runs on record).
"""

import os
import shlex
import sys

from absl import app, flags

from benchmarks import reproduction

FLAGS = flags.FLAGS
flags.DEFINE_enum("grid", "main", list(reproduction.GRIDS), "Experiment grid.")
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
flags.DEFINE_bool(
    "tuned",
    False,
    "Cells of a data set with configs/<dataset>_tuned.py use it (run directories "
    "<variant>-tuned...); the tables name each data set's config file.",
)
flags.DEFINE_string(
    "doc",
    None,
    "Grid main: rewrite the summary tables between the marker lines of this Markdown file "
    "(docs/results.md) from reproduce.json.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.doc and FLAGS.grid != "main":
        raise app.UsageError(f"--doc needs --grid=main (got --grid={FLAGS.grid})")
    command = "python " + shlex.join(
        [os.path.relpath(sys.argv[0]) if os.path.exists(sys.argv[0]) else sys.argv[0]]
        + sys.argv[1:]
    )
    try:
        summary = reproduction.run_grid(
            FLAGS.grid,
            workdir=FLAGS.workdir,
            out=FLAGS.out,
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
            tuned=FLAGS.tuned,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Ran {len(summary['ran'])} cell(s); {len(summary['rows'])} rows.")
    print(f"Wrote {summary['markdown']} and {summary['json']}")
    if summary["figure"]:
        print(f"Wrote {summary['figure']}")
    if FLAGS.doc:
        try:
            reproduction.summary.update_doc(FLAGS.doc, reproduction.rows.read_json(summary["json"]))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"Wrote the summary tables of {FLAGS.doc}")
    for cell, message in summary["failures"]:
        print(f"no results: {cell}: {message}", file=sys.stderr)
    return 2 if summary["failures"] else 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
