r"""Plots what a run learnt: label-similarity heatmap beside co-occurrence, and training curves.

  python launch/visualize.py --workdir=runs/yeast
  python launch/visualize.py --workdir=runs/yeast --out=benchmarks/results/figures/yeast --cosine

Loads the best checkpoint of the run, computes the label-label similarity of the learnt label
embeddings W (inner products, or cosine with --cosine; averaged over the seeds of a
num_seeds > 1 run) and the co-occurrence of the training labels (NPMI), prints their Spearman
rank correlation over label pairs, and writes `label_similarity.png` and `training_curves.png`
(default directory: WORKDIR/figures). Needs the plotting extra: pip install -e ".[plot]".
"""

import sys

from absl import app, flags

from cgmvae_jax import interpret

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A training run directory.")
flags.DEFINE_string("out", None, "Output directory for the PNGs (default: WORKDIR/figures).")
flags.DEFINE_bool("cosine", False, "Cosine similarity instead of inner products.")
flags.DEFINE_enum(
    "cooccurrence", "npmi", list(interpret.COOCCURRENCE_KINDS), "Co-occurrence measure."
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        summary = interpret.visualize_run(
            FLAGS.workdir,
            FLAGS.out,
            cosine=FLAGS.cosine,
            cooccurrence_kind=FLAGS.cooccurrence,
        )
    except (FileNotFoundError, ValueError, KeyError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    per_seed = summary["rank_correlation_per_seed"]
    print(
        f"{summary['dataset']} ({summary['num_labels']} labels): Spearman rank correlation of "
        f"learnt label similarity vs training co-occurrence = {summary['rank_correlation']:.3f}"
    )
    if len(per_seed) > 1:
        print("  per seed: " + ", ".join(f"{r:.3f}" for r in per_seed))
    print(f"Wrote {summary['label_similarity_png']}")
    if summary["training_curves_png"]:
        print(f"Wrote {summary['training_curves_png']}")
    else:
        print("No metrics.jsonl in the workdir: no training curves.")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
